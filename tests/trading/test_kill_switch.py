"""The kill procedure in-process (R-K1, R-K5, R-S7): real SQLite, paper venues, fast sim.

A phase runs in fast mode (the sim is stepped on a ManualClock); once the engine
holds an open position a kill is scheduled on the loop. Then: the final KPI says
so, every kill step ran and succeeded, the venues hold no open order, the engine
is flat, an incident report with every section exists, HALTED is persisted and
survives a rebuild of the service until `reset`. Failing cancels are retried (and
reported FAILED when they never succeed), and the watchdog thread HALTs while the
event loop itself is blocked.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.app import DB_NAME, build_service, start_watchdog
from core.commands import RunArgs
from core.config.settings import Settings
from core.domain.models import TradingState
from core.errors import ServiceError
from core.service import OperatorService
from core.trading.phase_run import PhaseRun, RunOutcome

pytestmark = [pytest.mark.timeout(90)]

KILL_STEPS = ("halt", "persist_flag", "cancel_all", "verify_flat", "final_kpi", "notify")
INCIDENT_SECTIONS = ("Time (UTC)", "## Symptom", "## Actions and results", "## Log lines",
                     "## Cause", "## Prevention")
# Partial fills and many jumps: positions open early, orders stay partly filled.
TRADING = {"paper_fill_ratio": 0.3, "order_timeout_s": 5.0, "sim_jump_rate_per_min": 6.0,
           # The pytest process's RSS (ccxt, aiogram, hypothesis...) is not the engine's:
           # only the heartbeat guard is under test here.
           "guard_memory_anomaly_mb": 4000.0, "guard_memory_kill_mb": 4000.0,
           "guard_rss_growth_mb": 4000.0}


def settings_for(data_dir: Path, **kw: Any) -> Settings:
    return Settings(data_dir=data_dir, sim_fast=True, **{**TRADING, **kw})


@contextlib.asynccontextmanager
async def service_on(settings: Settings) -> AsyncIterator[OperatorService]:
    service = await build_service(settings, fast=True)
    try:
        yield service
    finally:
        await service.store.close()


def flag_row(data_dir: Path) -> str | None:
    """The persisted trading-state flag, read on a connection of the test's own."""
    con = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT value FROM flags WHERE key = 'trading_state'").fetchone()
    finally:
        con.close()
    return row[0] if row else None


class Killer:
    """on_progress: remembers the run and its venues; kills once a position is open."""

    def __init__(self, service: OperatorService, extra: Callable[[PhaseRun], None] | None = None
                 ) -> None:
        self.service = service
        self.extra = extra
        self.run: PhaseRun | None = None
        self.venues: dict[Any, Any] = {}
        self.kill_task: asyncio.Future[Any] | None = None
        self.open_at_kill: list[dict[str, Any]] = []
        self.states_after_kill: set[str] = set()

    def __call__(self, run: PhaseRun) -> None:
        self.run = run
        self.venues.update(run.ex)
        assert run.engine is not None
        if self.kill_task is None:
            positions = run.engine.open_positions()
            if any(p["state"] == "open" for p in positions):
                self.open_at_kill = positions
                self.kill_task = asyncio.ensure_future(self.service.kill("test", "tester"))
        else:
            self.states_after_kill.add(str(self.service.state.state))
        if self.extra is not None:
            self.extra(run)


async def run_and_kill(service: OperatorService, killer: Killer, seconds: float = 120,
                       close_timeout_s: float | None = None) -> RunOutcome:
    spec = service.plan_run(RunArgs(phase=1, duration_seconds=seconds, seed=7, universe="top10"))
    if close_timeout_s is not None:
        spec = dataclasses.replace(spec, close_timeout_s=close_timeout_s)
    outcome = await service.run_phase(spec, killer)
    assert killer.kill_task is not None, "no position ever opened: the kill never ran"
    await killer.kill_task
    return outcome


