"""Venue outage (runbook §9): REDUCING while a venue does not answer, escalation
with positions open, back to ACTIVE when it answers again.

The end-to-end test runs a real-data paper phase against the emulator and puts
one venue, then the other, into `maintenance` for its order-book path. The
unit tests drive `PhaseRun._watch_venues` with a fake feed and engine.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from bot.app import build_service, start_watchdog
from core.clock import SystemClock
from core.commands import RunArgs
from core.config.settings import Settings
from core.domain.models import TradingState, Venue
from core.monitoring.notifier import LogNotifier
from core.trading.phase_run import PhaseRun, RunSpec
from core.trading.state import TradingStateBox
from tests.venues.support import HOLDING, db_rows, emu_settings, emulator

PATHS = {"binance": "/api/v3/depth", "upbit": "/v1/orderbook"}


class OutageDriver:
    """Called on every loop iteration (on_progress): injects and clears the faults and
    records what the loop looked like. Stages:
    0 wait for a position with both legs filled -> Binance books down
    1 wait REDUCING, then for the CRITICAL escalation (bounded) -> clear
    2 wait ACTIVE -> Upbit books down
    3 wait REDUCING, keep it down 2.5 s (longer than one snapshot wait) -> clear
    4 wait ACTIVE -> done
    """

    def __init__(self, emu: Any, notifier: LogNotifier) -> None:
        self.emu = emu
        self.notifier = notifier
        self.stage = 0
        self.t0 = time.monotonic()
        self.stage_at = self.t0
        self.marks: dict[str, float] = {}  # event -> wall time
        self.positions_at_fault = 0
        self.states: list[tuple[float, str]] = []

    def _next(self, name: str) -> None:
        self.marks[name] = time.time()
        self.stage += 1
        self.stage_at = time.monotonic()

    def __call__(self, run: PhaseRun) -> None:
        e = run.engine
        if e is None:
            return
        state = run.state.state
        self.states.append((time.time(), str(state)))
        now = time.monotonic()
        held = [p for p in e.open_positions() if not p["working_orders"]
                and p["open_qty"] and all(q > 0 for q in p["open_qty"].values())]  # type: ignore[attr-defined]
        if self.stage == 0 and (held or now - self.stage_at > 8):
            self.positions_at_fault = len(held)
            self.emu.add_fault(venue="binance", kind="maintenance", count=None,
                               path=PATHS["binance"])
            self._next("binance_down")
        elif self.stage == 1 and state is TradingState.REDUCING:
            critical = any(s == "CRITICAL" for _, s, _, _ in self.notifier.sent)
            self.marks.setdefault("binance_reducing", time.time())
            if critical or now - self.stage_at > 4:
                self.emu.clear_faults()
                self._next("binance_cleared")
        elif self.stage == 2 and state is TradingState.ACTIVE:
            self.marks["binance_active"] = time.time()
            self.emu.add_fault(venue="upbit", kind="maintenance", count=None,
                               path=PATHS["upbit"])
            self._next("upbit_down")
        elif self.stage == 3 and state is TradingState.REDUCING:
            self.marks.setdefault("upbit_reducing", time.time())
            if time.time() - self.marks["upbit_reducing"] > 2.5:
                self.emu.clear_faults()
                self._next("upbit_cleared")
        elif self.stage == 4 and state is TradingState.ACTIVE:
            self._next("upbit_active")


async def test_outage_goes_reducing_escalates_and_recovers(tmp_path: Path) -> None:
    async with emulator(interval_s=0.1, autostep=True) as emu:
        # The REST path: its outage is a depth endpoint in maintenance.
        settings = emu_settings(emu, tmp_path, outage_escalate_s=1.0, max_concurrent=6,
                                market_data_streams=False,
                                **HOLDING)
        service = await build_service(settings)
        watchdog = start_watchdog(service)  # the real heartbeat guard is watching
        driver = OutageDriver(emu, service.notifier)
        hb_ages: list[tuple[float, float]] = []

        async def sample_heartbeat() -> None:
            while True:
                run = service.current
                if run is not None and run.engine is not None and driver.stage in (1, 2, 3, 4):
                    hb_ages.append((time.time(), time.monotonic() - run.engine.heartbeat_real))
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample_heartbeat())
        try:
            spec = service.plan_run(RunArgs(phase=1, data_source="real", duration_seconds=16,
                                            universe="top10"))
            out = await asyncio.wait_for(service.run_phase(spec, driver), 60)
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
            watchdog.stop()
            await service.store.close()

    m = driver.marks
    assert driver.stage == 5, (driver.stage, m, service.state.history)
    assert driver.positions_at_fault >= 1, "no position opened before the outage"
    history = [(ts, st, why) for ts, st, why in service.state.history]
    # Never HALTED: no heartbeat kill, no guard kill; the run ended by its duration.
    assert all(st is not TradingState.HALTED for _, st, _ in history), history
    assert out.kpi["summary"]["kill_switch_triggered"] is False
    assert out.kpi["summary"]["stop_reason"] == "duration_elapsed"
    assert out.kpi["guards"]["trading_state"] == "ACTIVE"
    # REDUCING for each outage, ACTIVE after each; the reason names the venue.
    reducing = [(ts, why) for ts, st, why in history if st is TradingState.REDUCING]
    active = [ts for ts, st, _ in history if st is TradingState.ACTIVE]
    assert len(reducing) == 2 and len(active) == 2, history
    assert "binance" in reducing[0][1] and "upbit" in reducing[1][1]
    assert "venue outage" in reducing[0][1]
    # Within a few polls (0.2 s each, plus one snapshot wait).
    assert reducing[0][0] - m["binance_down"] < 3.0
    assert reducing[1][0] - m["upbit_down"] < 5.0
    assert active[0] - m["binance_cleared"] < 3.0
    assert active[1] - m["upbit_cleared"] < 5.0
    # The heartbeat kept updating while books were missing (Upbit down: no snapshots).
    upbit_window = [age for ts, age in hb_ages if m["upbit_reducing"] <= ts <= m["upbit_cleared"]]
    assert upbit_window, hb_ages[:5]
    assert max(age for _, age in hb_ages) < settings.guard_heartbeat_s, max(hb_ages)
    # No entry was sent while a venue was down (entries resume only after ACTIVE).
    windows = [(reducing[0][0], active[0]), (reducing[1][0], active[1])]
    entries = db_rows(tmp_path, "SELECT created_at FROM order_intents WHERE run_id=? AND "
                      "purpose='entry'", (out.run_id,))
    assert entries, "the run made no entry at all"
    inside = [e["created_at"] for e in entries
              if any(lo <= e["created_at"] <= hi for lo, hi in windows)]
    assert inside == [], (inside, windows)
    # Notifications: ALERT at each outage, CRITICAL once with positions open, RECOVERED.
    outage = [(sev, body) for _, sev, title, body in service.notifier.sent
              if title == "venue outage"]
    sevs = [sev for sev, _ in outage]
    assert sevs[:4] == ["ALERT", "CRITICAL", "RECOVERED", "ALERT"], outage
    # The second outage escalates too if a position is still open (held 2.5 s > 1 s).
    assert sevs[4:] in (["RECOVERED"], ["CRITICAL", "RECOVERED"]), outage
    assert "binance" in outage[0][1] and "REDUCING" in outage[0][1]
    assert "position(s) open" in outage[1][1]
    assert "upbit" in outage[3][1]
    # Everything closed and reconciled at the end.
    assert out.kpi["reconciliation"]["ok"] is True, out.kpi["reconciliation"]
    assert out.kpi["trading"]["still_open_on_venues"] == []


# --- _watch_venues with fakes ---------------------------------------------------------
class FakeFeed:
    def __init__(self) -> None:
        self.down: dict[Venue, str] = {}
        self.down_since: dict[Venue, float] = {}

    def go_down(self, venue: Venue, ago_s: float = 0.0) -> None:
        self.down[venue] = "ExchangeNotAvailable: maintenance"
        self.down_since[venue] = time.monotonic() - ago_s

    def come_up(self) -> None:
        self.down.clear()
        self.down_since.clear()


class FakeEngine:
    def __init__(self, positions: int) -> None:
        self.positions = [{"position_id": f"p{i}", "base": "BTC"} for i in range(positions)]
        self.accept_entries = True

    def open_positions(self) -> list[dict[str, object]]:
        return list(self.positions)


def make_run(tmp_path: Path, escalate_s: float, positions: int
             ) -> tuple[PhaseRun, FakeFeed, LogNotifier]:
    settings = Settings(_env_file=None, data_dir=tmp_path, outage_escalate_s=escalate_s)  # type: ignore[call-arg]
    spec = RunSpec(mode="paper", phase=1, top_n=10, duration_s=10, notional_usd=50,
                   data_source="real")
    feed, notifier = FakeFeed(), LogNotifier()
    run = PhaseRun(spec, settings, None, TradingStateBox(), SystemClock(), feed, {},
                   notifier=notifier)
    run.engine = FakeEngine(positions)  # type: ignore[assignment]
    return run, feed, notifier


def sevs(notifier: LogNotifier) -> list[str]:
    return [s for _, s, _, _ in notifier.sent]


async def test_watch_escalates_once_with_positions_open(tmp_path: Path) -> None:
    run, feed, notifier = make_run(tmp_path, escalate_s=5.0, positions=2)
    await run._watch_venues()
    assert notifier.sent == [] and run.state.state is TradingState.ACTIVE
    feed.go_down(Venue.BINANCE, ago_s=1.0)
    await run._watch_venues()
    assert run.state.state is TradingState.REDUCING and sevs(notifier) == ["ALERT"]
    await run._watch_venues()  # 1 s < 5 s: no escalation yet
    assert sevs(notifier) == ["ALERT"]
    feed.down_since[Venue.BINANCE] = time.monotonic() - 6.0
    await run._watch_venues()
    await run._watch_venues()  # once only
    assert sevs(notifier) == ["ALERT", "CRITICAL"]
    assert "2 position(s) open" in notifier.sent[-1][3]
    feed.come_up()
    await run._watch_venues()
    assert run.state.state is TradingState.ACTIVE
    assert sevs(notifier) == ["ALERT", "CRITICAL", "RECOVERED"]
    # A second outage is a new incident: alerted and escalated again.
    feed.go_down(Venue.UPBIT, ago_s=10.0)
    await run._watch_venues()
    await run._watch_venues()
    assert sevs(notifier)[3:] == ["ALERT", "CRITICAL"]


async def test_watch_does_not_escalate_without_positions(tmp_path: Path) -> None:
    run, feed, notifier = make_run(tmp_path, escalate_s=0.01, positions=0)
    feed.go_down(Venue.UPBIT, ago_s=100.0)
    for _ in range(3):
        await run._watch_venues()
    assert sevs(notifier) == ["ALERT"]
    feed.come_up()
    await run._watch_venues()
    assert sevs(notifier) == ["ALERT", "RECOVERED"]


async def test_watch_escalation_uses_the_oldest_outage(tmp_path: Path) -> None:
    run, feed, notifier = make_run(tmp_path, escalate_s=5.0, positions=1)
    feed.go_down(Venue.BINANCE, ago_s=10.0)
    feed.go_down(Venue.UPBIT, ago_s=0.0)
    await run._watch_venues()
    await run._watch_venues()
    assert sevs(notifier) == ["ALERT", "CRITICAL"]
    assert "binance" in notifier.sent[0][3] and "upbit" in notifier.sent[0][3]


async def test_outage_recovery_does_not_undo_an_operator_pause(tmp_path: Path) -> None:
    run, feed, notifier = make_run(tmp_path, escalate_s=5.0, positions=0)
    run.state.set(TradingState.REDUCING, "paused by operator", time.time())
    feed.go_down(Venue.BINANCE)
    await run._watch_venues()
    feed.come_up()
    await run._watch_venues()
    assert run.state.state is TradingState.REDUCING
    assert run.state.reason == "paused by operator"
    assert sevs(notifier) == ["ALERT", "RECOVERED"]


async def test_outage_recovery_does_not_leave_halted(tmp_path: Path) -> None:
    run, feed, _ = make_run(tmp_path, escalate_s=5.0, positions=0)
    feed.go_down(Venue.BINANCE)
    await run._watch_venues()
    assert run.state.state is TradingState.REDUCING
    run.state.set(TradingState.HALTED, "kill: manual", time.time())
    feed.come_up()
    await run._watch_venues()
    assert run.state.state is TradingState.HALTED
