"""The watchdog: samples the engine from its own thread, feeds the guards, acts.

It runs in a thread, not an asyncio task, so a stuck event loop (a tick that
never returns) is still seen: a stale heartbeat HALTs at once from the thread
(the gateway refuses from that instant) and the rest of the kill procedure is
scheduled on the loop (docs/architecture.md, the watch flow; R-K3, R-K4).
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psutil
from loguru import logger

from core.clock import Clock
from core.config.settings import Settings
from core.domain.models import TradingState
from core.monitoring.notifier import AlertGate
from core.monitoring.perf import ResourceSampler
from core.trading.durable_state import read_state_file
from guards.book import GuardBook, worst
from guards.snapshot import Snapshot
from guards.thresholds import Thresholds
from guards.verdict import Action, Verdict

BASELINE_WARMUP_S = 60.0


def thresholds_from(s: Settings) -> Thresholds:
    fields = {name.removeprefix("guard_"): getattr(s, name)
              for name in type(s).model_fields if name.startswith("guard_")}
    return Thresholds(max_concurrent=s.max_concurrent, **fields)


def headroom_warnings(rss_mb: float, s: Settings) -> list[str]:
    """Memory thresholds the start-up RSS already sits close to (issue #3)."""
    out = []
    for name in ("guard_memory_anomaly_mb", "guard_memory_kill_mb"):
        limit = getattr(s, name)
        headroom = (limit - rss_mb) / limit
        if headroom < s.memory_headroom_warn:
            out.append(f"start-up RSS {rss_mb:.0f} MB leaves {headroom:.0%} headroom below "
                       f"ARBOPS_{name.upper()}={limit:g}; raise it or import less")
    return out


class Watchdog:
    def __init__(self, service: Any, settings: Settings, clock: Clock) -> None:
        self.service = service
        self.settings = settings
        self.clock = clock
        self.book = GuardBook(thresholds_from(settings))
        self.alerts = AlertGate(settings.alert_cooldown_s)
        self.rss_baseline = psutil.Process().memory_info().rss / 2**20
        self._started = time.monotonic()
        self.last_verdicts: list[Verdict] = []
        self.samples = 0
        self._tz = ZoneInfo(settings.report_timezone)
        self._idle = ResourceSampler()
        self._lat_seen: tuple[int, int] = (0, 0)  # (engine id, samples read)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kill_sent = False
        self._acting: set[asyncio.Future[None]] = set()

    # --- measuring ------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        run = self.service.current
        engine = run.engine if run is not None else None
        rss = psutil.Process().memory_info().rss / 2**20
        now, mono = self.clock.time(), self.clock.monotonic()
        if engine is None:
            cpu = self._idle.sample().cpu_percent
            return Snapshot(now, mono, None, None, 0.0, cpu, rss, self.rss_baseline, 0.0, 0.0,
                            self.service.daily_pnl(now, 0.0), 0.0, 0, 0, 0, 0, 0, 0.0, 0,
                            None, None)
        st = engine.stats()
        return Snapshot(
            now=now, mono=mono, run_started_mono=st.started_mono, phase=run.spec.phase,
            loop_latency_ms=self._latency_since_last(engine),
            cpu_percent=engine.resources.last.cpu_percent, rss_mb=rss,
            rss_baseline_mb=self.rss_baseline,
            heartbeat_age_s=max(time.monotonic() - st.heartbeat_real, 0.0),
            pnl_usd=st.pnl_usd, daily_pnl_usd=self.service.daily_pnl(now, st.pnl_usd),
            worst_trade_pnl_usd=st.worst_trade_pnl, open_positions=st.open_positions,
            consecutive_errors=st.consecutive_errors, unhandled_errors=st.errors,
            exchange_errors_total=st.exchange_errors, rate_limit_hits_total=st.rate_limit_hits,
            rate_limit_wait_s=st.rate_limit_wait_s, failed_fills_total=st.failed_fills,
            last_entry_mono=st.last_entry_mono, last_exit_mono=st.last_exit_mono,
        )

    def _latency_since_last(self, engine: Any) -> float:
        """Average tick latency since the previous sample (the latest tick if none new)."""
        samples = engine.latency.samples
        eid, seen = self._lat_seen
        start = seen if eid == id(engine) else 0
        new = samples[start:]
        self._lat_seen = (id(engine), len(samples))
        if not new:
            return engine.latency.last_ms
        return sum(new) / len(new)

    def sample(self) -> list[Verdict]:
        snap = self.snapshot()
        if time.monotonic() - self._started < BASELINE_WARMUP_S:
            # Start-up imports (aiogram, ccxt) and first allocations are not a leak:
            # the baseline is the highest RSS of the warm-up.
            self.rss_baseline = max(self.rss_baseline, snap.rss_mb)
        verdicts = self.book.evaluate(snap)
        self.last_verdicts = verdicts
        self.samples += 1
        return verdicts

    def day_of(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self._tz).date().isoformat()

    # --- acting ---------------------------------------------------------------------
    async def act(self, verdicts: list[Verdict]) -> None:
        mono = self.clock.monotonic()
        top = worst(verdicts)
        if top is not None and top.action is Action.KILL:
            if not self._kill_sent:
                self._kill_sent = True
                await self.service.kill(f"guard {top.name}: {top.reason}", f"guard:{top.name}")
        elif self._kill_sent and self.service.state.state is not TradingState.HALTED:
            self._kill_sent = False  # reset happened: a later breach kills again
        tripped = {v.name for v in verdicts if v.tripped}
        for v in verdicts:
            if v.tripped and self.alerts.should_send(v.name, v.action.name, mono):
                await self.service.notifier.notify(v.action.name, f"guard {v.name}", v.reason)
        for name in self.alerts.recovered(tripped):
            await self.service.notifier.notify("RECOVERED", f"guard {name}", "back within limits")

    # --- the thread -----------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.settings.watchdog_interval_s):
                if self._loop is None or self._loop.is_closed():
                    return  # shutting down
                try:
                    verdicts = self.sample()
                except Exception as exc:  # noqa: BLE001 - blind is not healthy: fail closed
                    logger.exception("watchdog cannot sample the engine")
                    self._fail_closed(f"watchdog cannot sample the engine's health: "
                                      f"{type(exc).__name__}: {exc}")
                    continue
                top = worst(verdicts)
                if top is not None and top.action is Action.KILL:
                    # HALT from this thread at once; the loop may be the thing stuck.
                    self.service.halt_now(f"guard {top.name}: {top.reason}")
                self._check_state_file()
                try:
                    self._loop.call_soon_threadsafe(self._schedule, verdicts)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return
        except BaseException as exc:
            if not self._stop.is_set():  # the watchdog dying leaves nobody watching
                self._fail_closed(f"watchdog thread died: {type(exc).__name__}: {exc}")
            raise

    def _fail_closed(self, reason: str) -> None:
        """HALT now from this thread, and the kill procedure on the loop (once)."""
        self.service.halt_now(reason)
        if self._kill_sent or self._loop is None or self._loop.is_closed():
            return
        self._kill_sent = True
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(
                lambda: self._acting.add(asyncio.ensure_future(
                    self.service.kill(reason, "watchdog"))))

    def _check_state_file(self) -> None:
        """A HALT written to the data dir by a kill that could not reach the engine any
        other way (its socket refused, say) reaches it here, within one sample."""
        rec = read_state_file(self.settings.data_dir)
        if (rec is not None and rec.state is TradingState.HALTED
                and self.service.state.state is not TradingState.HALTED):
            self._fail_closed(f"HALT in the state file: {rec.reason}")

    def _schedule(self, verdicts: list[Verdict]) -> None:
        task = asyncio.ensure_future(self.act(verdicts))
        self._acting.add(task)  # keep a reference until it is done
        task.add_done_callback(self._acting.discard)
