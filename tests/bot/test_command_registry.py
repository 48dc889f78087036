"""One command registry, end to end: every row the CLI shows has a handler, every row
that names a service method can call it with its own arguments, the control channel
dispatches from the table (bad arguments are exit 2 naming the field), and a row's
control verb and its Telegram handler reach the same OperatorService method."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import inspect
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_service
from bot.cli import HANDLER_MODULES, find
from core.commands import BY_NAME, COMMANDS, bind, validate_args
from core.config.settings import Settings
from core.domain.models import TradingState
from core.errors import ArbopsError, CommandError, ExitCode

# A valid Telegram argument text and the same arguments as the control channel takes them.
SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "run": ("1 paper 30", {"phase": 1, "mode": "paper", "duration_seconds": 30}),
    "status": ("", {}), "stop": ("", {}), "kill": ("registry test", {"reason": "registry test"}),
    "reset": ("", {}), "pause": ("", {}), "resume": ("", {}), "audit": ("", {}),
    "positions": ("", {}), "kpi": ("", {}), "preflight": ("dry", {"dry_run": True}),
    "arm": ("50", {"usd": "50"}), "disarm": ("", {}), "ladder": ("", {}),
    "override": ("1 registry test", {"phase": 1, "reason": "registry test"}),
    "balance": ("", {}), "reconcile": ("", {}), "guards": ("", {}),
    "notify": ("test", {"what": "test"}), "version": ("", {}),
    "trades": ("5", {"limit": 5}), "profit": ("", {}), "performance": ("", {}),
    "daily": ("3", {"days": 3}), "show_config": ("", {}),
}
BEFORE = {"reset": TradingState.HALTED, "resume": TradingState.REDUCING}


def test_every_cli_command_resolves_to_a_handler_and_no_handler_is_orphaned():
    for row in COMMANDS:
        if row.cli:
            assert find(row.name) is not None, f"`arbops {row.name}` has no cmd_{row.name}"
    for module_name in HANDLER_MODULES:
        for name, _fn in inspect.getmembers(importlib.import_module(module_name),
                                            inspect.isfunction):
            if name.startswith(("cmd_", "preview_")):
                row = BY_NAME.get(name.split("_", 1)[1])
                assert row is not None and row.cli, f"{module_name}.{name} serves no CLI row"


async def test_every_row_binds_to_its_service_method(tmp_path: Path) -> None:
    service = await build_service(Settings(data_dir=tmp_path, sim_fast=True), fast=True)
    try:
        for row in COMMANDS:
            if row.method is None:
                continue
            raw = SAMPLES.get(row.name, ("", {}))[1]
            method, kwargs = bind(row, service, validate_args(row, raw), "cli:test")
            assert method.__name__ == row.method
            assert set(kwargs) <= set(inspect.signature(method).parameters)
            if "actor" in inspect.signature(method).parameters:
                assert kwargs["actor"] == "cli:test"
    finally:
        await service.close()


async def test_bad_arguments_over_the_socket_are_refusals_naming_the_field(
        tmp_path: Path) -> None:
    service = await build_service(Settings(data_dir=tmp_path, sim_fast=True), fast=True)
    try:
        cases = [("audit", {"limit": "many"}, "limit"), ("override", {"phase": 9}, "phase"),
                 ("kill", {"reason": ["x"]}, "reason"), ("run", {"phase": "x"}, "phase"),
                 ("status", {"actor": "telegram:1"}, "actor"), ("frobnicate", {}, "frobnicate"),
                 # JSON may spell NaN and Infinity: a run of inf seconds is bad input
                 ("run", {"duration_seconds": float("inf")}, "duration_seconds"),
                 ("run", {"duration_seconds": float("nan")}, "duration_seconds"),
                 ("preflight", {"output": 5}, "output"), ("reset", {"confirm": 5}, "confirm")]
        for cmd, args, field in cases:
            with pytest.raises(CommandError) as exc:
                await service.control(cmd, args, "cli:test")
            assert exc.value.exit_code is ExitCode.REFUSED, (cmd, exc.value)
            assert field in str(exc.value), (cmd, str(exc.value))
        assert str(service.state.state) == "ACTIVE" and service.current is None
    finally:
        await service.close()


def test_control_verb_and_telegram_handler_reach_the_same_service_method(tmp_path: Path):
    from aiogram.filters import CommandObject  # lazily: keeps aiogram out of collection
    from aiogram.types import Chat, Message, User

    from bot.telegram.confirm import PendingStore
    from bot.telegram.context import AuditNote, Ctx, Plan, TelegramDeps
    from bot.telegram_app import build_dispatcher
    from core.commands import Role

    with asyncio.Runner() as runner:
        cfg = Settings(data_dir=tmp_path, sim_fast=True, log_level="WARNING")
        service = runner.run(build_service(cfg, fast=True))
        calls: list[str] = []
        for name in {row.method for row in COMMANDS if row.method}:
            real = getattr(service, name)

            def record(*a: Any, _n: str = name, _real: Any = real, **kw: Any) -> Any:
                calls.append(_n)
                if _n == "start_run":  # a real phase would outlive the test
                    async def started() -> dict[str, Any]:
                        return {"run_id": "r", "kpi_path": "k"}
                    return started()
                return _real(*a, **kw)

            setattr(service, name, functools.wraps(real)(record))
        try:
            deps = TelegramDeps(service=service, settings=cfg, users={1: Role.ADMIN},
                                pending=PendingStore(), sender=None, notifier=service.notifier)
            dp = build_dispatcher(deps)
            handlers = {hd.flags["table_entry"].name: hd for router in dp.sub_routers
                        for hd in router.message.handlers if "table_entry" in hd.flags}

            def prepare(row_name: str) -> None:
                service.state.reset(0.0, "test")
                if row_name in BEFORE:
                    service.state.set(BEFORE[row_name], "test", 0.0)
                calls.clear()

            async def via_telegram(row_name: str, text: str) -> None:
                msg = Message(message_id=1, date=datetime.now(UTC),
                              chat=Chat(id=1, type="private"),
                              from_user=User(id=1, is_bot=False, first_name="p"),
                              text=f"/{row_name} {text}")
                ctx = Ctx(service, cfg, 1, Role.ADMIN, 1, service.notifier, deps)
                try:
                    result = await handlers[row_name].call(
                        msg, command=CommandObject(prefix="/", command=row_name,
                                                   args=text or None),
                        ctx=ctx, deps=deps, note=AuditNote(1, 1, row_name, text))
                    if isinstance(result, Plan):
                        await result.execute(ctx)
                except ArbopsError:
                    pass  # refused after the call (no run to stop, nothing to reconcile)

            async def via_control(row_name: str, raw: dict[str, Any]) -> None:
                try:
                    await service.control(row_name, raw, "cli:test")
                except ArbopsError:
                    pass

            checked = []
            for row in COMMANDS:
                if not (row.telegram and row.method):
                    continue
                text, raw = SAMPLES[row.name]
                prepare(row.name)
                runner.run(via_telegram(row.name, text))
                telegram_calls = list(calls)
                prepare(row.name)
                runner.run(via_control(row.name, raw))
                assert row.method in telegram_calls, (row.name, telegram_calls)
                assert row.method in calls, (row.name, calls)
                checked.append(row.name)
            assert {"kill", "stop", "run", "arm", "reset", "status"} <= set(checked)
        finally:
            runner.run(service.close())


def test_only_the_surfaces_internal_reads_go_unaudited():
    """The registry's `audited=False` is for internal reads only: never a command an
    operator can type, never one that adds risk or needs more than a viewer."""
    unaudited = [row for row in COMMANDS if not row.audited]
    assert {row.name for row in unaudited} == {"still_open", "last_run", "progress"}
    for row in unaudited:
        assert row.internal and not row.adds_risk and row.min_role.name == "VIEWER", row.name


async def test_every_control_command_is_audited_masked_whoever_asks(tmp_path: Path) -> None:
    """No actor name skips the audit (an actor ending in "-poll" once did), and a
    secret typed into an argument is stored masked in the audit row and every table."""
    secret = "fakeBinanceSecretQWERTYUIOP"
    settings = Settings(data_dir=tmp_path, sim_fast=True,
                        binance_api_secret=secret)  # type: ignore[arg-type]
    service = await build_service(settings, fast=True)
    try:
        await service.control("status", {}, "cli:x-poll")
        with contextlib.suppress(CommandError):  # allowed or refused: audited either way
            await service.control("override", {"phase": 2, "reason": f"why {secret}"},
                                  "telegram:1-poll")
        await service.control("kill", {"reason": f"pasted {secret} password: hunter2hunter2"},
                              "cli:x-poll")
        rows = await service.store.audit_rows(10)
        assert [r["command"] for r in rows] == ["kill", "override", "status"]
        assert {r["user_id"] for r in rows} == {"cli:x-poll", "telegram:1-poll"}
        for table in ("audit", "flags", "events", "runs"):
            text = repr(await service.store._all(f"SELECT * FROM {table}"))
            assert secret not in text and "hunter2hunter2" not in text, table
        assert "pasted ***" in rows[0]["args"]
    finally:
        await service.close()