def steps_of(kpi: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for step in kpi["kill"]["steps"]:
        out.setdefault(step["step"], []).append(step)
    return out


def incident_files(data_dir: Path) -> list[Path]:
    d = data_dir / "incidents"
    return sorted(d.glob("*.md")) if d.exists() else []


# --- the kill procedure -------------------------------------------------------------------
async def test_kill_mid_run_halts_cancels_flattens_reports_and_persists(tmp_path: Path) -> None:
    async with service_on(settings_for(tmp_path)) as service:
        killer = Killer(service)
        outcome = await run_and_kill(service, killer)
        result = killer.kill_task.result()  # type: ignore[union-attr]
        assert result.halted and result.run_id == outcome.run_id
        assert result.already_halted is False
        assert killer.open_at_kill, "the kill was meant to land on an open position"
        run = killer.run
        assert run is not None and run.engine is not None

        # the final KPI (returned and on disk)
        kpi = outcome.kpi
        on_disk = json.loads(outcome.kpi_path.read_text())
        for data in (kpi, on_disk):
            assert data["final"] is True
            assert data["summary"]["kill_switch_triggered"] is True
            assert data["summary"]["exit_code"] == 1
            assert "kill: test (by tester)" in data["summary"]["stop_reason"]
            assert data["guards"]["trading_state"] == "HALTED"
            assert data["trading"]["still_open_on_venues"] == []
        assert outcome.exit_code == 1

        # every step ran, and every one succeeded
        steps = steps_of(on_disk)
        assert set(KILL_STEPS) <= set(steps), steps.keys()
        failed = [s for s in on_disk["kill"]["steps"] if not s["ok"]]
        assert failed == [], failed
        order = [s["step"] for s in on_disk["kill"]["steps"]]
        assert order[0] == "halt"
        assert order.index("verify_flat") < order.index("final_kpi") < order.index("notify")
        assert on_disk["kill"]["trigger"] == "test (by tester)"

        # the venues hold nothing; the engine is flat
        assert set(killer.venues) == set(run.ex) and len(killer.venues) == 2
        for venue, ex in killer.venues.items():
            assert await ex.fetch_open_orders() == [], venue
        assert run.engine.open_positions() == []
        assert not run.engine.busy
        still = await service.still_open()
        assert still["open_orders"] == [], still["open_orders"]

        # the incident report
        files = incident_files(tmp_path)
        assert len(files) == 1, files
        assert str(files[0]) == on_disk["kill"]["incident"]
        assert files[0].name.endswith(f"_{outcome.run_id}.md")
        text = files[0].read_text()
        for section in INCIDENT_SECTIONS:
            assert section in text, section
        assert "test (by tester)" in text
        for step in ("halt", "persist_flag", "cancel_all", "verify_flat", "final_kpi"):
            assert f"| {step} | ok |" in text, step
        symptom = text.split("```json", 1)[1].split("```", 1)[0]
        metrics = json.loads(symptom)
        assert metrics["open_positions"] >= 1 and "pnl_usd" in metrics

        # HALTED, in memory and in SQLite
        assert service.state.state is TradingState.HALTED
        assert (await service.store.get_flag("trading_state") or "").startswith("HALTED")
        assert (flag_row(tmp_path) or "").startswith("HALTED")
        run_row = await service.store.get_run(outcome.run_id)
        assert run_row["status"] == "killed" and run_row["exit_code"] == 1
        with pytest.raises(ServiceError, match="HALTED"):
            await service.run_phase(service.plan_run(RunArgs(duration_seconds=5)))

    # a new service on the same dir starts HALTED; only reset leaves it
    async with service_on(settings_for(tmp_path)) as again:
        assert again.state.state is TradingState.HALTED
        assert again.status()["trading_state"] == "HALTED"
        assert "test" in (again.status()["halted_reason"] or "")
        with pytest.raises(ServiceError):
            again.resume("try")
        cleared = await again.reset("tester")
        assert cleared["trading_state"] == "ACTIVE"
        assert again.state.state is TradingState.ACTIVE
        assert not (await again.store.get_flag("trading_state") or "").startswith("HALTED")
        events = await again.store.events(kind="reset")
        assert events and events[0]["payload"] == {"actor": "tester"}
    async with service_on(settings_for(tmp_path)) as third:
        assert third.state.state is TradingState.ACTIVE


async def test_kill_twice_is_harmless(tmp_path: Path) -> None:
    async with service_on(settings_for(tmp_path)) as service:
        second: list[asyncio.Future[Any]] = []

        def kill_again(run: PhaseRun) -> None:
            first = killer.kill_task
            if first is not None and first.done() and not second:
                second.append(asyncio.ensure_future(service.kill("again", "tester")))

        killer = Killer(service, kill_again)
        outcome = await run_and_kill(service, killer)
        assert second, "the run ended before a second kill could be sent"
        again = await second[0]
        assert again.halted is True
        assert again.already_halted is True
        assert "already in progress" in again.message
        assert outcome.kpi["kill"]["trigger"] == "test (by tester)"  # the first one's
        names = [s["step"] for s in outcome.kpi["kill"]["steps"]]
        assert names.count("halt") == 1 and names.count("final_kpi") == 1

        # a third one after the run ended: still HALTED, no new incident report
        third = await service.kill("after", "tester")
        assert third.halted and third.already_halted and third.run_id is None
        assert service.state.state is TradingState.HALTED
        assert len(incident_files(tmp_path)) == 1
        assert (flag_row(tmp_path) or "").startswith("HALTED")


# --- cancels that fail -----------------------------------------------------------------------
async def test_kill_retries_failing_cancels_until_they_succeed(tmp_path: Path) -> None:
    async with service_on(settings_for(tmp_path, paper_cancel_failures=5)) as service:
        killer = Killer(service)
        outcome = await run_and_kill(service, killer)
        kpi = outcome.kpi
        steps = steps_of(kpi)
        assert set(KILL_STEPS) <= set(steps)
        cancel = steps["cancel_all"]
        assert all(s["ok"] for s in cancel), cancel
        attempts = int(cancel[0]["detail"].rsplit("attempt ", 1)[1].rstrip(")"))
        assert attempts > 1, f"the injected failures were meant to force retries: {cancel}"
        assert all(s["ok"] for s in kpi["kill"]["steps"]), kpi["kill"]["steps"]
        assert kpi["summary"]["kill_switch_triggered"] is True
        assert kpi["summary"]["exit_code"] == 1
        assert kpi["trading"]["still_open_on_venues"] == []
        assert any(ex.cancel_failures_left < 5 for ex in killer.venues.values())
        for ex in killer.venues.values():
            assert await ex.fetch_open_orders() == []
        # HALTED on every tick after the kill, and after: never resumed
        assert killer.states_after_kill == {"HALTED"}
        assert service.state.state is TradingState.HALTED
        assert (flag_row(tmp_path) or "").startswith("HALTED")


async def _advance_manual_clock_after_kill(service: OperatorService, killer: Killer,
                                           stop: asyncio.Event) -> None:
    """Fast mode only: the close deadline is on the ManualClock, which stops moving once
    the tick loop has ended, while the cancel backoff sleeps are real; move it along
    (0.1 s of clock per 10 ms) so the retry deadline arrives in real time. See
    test_fast_mode_kill_with_failing_cancels_ends_in_bounded_real_time."""
    while not stop.is_set():
        await asyncio.sleep(0.01)
        if killer.run is not None and killer.run.killed:
            service.clock.advance(0.1)  # type: ignore[attr-defined]


class Alerts:
    """A notifier that keeps what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def notify(self, severity: str, title: str, body: str) -> None:
        self.sent.append((str(severity), title, body))


async def never_cancelling_kill(tmp_path: Path) -> tuple[OperatorService, Killer, RunOutcome]:
    """A killed run whose cancels always fail: it keeps trying past the deadline (with
    CRITICAL alerts) until the operator stops the flattening, here once the cancels
    have been reported as still failing (the caller closes the service's store)."""
    service = await build_service(settings_for(tmp_path, paper_cancel_failures=10**9,
                                               flatten_alert_interval_s=0.5), fast=True)
    service.notifier = Alerts()

    def freeze_fills_then_give_up(run: PhaseRun) -> None:
        # Once the kill is in, nothing fills any more: the orders stay open, so the
        # only way out would be a cancel, and every cancel fails.
        if killer.kill_task is not None:
            for ex in run.ex.values():
                ex.fill_ratio = 1e-12
        failed = [s for s in run.kill_steps if s["step"] == "cancel_all" and not s["ok"]]
        alerted = any(a[0] == "CRITICAL" for a in service.notifier.sent)
        if failed and alerted and run.flatten_stopped is None:
            service.stop("giving up on the cancels", "tester")

    killer = Killer(service, freeze_fills_then_give_up)
    stop = asyncio.Event()
    mover = asyncio.ensure_future(_advance_manual_clock_after_kill(service, killer, stop))
    try:
        outcome = await asyncio.wait_for(run_and_kill(service, killer, close_timeout_s=2.0), 60)
    except BaseException:
        await service.store.close()
        raise
    finally:
        stop.set()
        await mover
    return service, killer, outcome


async def test_kill_with_cancels_that_never_succeed_reports_failed_and_stays_halted(
    tmp_path: Path,
) -> None:
    service, killer, outcome = await never_cancelling_kill(tmp_path)
    try:
        kpi = outcome.kpi
        steps = steps_of(kpi)
        assert set(KILL_STEPS) <= set(steps), steps.keys()
        cancel = steps["cancel_all"]
        assert cancel and not any(s["ok"] for s in cancel), cancel
        assert "still failing" in cancel[-1]["detail"]
        # It kept going past the deadline, said so, and stopped only when told to.
        assert any(a[0] == "CRITICAL" and "still flattening" in a[2]
                   for a in service.notifier.sent)
        assert steps["flatten"][-1]["detail"].startswith("stopped by the operator")
        attempts = int(cancel[0]["detail"].split("after ", 1)[1].split(" attempts", 1)[0])
        assert attempts >= 3, cancel  # it kept retrying before giving up
        assert steps["verify_flat"][-1]["ok"] is False
        still = kpi["trading"]["still_open_on_venues"]
        assert still, "what is still open must be listed"
        open_orders = [x for x in still if "open_order" in x]
        listed = {x["open_order"] for x in open_orders}
        on_venues = set()
        for ex in killer.venues.values():
            on_venues |= {o.client_order_id for o in await ex.fetch_open_orders()}
        assert on_venues and listed == on_venues
        assert kpi["summary"]["kill_switch_triggered"] is True
        assert kpi["summary"]["exit_code"] == 1 and outcome.exit_code == 1
        assert killer.states_after_kill == {"HALTED"}
        assert service.state.state is TradingState.HALTED
        assert (flag_row(tmp_path) or "").startswith("HALTED")
        text = Path(kpi["kill"]["incident"]).read_text()
        assert "| cancel_all | FAILED |" in text and "still_open" in text
    finally:
        await service.store.close()

    async with service_on(settings_for(tmp_path)) as again:
        assert again.state.state is TradingState.HALTED


async def test_close_timeout_after_a_kill_keeps_the_kill_reason(tmp_path: Path) -> None:
    service, _killer, outcome = await never_cancelling_kill(tmp_path)
    try:
        names = [s["step"] for s in outcome.kpi["kill"]["steps"]]
        flag = await service.store.get_flag("trading_state") or ""
        assert "test (by tester)" in flag, flag
        assert names.count("persist_flag") == 1 and names.count("cancel_all") == 1, names
    finally:
        await service.store.close()


async def test_a_kill_flattens_past_the_deadline_until_the_venues_take_the_cancels(
    tmp_path: Path,
) -> None:
    """Cancels failing for longer than the close deadline: the kill does not give up on
    a clock; once the venue takes them the run ends flat (R-K6)."""
    async with service_on(settings_for(tmp_path, paper_cancel_failures=10**9,
                                       flatten_alert_interval_s=0.5)) as service:
        service.notifier = Alerts()

        def venues_recover_after_the_deadline(run: PhaseRun) -> None:
            # Nothing fills and no cancel goes through until the kill has reported the
            # cancels failing past its deadline; then the venues answer again.
            recovered = any(st["step"] == "cancel_all" and not st["ok"]
                            for st in run.kill_steps)
            if killer.kill_task is not None:
                for ex in run.ex.values():
                    ex.fill_ratio = 0.3 if recovered else 1e-12
                    if recovered:
                        ex.cancel_failures_left = 0

        killer = Killer(service, venues_recover_after_the_deadline)
        outcome = await asyncio.wait_for(
            run_and_kill(service, killer, close_timeout_s=2.0), 60)
        kpi = outcome.kpi
        steps = steps_of(kpi)
        cancel = steps["cancel_all"]
        assert not cancel[0]["ok"] and cancel[-1]["ok"], cancel
        assert "after the deadline" in cancel[-1]["detail"]
        assert kpi["trading"]["still_open_on_venues"] == []
        assert steps["verify_flat"][-1]["ok"] is True
        for ex in killer.venues.values():
            assert await ex.fetch_open_orders() == []


# --- the watchdog sees a stuck event loop -------------------------------------------------
async def test_watchdog_halts_while_the_loop_is_blocked_then_the_run_ends_killed(
    tmp_path: Path,
) -> None:
    # The memory guard is moved out of the way: this is about the heartbeat, and the
    # test process's RSS (everything imported by earlier tests) can pass 300 MB.
    settings = Settings(data_dir=tmp_path, sim_fast=True, watchdog_interval_s=0.5,
                        guard_heartbeat_s=2, guard_memory_anomaly_mb=4000.0)
    async with service_on(settings) as service:
        watchdog = start_watchdog(service)
        seen: dict[str, Any] = {}
        blocked = threading.Event()

        def observer() -> None:  # a thread of the test's own: watches during the block
            if not blocked.wait(30):
                return
            deadline = time.monotonic() + 7.0
            while time.monotonic() < deadline and blocked.is_set():
                if service.state.state is TradingState.HALTED:
                    flag = flag_row(tmp_path)
                    if flag and flag.startswith("HALTED"):
                        seen["thread_saw"] = (time.monotonic() - seen["blocked_at"], flag)
                        return
                time.sleep(0.05)

        def block_once(run: PhaseRun) -> None:
            assert run.engine is not None
            if "blocked_at" in seen or len(run.engine.latency.samples) < 20:
                return
            seen["blocked_at"] = time.monotonic()
            seen["samples_before"] = watchdog.samples
            blocked.set()
            # The loop is stuck; end the block early once the HALT is visible (max 7 s).
            deadline = time.monotonic() + 7.0
            while time.monotonic() < deadline and "thread_saw" not in seen:
                time.sleep(0.05)
            time.sleep(0.3)
            blocked.clear()
            seen["after_block_state"] = str(service.state.state)
            seen["after_block_flag"] = flag_row(tmp_path)
            seen["blocked_for"] = time.monotonic() - seen["blocked_at"]

        watcher = threading.Thread(target=observer, name="test-observer", daemon=True)
        watcher.start()
        try:
            spec = service.plan_run(RunArgs(phase=1, duration_seconds=60, seed=7,
                                            universe="top10"))
            outcome = await asyncio.wait_for(service.run_phase(spec, block_once), 60)
        finally:
            blocked.clear()
            watchdog.stop()
            watcher.join(timeout=10)
        assert not watcher.is_alive()

        assert "blocked_at" in seen, "the run never reached the block"
        assert "thread_saw" in seen, f"no HALT while the loop was blocked: {seen}"
        halted_after, flag = seen["thread_saw"]
        assert halted_after < 7.0
        assert "heartbeat" in flag
        assert seen["after_block_state"] == "HALTED"
        assert (seen["after_block_flag"] or "").startswith("HALTED")
        from core.trading.durable_state import read_state_file

        rec = read_state_file(tmp_path)  # the file, written from the watchdog thread
        assert rec is not None and str(rec.state) == "HALTED" and "heartbeat" in rec.reason

        kpi = outcome.kpi
        assert kpi["summary"]["kill_switch_triggered"] is True
        assert kpi["summary"]["exit_code"] == 1
        assert "heartbeat" in kpi["kill"]["trigger"]
        assert kpi["kill"]["trigger"].endswith("(by guard:heartbeat)")
        assert service.state.state is TradingState.HALTED
        assert (flag_row(tmp_path) or "").startswith("HALTED")
        assert incident_files(tmp_path), "a guard kill writes an incident report too"
        assert not watchdog._thread.is_alive()  # type: ignore[union-attr]
