"""The Telegram surface end to end (R-U1, R-O5, docs/requirements.md): the real aiogram Bot
and Dispatcher, polling the local Bot API stand-in, driving a real OperatorService
(SQLite journal, paper venues, sim market)."""
from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest

from bot.drill.emulator.telegram_api import BotApiStandIn
from bot.telegram_app import start_telegram
from core.commands import COMMANDS
from core.config.settings import Settings
from tests.telegram.tg_support import (
    ALERT_CHAT,
    OPERATOR,
    STRANGER,
    VIEWER,
    telegram_env,
)

pytestmark = [pytest.mark.timeout(60)]


async def test_no_token_means_headless(tmp_path: Path) -> None:
    """R-U2: no TELEGRAM_BOT_TOKEN, no Telegram, no error."""
    from bot.app import build_service

    settings = Settings(data_dir=tmp_path, log_level="WARNING")
    service = await build_service(settings)
    try:
        assert await start_telegram(service, settings) is None
    finally:
        await service.store.close()


async def test_start_up_sets_the_menu_from_the_table_and_help_lists_it(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        await fake.wait_for(lambda: fake.commands, what="setMyCommands")
        names = [c["command"] for c in fake.commands]
        assert names == [c.name for c in COMMANDS if c.telegram]
        assert fake.calls_to("deleteWebhook"), "a left-over webhook would block polling"
        fake.send_text(VIEWER, "/help")
        text = await fake.wait_text(VIEWER, "/kill")
        for c in COMMANDS:
            if c.telegram:
                assert f"/{c.name}" in text
        assert "not available" not in text


async def test_stranger_gets_nothing_changes_nothing_and_is_audited(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        fake.send_text(STRANGER, "/arm 50")
        fake.send_text(STRANGER, "/kill because I can")
        fake.send_text(STRANGER, "/status")
        fake.press(STRANGER, "ok:forged-nonce")
        await fake.wait_for(lambda: len(env.audit()) >= 4, what="4 audit rows")
        await fake.wait_for(lambda: not fake.updates, what="updates consumed")
        await asyncio.sleep(0.3)
        assert str(service.state.state) == "ACTIVE"
        assert fake.texts(STRANGER) == []  # no information at all
        assert not fake.calls_to("answerCallbackQuery")
        rows = env.audit()
        assert [r["command"] for r in rows] == ["arm", "kill", "status", "confirm"]
        for r in rows:
            assert r["user_id"] == str(STRANGER) and r["role"] == "none"
            assert r["outcome"].startswith("denied")
            assert r["chat_id"] == str(STRANGER)
        assert rows[0]["args"] == "50"


async def test_run_confirm_status_kill_flow(tmp_path: Path) -> None:
    """/status -> /run 1 paper 30 -> Confirm -> /status -> /kill -> the final KPI says killed."""
    async with telegram_env(tmp_path, fast=False) as env:
        fake, service = env.fake, env.service
        fake.send_text(OPERATOR, "/status")
        assert "no run active" in await fake.wait_text(OPERATOR, "ACTIVE")

        fake.send_text(OPERATOR, "/run 1 paper 30")
        prompt = await fake.wait_text(OPERATOR, "Confirm /run")
        for fact in ("PAPER", "phase 1", "top10", "30 s", "$50 per leg", "data sim"):
            assert fact in prompt
        assert service.current is None, "nothing may start before Confirm"
        msg = fake.last_markup_message(OPERATOR)
        buttons = fake.buttons(msg)
        confirm = buttons["✅ Confirm"]
        assert len(confirm.encode()) <= 64 and confirm.startswith("ok:")
        fake.press(OPERATOR, confirm, msg)
        await fake.wait_for(lambda: service.status()["run"] is not None, what="the run")
        started = await fake.wait_text(OPERATOR, "started")
        run_id = service.status()["run"]["run_id"]
        assert run_id in started

        fake.send_text(OPERATOR, "/status")
        await fake.wait_text(OPERATOR, f"run {run_id}")

        t0 = time.monotonic()
        fake.send_text(VIEWER, "/kill fat finger <test> & more")  # viewers may kill
        await fake.wait_for(lambda: str(service.state.state) == "HALTED", timeout=5, what="HALT")
        assert time.monotonic() - t0 < 3
        await fake.wait_text(VIEWER, "HALTED")
        await fake.wait_for(lambda: service.last_run_result() is not None, timeout=30,
                            what="the final KPI")
        result = service.last_run_result()
        assert result["run_id"] == run_id
        summary = result["kpi"]["summary"]
        assert summary["kill_switch_triggered"] is True
        assert result["exit_code"] == 1
        # the KILL notification reached the alert chat, the reason escaped, not broken
        kill_alert = await fake.wait_text(ALERT_CHAT, "kill switch", timeout=10)
        assert "<test> & more" in kill_alert
        # the live status message ends with the result
        await fake.wait_for(lambda: any("ended" in t and run_id in t
                                        for t in fake.texts(OPERATOR)), what="live status end")
        rows = env.audit()
        confirm_rows = [r for r in rows if r["command"] == "confirm run"]
        assert len(confirm_rows) == 1 and confirm_rows[0]["outcome"].startswith("ok: started")
        kill_rows = [r for r in rows if r["command"] == "kill"]
        assert kill_rows and kill_rows[0]["role"] == "viewer"
        assert all(r["latency_ms"] is not None for r in rows)


async def test_roles_and_bad_input(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        fake.send_text(VIEWER, "/run 1 paper 30")
        assert "needs role operator" in await fake.wait_text(VIEWER, "needs role")
        fake.send_text(OPERATOR, "/run banana")
        await fake.wait_text(OPERATOR, "Nothing changed")
        fake.send_text(OPERATOR, "/run 1 live 30")  # a paper service: refused, no prompt
        await fake.wait_text(OPERATOR, "ARBITRAGE_ENV=paper")
        fake.send_text(OPERATOR, "/frobnicate")
        await fake.wait_text(OPERATOR, "unknown command /frobnicate")
        fake.send_text(OPERATOR, "/whoami")
        await fake.wait_text(OPERATOR, "operator")
        await asyncio.sleep(0.2)
        assert service.current is None and str(service.state.state) == "ACTIVE"
        assert not any("Confirm" in t for t in fake.texts(VIEWER))
        outcomes = {r["command"]: r["outcome"] for r in env.audit()}
        assert outcomes["frobnicate"] == "unknown command"


async def test_pause_is_one_step_and_resume_needs_confirmation(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        fake.send_text(OPERATOR, "/pause lunch")
        await fake.wait_text(OPERATOR, "REDUCING")
        assert str(service.state.state) == "REDUCING"
        fake.send_text(OPERATOR, "/pause again")  # idempotent
        await fake.wait_text(OPERATOR, "nothing changed")
        fake.send_text(OPERATOR, "/resume")
        await fake.wait_text(OPERATOR, "Confirm /resume")
        assert str(service.state.state) == "REDUCING"
        fake.press_confirm(OPERATOR)
        await fake.wait_for(lambda: str(service.state.state) == "ACTIVE", what="ACTIVE")


async def test_kill_then_reset_needs_confirmation(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        fake.send_text(OPERATOR, "/kill drill")
        await fake.wait_text(OPERATOR, "HALTED")
        fake.send_text(OPERATOR, "/kill drill again")  # idempotent
        await fake.wait_text(OPERATOR, "already HALTED")
        fake.send_text(OPERATOR, "/reset")
        prompt = await fake.wait_text(OPERATOR, "Confirm /reset")
        assert "0 open order(s)" in prompt
        assert str(service.state.state) == "HALTED"
        fake.press_confirm(OPERATOR)
        await fake.wait_for(lambda: str(service.state.state) == "ACTIVE", what="reset")


async def test_kill_goes_through_while_telegram_answers_429(tmp_path: Path) -> None:
    """R-K1/R-O3: the kill does not wait for Telegram; the reply comes after retry_after."""
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        fake.inject("sendMessage", "429", times=None, retry_after=1)
        t0 = time.monotonic()
        fake.send_text(OPERATOR, "/kill 429 storm")
        await fake.wait_for(lambda: str(service.state.state) == "HALTED", timeout=5, what="HALT")
        halted_after = time.monotonic() - t0
        assert halted_after < 2.5, halted_after
        await fake.wait_for(lambda: len(fake.calls_to("sendMessage", ok_only=False)) >= 2,
                            what="retries")
        assert fake.texts(OPERATOR) == []
        fake.clear_faults("sendMessage")
        await fake.wait_text(OPERATOR, "HALTED", timeout=5)
        await fake.wait_text(ALERT_CHAT, "kill switch", timeout=5)
        # every retry waited at least retry_after
        # (of the kill's reply; the incident report follows as a message of its own)
        sends = [c.t for c in fake.calls_to("sendMessage", ok_only=False)
                 if int(c.params["chat_id"]) == OPERATOR and "HALTED" in c.params["text"]]
        assert all(b - a >= 0.9 for a, b in itertools.pairwise(sends))
        assert any(r["command"] == "kill" and r["outcome"].startswith("ok")
                   for r in env.audit())


async def test_stale_run_dropped_stale_kill_executed(tmp_path: Path) -> None:
    """Updates queued while the service was down: a stale /run is dropped with a
    notice, a stale /kill is honoured."""
    old = time.time() - 300

    def queue(fake: BotApiStandIn) -> None:
        fake.send_text(OPERATOR, "/run 1 paper 30", date=old)
        fake.send_text(OPERATOR, "/kill from the night", date=old + 1)

    async with telegram_env(tmp_path, before_start=queue) as env:
        fake, service = env.fake, env.service
        notice = await fake.wait_text(OPERATOR, "ignored /run")
        assert "older" not in notice or "s old" in notice
        await fake.wait_for(lambda: str(service.state.state) == "HALTED", what="stale kill")
        await asyncio.sleep(0.2)
        assert not any("Confirm" in t for t in fake.texts(OPERATOR))
        assert service.current is None
        outcomes = [(r["command"], r["outcome"]) for r in env.audit()]
        assert outcomes[0][0] == "run" and outcomes[0][1].startswith("dropped: stale")
        assert outcomes[1][0] == "kill" and outcomes[1][1].startswith("ok")


async def test_test_alert_reaches_the_alert_chat(tmp_path: Path) -> None:
    """Runbook 8.1: /notify test sends a sample alert through the notifier."""
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(VIEWER, "/notify test")
        await fake.wait_text(VIEWER, "test alert queued")
        await fake.wait_text(ALERT_CHAT, "test alert")
        await fake.wait_for(lambda: env.app.notifier.stats.test_alert_delivered_at, what="stat")


async def test_polling_survives_api_errors(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.inject("getUpdates", "5xx", times=1)
        fake.inject("sendMessage", "html", times=1)
        fake.send_text(VIEWER, "/whoami")
        await fake.wait_text(VIEWER, "viewer", timeout=10)


async def test_reports_balances_and_reconcile_answer_without_breaking(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(VIEWER, "/report daily")
        fake.send_text(VIEWER, "/report monthly")
        fake.send_text(VIEWER, "/balance")
        fake.send_text(VIEWER, "/reconcile")
        fake.send_text(OPERATOR, "/reconcile")
        await fake.wait_for(lambda: len(env.audit()) >= 5, timeout=20, what="5 audit rows")
        await fake.wait_for(lambda: len(fake.texts(VIEWER)) >= 3, timeout=20, what="3 replies")
        await fake.wait_for(lambda: fake.calls_to("sendPhoto"), what="the report's chart")
        outcomes = {r["args"]: r["outcome"] for r in env.audit() if r["command"] == "report"}
        assert outcomes["daily"] == "ok" and outcomes["monthly"].startswith("bad input")
        balance = next(t for t in fake.texts(VIEWER) if t.startswith("balances (paper"))
        assert "no run recorded yet" in balance and "None" not in balance
        assert any("needs role operator" in t for t in fake.texts(VIEWER))
        assert "no run to reconcile" in await fake.wait_text(OPERATOR, "reconcile")


async def test_reachable_reports_the_api_state(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        await env.fake.wait_for(lambda: env.fake.calls_to("getUpdates"), what="polling")
        assert await env.app.reachable()
        env.fake.inject("getMe", "5xx", times=1)
        assert not await env.app.reachable()


async def test_arm_is_two_step_and_override_is_admin_only(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(OPERATOR, "/arm 5000")
        await fake.wait_text(OPERATOR, "usage: /arm")
        fake.send_text(OPERATOR, "/arm 50")
        prompt = await fake.wait_text(OPERATOR, "Confirm /arm")
        assert "$50" in prompt and "one phase start" in prompt
        fake.press_confirm(OPERATOR)
        await fake.wait_text(OPERATOR, "ARMED")
        fake.send_text(OPERATOR, "/disarm")
        await fake.wait_text(OPERATOR, "ARM dropped")
        fake.send_text(OPERATOR, "/override 2 because")
        await fake.wait_text(OPERATOR, "needs role admin")
        rows = [(r["command"], r["outcome"]) for r in env.audit()]
        assert ("confirm arm", "ok: armed $50") in rows
        assert ("override", "refused: needs admin") in rows


async def test_stop_closes_gracefully_once_and_never_escalates(tmp_path: Path) -> None:
    """Runbook §4's graceful stop from a phone: one step, idempotent, and unlike a
    second Ctrl+C a second /stop is not an emergency halt."""
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        fake.send_text(OPERATOR, "/stop")
        await fake.wait_text(OPERATOR, "no run is active")
        fake.send_text(OPERATOR, "/run 1 paper 120")
        await fake.wait_text(OPERATOR, "Confirm /run")
        fake.press_confirm(OPERATOR)
        await fake.wait_for(lambda: service.status()["run"] is not None, what="the run")
        run_id = service.status()["run"]["run_id"]
        fake.send_text(VIEWER, "/stop")
        await fake.wait_text(VIEWER, "needs role operator")
        fake.send_text(OPERATOR, "/stop lunch")
        await fake.wait_text(OPERATOR, "closing gracefully")
        fake.send_text(OPERATOR, "/stop again")
        await fake.wait_for(lambda: any("already closing" in t or "no run is active" in t
                                        for t in fake.texts(OPERATOR)), what="2nd /stop")
        await fake.wait_for(lambda: service.last_run_result() is not None, timeout=30,
                            what="the final KPI")
        result = service.last_run_result()
        assert result["run_id"] == run_id and result["exit_code"] == 0
        assert result["kpi"]["summary"]["kill_switch_triggered"] is False
        assert str(service.state.state) != "HALTED"
        # The last /stop's audit row is written alongside its reply: wait for it.
        await fake.wait_for(lambda: len([r for r in env.audit() if r["command"] == "stop"])
                            >= 4, what="four audited /stop")
        stops = [r for r in env.audit() if r["command"] == "stop"]
        assert [r["role"] for r in stops] == ["operator", "viewer", "operator", "operator"]


async def test_logs_shows_the_newest_errors_escaped_to_operators_only(tmp_path: Path) -> None:
    """Runbook 5.3 from a phone: /logs errors [since] is the `arbops logs errors` extract."""
    from datetime import UTC, datetime, timedelta

    logs = tmp_path / "logs"
    logs.mkdir()
    now = datetime.now(UTC)
    old = (now - timedelta(hours=5)).isoformat(timespec="milliseconds")
    recent = (now - timedelta(minutes=5)).isoformat(timespec="milliseconds")
    lines = [f"{old} | ERROR    | core.trading.engine:tick:1 - old failure <a>"]
    lines += [f"{recent} | INFO     | core.trading.engine:tick:2 - all fine {i}" for i in range(3)]
    lines += [f"{recent} | ERROR    | core.trading.gateway:send:3 - send failed #{i} & <b>"
              for i in range(9)]
    (logs / "arbops.log").write_text("\n".join(lines) + "\n")
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(VIEWER, "/logs")
        await fake.wait_text(VIEWER, "needs role operator")
        fake.send_text(OPERATOR, "/logs errors since=1h")
        text = await fake.wait_text(OPERATOR, "error entries")
        assert text.startswith("9 error entries since 1h")
        assert "send failed #8 & <b>" in text and "send failed #2" not in text  # newest 6
        assert "old failure" not in text and "all fine" not in text
        fake.send_text(OPERATOR, "/logs")
        assert "10 error entries" in await fake.wait_text(OPERATOR, "10 error")
        fake.send_text(OPERATOR, "/logs errors since=yesterday-ish")
        await fake.wait_text(OPERATOR, "Nothing changed")


async def test_incident_new_opens_a_report_file(tmp_path: Path) -> None:
    """Runbook 7.1 from a phone: /incident new <title> writes the blank report."""
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(VIEWER, "/incident new spread looked wrong")
        await fake.wait_text(VIEWER, "needs role operator")
        fake.send_text(OPERATOR, "/incident new")
        await fake.wait_text(OPERATOR, "usage: /incident new")
        fake.send_text(OPERATOR, "/incident new   spread <looked> wrong  ")
        reply = await fake.wait_text(OPERATOR, "incident report opened")
        files = list((tmp_path / "incidents").glob("*_manual.md"))
        assert len(files) == 1 and files[0].name in reply
        text = files[0].read_text()
        assert "# Incident: spread <looked> wrong" in text
        assert f"opened by hand (telegram:{OPERATOR})" in text
        assert str(env.service.state.state) == "ACTIVE"


async def test_kill_with_the_journal_locked_answers_halted_and_says_where(
        tmp_path: Path) -> None:
    """Another process holds the journal's lock: /kill still HALTs at once and says so
    (not "internal error"), naming the stores that hold it and the one still pending."""
    import subprocess
    import sys

    from bot.app import DB_NAME

    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        code = ("import sqlite3, sys, time\n"
                "c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n"
                "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
                "time.sleep(4); c.execute('COMMIT')\n")
        lock = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / DB_NAME)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert lock.stdout is not None and lock.stdout.readline().strip() == "locked"
            fake.send_text(VIEWER, "/kill journal locked")
            text = await fake.wait_text(VIEWER, "HALTED", timeout=5)
            assert "Kept by: file" in text and "not yet: journal" in text, text
            assert str(service.state.state) == "HALTED"
        finally:
            lock.wait(30)
            assert lock.stdout is not None
            lock.stdout.close()
        # The journal takes the flag once the lock is gone.
        await fake.wait_for(lambda: service.durable.status["journal"] == "HALTED",
                            timeout=15, what="the journal mirror")
