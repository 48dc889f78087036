"""Two-step confirmation over the real stack (R-U1): a Confirm pressed by another
user, twice, after expiry, forged, or after Cancel changes nothing; a run is
started at most once."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.app import DB_NAME
from tests.telegram.tg_support import OPERATOR, OPERATOR2, VIEWER, Env, telegram_env

pytestmark = [pytest.mark.timeout(60)]


def runs_started(env: Env) -> int:
    con = sqlite3.connect(f"file:{env.data_dir / DB_NAME}?mode=ro", uri=True, timeout=5)
    try:
        return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
    finally:
        con.close()


async def ask_run(env: Env, user: int = OPERATOR) -> tuple[dict[str, Any], dict[str, str]]:
    before = len([t for t in env.fake.texts(user) if "Confirm /run" in t])
    env.fake.send_text(user, "/run 1 paper 20")
    await env.fake.wait_for(
        lambda: len([t for t in env.fake.texts(user) if "Confirm /run" in t]) > before,
        what="the confirmation prompt")
    await env.fake.wait_for(lambda: env.fake.last_markup_message(user), what="buttons")
    msg = env.fake.last_markup_message(user)
    return msg, env.fake.buttons(msg)


async def settle(env: Env) -> None:
    await env.fake.wait_for(lambda: not env.fake.updates, what="updates consumed")
    await env.fake.wait_for(lambda: not env.app.deps.inflight, what="handlers done")


async def test_other_user_cannot_confirm_and_owner_confirms_once(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        msg, buttons = await ask_run(env)
        ok = buttons["✅ Confirm"]
        # another operator, even in the same chat, cannot confirm
        fake.press(OPERATOR2, ok, msg)
        fake.press(VIEWER, ok, msg)
        await settle(env)
        assert service.current is None and runs_started(env) == 0
        answers = [c.params.get("text") for c in fake.calls_to("answerCallbackQuery")]
        assert sum("only the user who sent" in str(a) for a in answers) == 2
        # the owner presses twice in the same poll batch: one run, one "already used"
        fake.press(OPERATOR, ok, msg)
        fake.press(OPERATOR, ok, msg)
        await fake.wait_for(lambda: service.status()["run"] is not None, what="the run")
        await settle(env)
        answers = [c.params.get("text") for c in fake.calls_to("answerCallbackQuery")]
        assert sum("already used" in str(a) for a in answers) == 1
        # and once more, later
        fake.press(OPERATOR, ok, msg)
        await settle(env)
        assert runs_started(env) == 1
        outcomes = [r["outcome"] for r in env.audit() if r["command"] == "confirm run"]
        assert sorted(o.split(":")[0] for o in outcomes) == [
            "ok", "refused", "refused", "refused", "refused"]
        assert sum(o.startswith("refused: wrong_user") for o in outcomes) == 2


async def test_expired_confirmation_changes_nothing(tmp_path: Path) -> None:
    now = [1000.0]
    async with telegram_env(tmp_path, confirm_clock=lambda: now[0]) as env:
        fake, service = env.fake, env.service
        msg, buttons = await ask_run(env)
        now[0] += 61
        fake.press(OPERATOR, buttons["✅ Confirm"], msg)
        await settle(env)
        assert service.current is None and runs_started(env) == 0
        await fake.wait_text(OPERATOR, "expired: nothing changed")
        answers = [str(c.params.get("text")) for c in fake.calls_to("answerCallbackQuery")]
        assert any("expired" in a for a in answers)
        assert [r["outcome"] for r in env.audit() if r["command"] == "confirm run"] == [
            "refused: expired"]


async def test_forged_and_garbage_buttons_change_nothing(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        msg, buttons = await ask_run(env)
        real = buttons["✅ Confirm"]
        forged = real[:-2] + ("AA" if not real.endswith("AA") else "BB")
        for data in (forged, "ok:", "ok:x", "no:nonsense", "rm -rf", "ok:" + "A" * 60):
            fake.press(OPERATOR, data, msg)
        await settle(env)
        assert service.current is None and runs_started(env) == 0
        answers = [str(c.params.get("text")) for c in fake.calls_to("answerCallbackQuery")]
        assert len(answers) == 6
        assert all("nothing changed" in a for a in answers)
        # the real nonce still works after the forgeries
        fake.press(OPERATOR, real, msg)
        await fake.wait_for(lambda: runs_started(env) == 1, what="the run")


async def test_cancel_then_confirm_changes_nothing(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        msg, buttons = await ask_run(env)
        fake.press(OPERATOR2, buttons["✖️ Cancel"], msg)  # not theirs to cancel either
        await settle(env)
        fake.press(OPERATOR, buttons["✖️ Cancel"], msg)
        await fake.wait_text(OPERATOR, "cancelled: nothing changed")
        fake.press(OPERATOR, buttons["✅ Confirm"], msg)
        await settle(env)
        await asyncio.sleep(0.1)
        assert service.current is None and runs_started(env) == 0
        outcomes = [r["outcome"] for r in env.audit()
                    if r["command"] in ("cancel run", "confirm run")]
        assert outcomes == ["refused: wrong_user", "cancelled", "refused: used"]
        # the prompt lost its buttons
        assert "reply_markup" not in fake.messages[(OPERATOR, msg["message_id"])]


async def test_two_prompts_start_at_most_one_run(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        msg1, b1 = await ask_run(env)
        msg2, b2 = await ask_run(env)
        assert b1["✅ Confirm"] != b2["✅ Confirm"]
        fake.press(OPERATOR, b1["✅ Confirm"], msg1)
        fake.press(OPERATOR, b2["✅ Confirm"], msg2)
        await settle(env)
        await fake.wait_text(OPERATOR, "already running")
        # The run's row is written when the run starts, which can come after the
        # handler has answered: wait for it, then count.
        await fake.wait_for(lambda: runs_started(env) >= 1, what="the run's row")
        assert runs_started(env) == 1


async def ask(env: Env, user: int, text: str) -> dict[str, Any]:
    """`user` sends a risk-adding command; the prompt with its buttons."""
    before = len([t for t in env.fake.texts(user) if "Confirm /" in t])
    env.fake.send_text(user, text)
    await env.fake.wait_for(
        lambda: len([t for t in env.fake.texts(user) if "Confirm /" in t]) > before,
        what=f"the prompt for {text}")
    return env.fake.last_markup_message(user)


@pytest.mark.parametrize(("prepare", "asked", "newer"), [
    ("kill", "/reset", "/kill a newer kill"),
    ("pause", "/resume", "/pause a newer pause"),
    (None, "/arm 50", "/disarm"),
])
async def test_a_confirmation_is_refused_once_a_newer_command_changed_the_state(
        tmp_path: Path, prepare: str | None, asked: str, newer: str) -> None:
    """An operator's Confirm pressed after another operator's newer kill, pause or
    disarm is refused: it was asked about a state that no longer holds."""
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        if prepare == "kill":
            await service.kill("first", "tester")
        elif prepare == "pause":
            service.pause("first")
        msg = await ask(env, OPERATOR, asked)
        state_before = str(service.state.state)
        armed_before = (await service.full_status())["armed"]
        fake.send_text(OPERATOR2, newer)
        await fake.wait_for(lambda: service.state.epoch > 0 and len(env.audit()) >= 2,
                            what="the newer command")
        await settle(env)
        epoch = service.state.epoch
        fake.press(OPERATOR, fake.buttons(msg)["✅ Confirm"], msg)
        await fake.wait_text(OPERATOR, "state changed since this was asked")
        await settle(env)
        assert service.state.epoch == epoch
        assert str(service.state.state) == state_before  # HALTED / REDUCING kept
        assert (await service.full_status())["armed"] is armed_before is False
        outcomes = [r["outcome"] for r in env.audit() if r["command"].startswith("confirm")]
        assert outcomes and outcomes[-1] == "refused: state changed since asked"
