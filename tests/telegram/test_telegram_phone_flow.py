"""README step 4 from a phone, end to end: the real aiogram Bot polling the Bot API
stand-in, a real service (SQLite journal, paper venues, fast sim market).

With a bot token set, phase 1's gate also wants a delivered test alert: a run before
/notify test ends with a FAIL card that names that check and what it saw; after
/notify test the same run ends with a PASS card listing every check with its reason.
Then every read command's reply is formatted for people: no Python repr anywhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.commands import COMMANDS
from tests.telegram.tg_support import ADMIN, ALERT_CHAT, OPERATOR, telegram_env

pytestmark = [pytest.mark.timeout(120)]

# A Python repr shown to a person: a dict/list literal, or None/True/False as a value.
REPR = re.compile(r"\{'|\['|\bNone\b|(?<![A-Za-z])(True|False)(?![A-Za-z])")
# The gate is the subject here, not this machine's load: CPU and memory limits are
# set out of the way so the check list is decided by what the test does.
GATE_ROOM = {"gate_phase1_cpu_percent": 100.0, "gate_phase1_memory_mb": 4000.0}


async def _run_to_card(env, seconds: int = 90) -> str:
    fake = env.fake
    before = env.service.last_outcome
    mark = len(fake.texts(OPERATOR))
    fake.send_text(OPERATOR, f"/run 1 paper {seconds}")
    await fake.wait_for(lambda: any("Confirm /run" in t for t in fake.texts(OPERATOR)[mark:]),
                        what="the Confirm prompt")
    fake.press_confirm(OPERATOR)
    await fake.wait_for(lambda: env.service.last_outcome is not before, timeout=60,
                        what="the run's end")
    run_id = env.service.last_outcome.run_id
    return await fake.wait_text(OPERATOR, f"run {run_id} ended", timeout=15)


async def test_readme_step_4_from_the_phone(tmp_path: Path) -> None:
    async with telegram_env(tmp_path, fast=True, settings_kw=GATE_ROOM) as env:
        fake = env.fake
        # Before /notify test: FAIL, and the card says which check and what it saw.
        card = await _run_to_card(env)
        assert "gate FAIL" in card, card
        assert "✗ telegram_test_alert" in card and ": no" in card, card
        assert "/notify test" in card, card
        assert not REPR.search(card), card

        fake.send_text(OPERATOR, "/notify test")
        await fake.wait_text(ALERT_CHAT, "test alert")
        await fake.wait_for(
            lambda: env.app.notifier.stats.test_alert_delivered_at is not None,
            what="the test alert delivered")

        card = await _run_to_card(env)
        assert "gate PASS" in card, card
        gate = env.service.last_outcome.kpi["gate"]
        assert gate["result"] == "PASS"
        for check in gate["checks"]:  # every check, with its observed value and need
            assert f"✓ {check['name']}: {check['reason']}" in card, (check, card)
        assert "PAPER phase 1" in card and "kill switch no" in card
        assert not REPR.search(card), card

        # /kpi says the same, read back from the journal of this process
        fake.send_text(OPERATOR, "/kpi")
        kpi = await fake.wait_text(OPERATOR, "last finished")
        assert "gate PASS" in kpi and "✓ telegram_test_alert" in kpi

        # Every read command a phone user has, formatted: no repr in any reply.
        # (/report is a chart and has its own tests; preflight without `dry` would try
        # the real venues' addresses)
        reads = [c.name for c in COMMANDS if c.telegram and not c.adds_risk and c.name not in (
            "kill", "stop", "pause", "disarm", "notify", "incident", "logs", "audit", "report")]
        for name in reads:
            mark = len(fake.texts(ADMIN))
            fake.send_text(ADMIN, f"/{name}" + (" dry" if name == "preflight" else ""))
            await fake.wait_for(lambda m=mark: len(fake.texts(ADMIN)) > m, timeout=30,
                                what=f"/{name}'s reply")
            reply = fake.texts(ADMIN)[mark]
            assert not REPR.search(reply), (name, reply)
            assert "Traceback" not in reply and "internal error" not in reply, (name, reply)


async def test_the_live_status_header_names_the_paper_mode(tmp_path: Path) -> None:
    async with telegram_env(tmp_path, fast=False, live_interval_s=0.2) as env:
        fake = env.fake
        fake.send_text(OPERATOR, "/run 1 paper 30")
        await fake.wait_text(OPERATOR, "Confirm /run")
        fake.press_confirm(OPERATOR)
        header = await fake.wait_text(OPERATOR, "run · updating", timeout=20)
        assert header.startswith("▶️ PAPER run"), header
        assert "LIVE run" not in "\n".join(fake.texts(OPERATOR))
        env.service.current.request_stop("test over")


async def test_after_kill_the_chat_gets_the_incident_report(tmp_path: Path) -> None:
    """The /kill reply promises the report; it arrives in the same chat, with its path
    (a file that exists) and, for a run, the run's final card."""
    async with telegram_env(tmp_path, fast=True, settings_kw=GATE_ROOM) as env:
        fake = env.fake
        fake.send_text(OPERATOR, "/kill nothing running")
        reply = await fake.wait_text(OPERATOR, "HALTED")
        assert "incident report follows here" in reply
        report = await fake.wait_text(OPERATOR, "🧾 incident report:", timeout=15)
        path = Path(report.split("incident report: ", 1)[1].split("\n", 1)[0])
        assert path.is_file() and path.parent.name == "incidents", report
        fake.send_text(OPERATOR, "/reset")
        await fake.wait_text(OPERATOR, "Confirm /reset")
        fake.press_confirm(OPERATOR)
        await fake.wait_for(lambda: str(env.service.state.state) == "ACTIVE", what="reset")

        fake.send_text(OPERATOR, "/run 1 paper 600")
        await fake.wait_for(lambda: sum("Confirm /run" in t for t in fake.texts(OPERATOR)),
                            what="the Confirm prompt")
        fake.press_confirm(OPERATOR)
        await fake.wait_for(lambda: env.service.status()["run"] is not None and
                            env.service.status()["run"].get("round_trips", 0) > 0,
                            timeout=30, what="a trading run")
        run_id = env.service.status()["run"]["run_id"]
        mark = len(fake.texts(OPERATOR))
        fake.send_text(OPERATOR, "/kill drill")
        await fake.wait_text(OPERATOR, "The final KPI and the incident report follow here")
        card = await fake.wait_for(
            lambda: next((t for t in fake.texts(OPERATOR)[mark:]
                          if t.startswith("🧾 incident report:")), None),
            timeout=60, what="the run's incident report")
        assert run_id in card and "kill switch TRIGGERED" in card, card
        path = Path(card.split("incident report: ", 1)[1].split("\n", 1)[0])
        assert path.is_file(), card
        assert not REPR.search(card), card
