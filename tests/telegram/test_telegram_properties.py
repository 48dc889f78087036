"""Property tests, in-process (no HTTP): the parsers never raise anything but a
usage error, the handlers never change state without the confirmation step,
and a confirmation nonce is honoured at most once, by its owner, in time."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import build_service
from bot.drill.emulator.telegram_api import html_problem
from bot.telegram.confirm import Claim, PendingStore, parse_callback
from bot.telegram.context import AuditNote, Ctx, Plan, Reply, TelegramDeps
from bot.telegram.format import fit, h, plain
from bot.telegram.parsing import parse_model_args, parse_reason, parse_run_args
from bot.telegram_app import build_dispatcher
from core.commands import AuditArgs, NoArgs, ReasonArgs, Role, RunArgs
from core.config.settings import Settings
from core.domain.models import TradingState
from core.errors import ServiceError, UsageError

WORDS = ["1", "2", "3", "0", "4", "paper", "live", "PAPER", "30", "90s", "5m", "2h", "1.5",
         "top10", "top20", "top7", "top", "seed=3", "seed=x", "cap=50", "cap=5000", "cap=inf",
         "minutes=1", "minutes=-1", "seconds=1e400", "universe=top50", "source=real", "=", "x=",
         "phase=2", "phase=9", "data_source=sim", "<b>", "&amp;", "\u0000", "🚀", "--mode",
         "duration_seconds=nan", "m=0", "s=0.0001", "²", "٣", "１", "1²", "3٣s"]
ARGS = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join),
    st.lists(st.sampled_from(WORDS) | st.text(max_size=8), max_size=5).map(" ".join),
)
ONE_STEP_STATE_CHANGERS = {"kill", "pause"}  # tested over HTTP; they act by design


@given(ARGS)
@settings(max_examples=400, deadline=None)
def test_run_parser_returns_run_args_or_a_usage_error(text: str) -> None:
    try:
        args = parse_run_args(text)
    except UsageError as exc:
        assert str(exc)
        return
    assert isinstance(args, RunArgs)
    assert 1 <= args.phase <= 3


@given(ARGS)
@settings(max_examples=200, deadline=None)
def test_generic_parser_and_reason(text: str) -> None:
    for model in (AuditArgs, NoArgs, ReasonArgs):
        try:
            assert isinstance(parse_model_args(model, text), model)
        except UsageError:
            pass
    reason = parse_reason(text, "default")
    assert reason and len(reason) <= 200


def test_run_parser_examples() -> None:
    a = parse_run_args("1 paper 30")
    assert (a.phase, a.mode, a.duration_seconds) == (1, "paper", 30.0)
    a = parse_run_args("2 5m top20 seed=9")
    assert (a.phase, a.duration_minutes, a.universe, a.seed) == (2, 5.0, "top20", 9)
    for bad in ("", "paper", "1 2 3", "1 paper paper", "4", "1 top7", "1 cap=5000", "1 cap=inf"):
        try:
            parse_run_args(bad)
        except UsageError:
            continue
        raise AssertionError(f"{bad!r} parsed")


@given(st.text(max_size=5000))
@settings(max_examples=200, deadline=None)
def test_escaped_text_fits_and_survives(text: str) -> None:
    out = fit(f"<b>{h(text)}</b>")
    assert len(out) <= 4096
    assert html_problem(out) is None  # Telegram would parse it
    if len(h(text)) + 7 <= 4096:
        assert plain(out) == text


@given(st.text(max_size=80))
def test_callback_parser_accepts_only_our_shape(data: str) -> None:
    parsed = parse_callback(data)
    if parsed is not None:
        assert parsed[0] in ("ok", "no") and parsed[1] and len(data) <= 64


@given(st.lists(st.tuples(st.sampled_from(["create", "claim", "tick"]),
                          st.sampled_from([1, 2, 3]), st.integers(0, 5),
                          st.floats(0, 40)), max_size=40))
def test_a_nonce_is_honoured_at_most_once_by_its_owner_in_time(ops: list[Any]) -> None:
    now = [0.0]
    store = PendingStore(ttl_s=60, clock=lambda: now[0])
    created: list[Any] = []
    ok_count: dict[str, int] = {}

    async def nothing(_c: Any) -> Reply:
        return Reply("x")

    for op, user, idx, dt in ops:
        if op == "create":
            created.append(store.create(user, user, Plan("run", {}, "impact", nothing)))
        elif op == "tick":
            now[0] += dt
        elif created:
            p = created[idx % len(created)]
            claim, _ = store.claim(p.nonce, user, user)
            if claim is Claim.OK:
                assert user == p.user_id and now[0] < p.expires
                ok_count[p.nonce] = ok_count.get(p.nonce, 0) + 1
    assert all(v == 1 for v in ok_count.values())
    assert store.claim("forged", 1, 1)[0] is Claim.UNKNOWN


def test_handlers_never_change_state_without_confirmation(tmp_path: Path) -> None:
    """Every Telegram handler, called directly with arbitrary arguments, returns a Reply
    or (for a command that adds risk) a Plan, or refuses; none changes state."""
    from aiogram.filters import CommandObject  # lazily: see test_telegram_notifier
    from aiogram.types import Chat, Message, User

    with asyncio.Runner() as runner:
        cfg = Settings(data_dir=tmp_path, sim_fast=True, log_level="WARNING")
        service = runner.run(build_service(cfg, fast=True))
        try:
            deps = TelegramDeps(service=service, settings=cfg,
                                users={1: Role.ADMIN}, pending=PendingStore(), sender=None,
                                notifier=service.notifier)
            dp = build_dispatcher(deps)
            handlers = [(hd.flags["table_entry"], hd) for router in dp.sub_routers
                        for hd in router.message.handlers if "table_entry" in hd.flags]
            handlers = [(c, hd) for c, hd in handlers if c.name not in ONE_STEP_STATE_CHANGERS]
            assert {c.name for c, _ in handlers} >= {"run", "reset", "resume", "arm", "status"}

            seen: dict[str, int] = {}

            def snapshot() -> Any:
                return (str(service.state.state), service.current, service._run_task,
                        service.last_outcome)

            async def call(index: int, text: str, state: str) -> None:
                if state == "REDUCING":
                    service.pause("property test")
                entry, hd = handlers[index % len(handlers)]
                before = snapshot()
                msg = Message(message_id=1, date=datetime.now(UTC),
                              chat=Chat(id=1, type="private"),
                              from_user=User(id=1, is_bot=False, first_name="p"),
                              text=f"/{entry.name} {text}")
                ctx = Ctx(service, cfg, 1, Role.ADMIN, 1, service.notifier, deps)
                try:
                    result = await hd.call(
                        msg, command=CommandObject(prefix="/", command=entry.name,
                                                   args=text or None),
                        ctx=ctx, deps=deps, note=AuditNote(1, 1, entry.name, text))
                except (UsageError, ServiceError):
                    result = None
                seen[type(result).__name__] = seen.get(type(result).__name__, 0) + 1
                after = snapshot()
                if state == "REDUCING":
                    service.state.set(TradingState.ACTIVE, "back", 0)
                assert after == before
                if entry.adds_risk:
                    assert result is None or isinstance(result, Plan), (entry.name, result)
                else:
                    assert result is None or isinstance(result, Reply), (entry.name, result)
                assert str(service.state.state) == "ACTIVE"

            @given(st.integers(0, 100), ARGS, st.sampled_from(["ACTIVE", "REDUCING"]))
            @settings(max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])
            def check(index: int, text: str, state: str) -> None:
                runner.run(call(index, text, state))

            check()
            # Every kind of outcome is seen whatever hypothesis drew (with more handlers
            # a random draw may miss the few valid risk-adding inputs): the same
            # property, on inputs that must give a Plan, a Reply and a refusal.
            names = [c.name for c, _ in handlers]
            for name, text, state in (("arm", "50", "ACTIVE"), ("resume", "", "REDUCING"),
                                      ("run", "1 paper 30", "ACTIVE"), ("status", "", "ACTIVE"),
                                      ("arm", "5000", "ACTIVE")):
                runner.run(call(names.index(name), text, state))
            assert seen.get("Plan") and seen.get("Reply") and seen.get("NoneType"), seen
        finally:
            runner.run(service.store.close())


@pytest.mark.parametrize(("text", "expected"), [
    ("3 live continuous", {"phase": 3, "mode": "live", "continuous": True,
                           "data_source": "real"}),
    ("1 live", {"phase": 1, "mode": "live", "data_source": "real"}),
    ("1 live source=sim", {"phase": 1, "mode": "live", "data_source": "sim"}),
    ("2 paper 90s top20", {"phase": 2, "mode": "paper", "duration_seconds": 90.0,
                           "universe": "top20", "data_source": "sim"}),
])
def test_run_words_from_the_runbook(text: str, expected: dict[str, object]) -> None:
    args = parse_run_args(text).model_dump()
    assert {k: args[k] for k in expected} == expected


@pytest.mark.parametrize("text", ["1 continuous", "3 continuous continuous"])
def test_continuous_is_phase_3_only_and_given_once(text: str) -> None:
    with pytest.raises(UsageError):
        parse_run_args(text)
