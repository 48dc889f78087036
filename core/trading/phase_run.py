"""One phase run: universe, funding, the tick loop, checkpoints, stop paths.

Stop paths (R-K1): the duration ending or a first signal closes gracefully (no
new entries, exit positions, final KPI, exit 0); a second signal is an
emergency halt (HALTED, cancel everything, skip flattening, list what is open,
exit 1); a kill halts, cancels, flattens and reports (exit 1).
"""
from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from core.clock import Clock, ManualClock
from core.config.settings import Settings
from core.crash_points import CrashPoints
from core.domain.journal_kinds import UNRESOLVED_INTENTS, EventKind, Severity
from core.domain.models import ExitReason, TradingState, Venue
from core.domain.money import usd
from core.domain.paper_funding import paper_holdings
from core.errors import ExchangeError, RateLimited
from core.files import write_atomic
from core.journal.write_behind import WriteBehind
from core.ports import JournalStore
from core.trading.durable_state import DurableState
from core.trading.engine import Engine, EngineConfig
from core.trading.gateway import Gateway, Purpose, TradingVenue
from core.trading.kpi import build_kpi
from core.trading.order_watch import OrderWatch
from core.trading.phases import HOURLY_S, evaluate_gate, thresholds_from_settings
from core.trading.slots import SlotState
from core.trading.state import TradingStateBox
from core.trading.strategy import Strategy, StrategyParams
from core.trading.universe import select_universe
from core.venues.order_streams import OrderStream
from core.venues.paper_exchange import PaperExchange


@dataclass(slots=True, frozen=True)
class RunSpec:
    mode: str
    phase: int
    top_n: int
    duration_s: float
    notional_usd: float
    data_source: str
    kpi_path: Path | None = None
    seed: int | None = None
    replay_path: Path | None = None
    continuous: bool = False  # phase 3: until stopped, its gate evaluated every hour
    fast: bool = False  # step the market without sleeping (tests, benchmarks)
    close_timeout_s: float = 8.0


@dataclass(slots=True)
class RunOutcome:
    run_id: str
    exit_code: int
    kpi_path: Path
    kpi: dict[str, Any]


REPLAY_ENDED = "replay recording ended"

# How long the run's end waits for the journal (a flush, a reconciliation read) before it
# reports the journal as not answering and goes on with the files and the alert.
JOURNAL_FLUSH_TIMEOUT_S = 15.0
# How long the run's end spends resolving its own intents against the venues by
# client id before it lists the ones left as unresolved.
RESOLVE_TIMEOUT_S = 15.0


def new_run_id(mode: str, phase: int, now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{mode}-p{phase}-{secrets.token_hex(2)}"


class PhaseRun:
    def __init__(
        self,
        spec: RunSpec,
        settings: Settings,
        store: JournalStore,
        state: TradingStateBox,
        clock: Clock,
        market: Any,
        exchanges: dict[Venue, TradingVenue],
        on_progress: Callable[[PhaseRun], None] | None = None,
        notifier: Any = None,
        durable: DurableState | None = None,
    ) -> None:
        self.spec = spec
        # Where HALT is kept (file first, then the journal and Redis); the service
        # passes its own so a kill and a restart read the same stores.
        self.durable = durable or DurableState(settings.data_dir, store, state, clock)
        self.crash = CrashPoints(settings.fault_crash_at)
        self.notifier = notifier
        self.trade_notices: Any = None
        self.kill_steps: list[dict[str, Any]] = []
        self.kill_trigger: str | None = None
        self.kill_started = 0.0
        self.fence: Any = None  # live: the engine lock's fencing check before each send
        self.kill_metrics: dict[str, Any] = {}
        self.settings = settings
        self.store = store
        self.state = state
        self.clock = clock
        self.market = market
        self.ex = exchanges
        self.on_progress = on_progress
        self.run_id = new_run_id(spec.mode, spec.phase, clock.time())
        self.kpi_path = spec.kpi_path or settings.data_dir / "kpi" / f"{self.run_id}.json"
        self.engine: Engine | None = None
        self.universe: list[str] = []
        self.started_at = clock.time()
        self.stop_reason: str | None = None
        self.closing = False
        self.emergency = False
        self.killed = False
        self._close_deadline = 0.0
        self._last_checkpoint = clock.monotonic()
        self._bg: set[asyncio.Task[Any]] = set()
        self._market_task: asyncio.Task[None] | None = None
        self._orders_task: asyncio.Task[None] | None = None
        self._stream_tasks: list[asyncio.Task[None]] = []
        self._seq = -1
        self._hour_mark: tuple[float, int, int, float, int] | None = None
        self.hourly_gates: list[dict[str, Any]] = []
        self._outage = False
        self._outage_reducing = False
        self._outage_escalated = False
        # A kill flattens until flat, past the close deadline, until an operator says
        # to stop (R-K6); this holds why they did.
        self.flatten_stopped: str | None = None
        self._last_flatten_alert = 0.0
        # Journal writes that must land even when the journal refuses them for a while
        # (the service retries them in the background); by default: now, or logged.
        self.durably: Callable[[str, Callable[[], Awaitable[Any]]], Awaitable[bool]] = \
            _write_now

    # --- public control -------------------------------------------------------
    def request_stop(self, reason: str) -> str:
        """First call: graceful close. Second: emergency halt. Returns what it did."""
        if not self.closing:
            self.closing = True
            self.stop_reason = reason
            if self.engine is not None:
                self.engine.accept_entries = False
            self._close_deadline = self.clock.monotonic() + self.spec.close_timeout_s
            self._spawn(self._checkpoint(final=False))
            return "closing"
        self._halt(f"emergency: {reason}")
        self.emergency = True
        self.stop_reason = f"{self.stop_reason}; emergency: {reason}"
        self._spawn(self._cancel_everything())
        self._spawn(self._checkpoint(final=False))
        return "emergency"

    def stop_flattening(self, reason: str) -> str:
        """An operator ends a kill's flattening: the run ends with what is still open
        listed (the kill switch stays on). Only meaningful after a kill."""
        if not self.killed:
            return "not killed"
        if self.flatten_stopped is None:
            self.flatten_stopped = reason
            self.step("flatten", False, f"stopped by the operator: {reason}")
        return "flattening stopped"

    def kill(self, reason: str, metrics: dict[str, Any] | None = None) -> bool:
        """The kill procedure (R-K1). Idempotent: a second kill only returns False."""
        if self.killed:
            return False
        self.kill_started = time.perf_counter()
        # HALTED first, before any other work: the gateway refuses from this instant.
        self.state.set(TradingState.HALTED, f"kill: {reason}", self.clock.time())
        # Then the file, synchronously: a HALT that only lives in memory is lost by a
        # crash or kill -9 in the next instant.
        self.durable.record(TradingState.HALTED, f"kill: {reason}")
        self.killed = True
        self.kill_trigger = reason
        if self.engine is not None:
            self.engine.accept_entries = False
        self.step("halt", True, f"HALTED: {reason}")
        self.kill_metrics = metrics or self._metrics()
        self.stop_reason = f"kill: {reason}"
        if not self.closing:
            self.closing = True
            self._close_deadline = self.clock.monotonic() + self.spec.close_timeout_s
        self._spawn(self._kill_sequence(f"kill: {reason}"))
        self._spawn(self._checkpoint(final=False))
        return True

    async def _kill_sequence(self, reason: str) -> None:
        """Persist the flag, then cancel everything (R-K1's order); flattening
        and verification follow in the run loop."""
        await self._persist_halt(reason)
        self.crash.hit("in_kill")
        await self._cancel_everything()
        self.crash.hit("in_kill")

    def step(self, name: str, ok: bool, detail: str) -> None:
        at = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        self.kill_steps.append({"step": name, "ok": ok, "detail": detail, "at": at,
                                "t": time.perf_counter()})
        (logger.info if ok else logger.error)("kill step {}: {} ({})", name,
                                              "ok" if ok else "FAILED", detail)

    def _metrics(self) -> dict[str, Any]:
        e = self.engine
        if e is None:
            return {}
        st = e.stats()
        return {
            "pnl_usd": round(st.pnl_usd, 4), "inventory_pnl_usd": round(st.inventory_pnl_usd, 4),
            "round_trips": st.round_trips,
            "open_positions": len(e.open_positions()), "loop_latency_ms_last": st.last_latency_ms,
            "loop_latency_ms": e.latency.summary(), "cpu_percent": e.resources.last.cpu_percent,
            "rss_mb": e.resources.rss_now(), "exchange_errors": st.exchange_errors,
            "rate_limit_hits": st.rate_limit_hits, "failed_fills": st.failed_fills,
            "consecutive_errors": st.consecutive_errors,
        }

    # --- the run ----------------------------------------------------------------
    async def execute(self) -> RunOutcome:
        first = await self._prepare()
        engine = self.engine
        assert engine is not None
        deadline = self.clock.monotonic() + self.spec.duration_s
        snap = first
        try:
            while True:
                if snap is not None:
                    await engine.tick(snap)
                else:
                    engine.beat()  # no new books (a venue is down): alive, not trading
                await self._watch_venues()
                self.crash.hit("run_loop")
                mono = self.clock.monotonic()
                if mono - self._last_checkpoint >= self.settings.kpi_checkpoint_interval_s:
                    self._last_checkpoint = mono
                    self._spawn(self._checkpoint(final=False))
                if self.on_progress is not None:
                    self.on_progress(self)
                if self.emergency:
                    break
                if self.spec.continuous and not self.closing:
                    self._hourly_gate(mono)
                elif not self.closing and mono >= deadline:
                    self.request_stop("duration_elapsed")
                if self.closing:
                    if snap is not None:
                        await self._close_step(snap, mono)
                    if not engine.busy:
                        break
                    if self.killed and self.flatten_stopped is not None:
                        break
                    if mono >= self._close_deadline:
                        if self.killed:
                            # Flatten until flat (R-K6): venues recovering from a 429 storm
                            # or an outage are waited for, never given up on by a clock.
                            await self._flatten_alert(mono)
                        else:
                            logger.error("close timed out with positions open")
                            self.stop_reason = f"{self.stop_reason}; close_timeout"
                            # Sends already decided go out first, so the cancels below
                            # see them (HALTED would withdraw the ones not yet sent,
                            # and one sent after the cancels would stay working).
                            await engine.drain_sends(JOURNAL_FLUSH_TIMEOUT_S)
                            self._halt("close timed out")
                            await self._cancel_everything()
                            break
                snap = await self._next_snapshot()
        finally:
            self._stop_feeds()
        return await self._finish()

    def _stop_feeds(self) -> None:
        for task in (self._market_task, self._orders_task, *self._stream_tasks):
            if task is not None:
                task.cancel()

    async def _prepare(self) -> Any:
        if hasattr(self.market, "prepare"):
            # Real data: tickers and books for ranking, three candidates a place.
            await self.market.prepare(candidates=max(3 * self.spec.top_n, 20))
        real = [ex for ex in self.ex.values() if not hasattr(ex, "fund")]
        for ex in real:
            await ex.load_markets()  # a real venue: its own markets and rules
        if real:
            await self._recover()
        stats = self.market.symbol_stats()
        self.universe = select_universe(stats, self.spec.top_n, fx_krw=self.settings.sim_fx_krw)
        if not self.universe:
            raise RuntimeError("the universe is empty: no pair passes the depth and spread filters")
        self.market.subscribe(self.universe)
        if self.spec.fast:
            first = self.market.step()
        else:
            self._market_task = asyncio.create_task(self.market.run(), name="market")
            first = await asyncio.wait_for(self.market.wait_next(-1), 30.0)
        self._seq = first.seq
        funded = self._fund(first)
        start_balances = await self._record_start_balances()
        s = self.settings
        self.journal = WriteBehind(self.store, self.crash)
        gateway = Gateway(
            self.ex, self.store, self.state, self.clock, run_id=self.run_id,
            write_behind=self.journal,
            max_order_usd=self.spec.notional_usd,
            max_exposure_usd=self.spec.notional_usd * 2 * s.max_concurrent,
            collar_bps=s.price_collar_bps, stale_book_ms=s.stale_book_ms,
            max_orders_per_second=s.max_orders_per_second,
            crash=self.crash, fence=self.fence,
        )
        strategy = Strategy(StrategyParams(
            s.upbit_fee_bps, s.binance_fee_bps, s.entry_buffer_bps, s.baseline_halflife_s,
            s.baseline_warmup_s, s.take_profit_bps, s.stop_loss_bps, s.max_hold_s, s.reversal_bps,
        ))
        cfg = EngineConfig(
            run_id=self.run_id, universe=self.universe, notional_usd=self.spec.notional_usd,
            max_concurrent=s.max_concurrent, order_timeout_s=s.order_timeout_s,
            entry_cooldown_s=s.entry_cooldown_s, exit_reprice_s=s.exit_reprice_s,
            limit_slack_bps=s.limit_slack_bps,
        )
        live_venues = any(not hasattr(ex, "fund") for ex in self.ex.values())
        watch = None
        if live_venues and not self.spec.fast:
            # Live venues: order status is read by its own task, never inside a tick.
            # With the venues' order streams, their updates are the answers and REST
            # reads only what a stream cannot vouch for.
            streams = ({v: OrderStream(ex) for v, ex in self.ex.items()
                        if hasattr(ex, "open_order_stream")}
                       if s.order_streams else {})
            watch = OrderWatch(self.ex, lambda: self.engine.working_orders() if self.engine
                               else [], background=True, streams=streams,
                               confirm_s=s.order_stream_confirm_s)
            self._orders_task = asyncio.create_task(watch.run(), name="order-status")
            self._stream_tasks = [asyncio.create_task(st.run(), name=f"order-stream-{v}")
                                  for v, st in streams.items()]
        self.engine = Engine(cfg, self.market, self.ex, gateway, self.store, self.state,
                             self.clock, strategy, self.journal, watch)
        # Inventory revaluation revalues what the venues held at the start: the paper
        # funding, or a real account's balances as read.
        self.engine.fund(funded or start_balances, first)
        if self.notifier is not None:
            from core.monitoring.trade_notices import TradeNotices, resolve_mode

            self.trade_notices = TradeNotices(
                lambda: self.notifier, resolve_mode(s.trade_notifications, self.spec.mode),
                s.trade_digest_minutes * 60)
            self.engine.on_trade = self.trade_notices.push
            self.trade_notices.start()
        if self.closing:
            self.engine.accept_entries = False
        await self.store.create_run(
            run_id=self.run_id, mode=self.spec.mode, phase=self.spec.phase,
            universe=f"top{self.spec.top_n}", data_source=self.spec.data_source,
            started_at=self.started_at, max_notional_usd=self.spec.notional_usd,
        )
        await self._checkpoint(final=False)
        logger.info("run {} started: {} phase {} top{} for {} s", self.run_id, self.spec.mode,
                    self.spec.phase, self.spec.top_n, self.spec.duration_s)
        return first

    async def _recover(self) -> None:
        """Resolve what an earlier process left open before trading (crash safety)."""
        from core.venues.recovery import recover_live

        report = await recover_live(self.store, self.ex, self.clock.time(), crash=self.crash)
        await self.store.record_event(self.clock.time(), self.run_id, EventKind.RECOVERED,
                                      report.as_dict())
        if not report.complete:
            self._halt("recovery incomplete: run `arbops reconcile`")
            raise RuntimeError(f"recovery incomplete, trading HALTED: {report.unresolved}")

    async def _record_start_balances(self) -> dict[tuple[Venue, str], float]:
        """Balances at the start, for reconciliation against the journal's fills;
        returns the priced ones (the universe's bases and the quotes)."""
        balances: dict[str, dict[str, Any]] = {}
        held: dict[tuple[Venue, str], float] = {}
        for venue, ex in self.ex.items():
            try:
                balances[str(venue)] = {a: b.total for a, b in (await ex.fetch_balance()).items()}
            except ExchangeError as exc:
                balances[str(venue)] = {"error": str(exc)}
                continue
            for asset, total in balances[str(venue)].items():
                if asset in (*self.universe, "KRW" if venue is Venue.UPBIT else "USDT"):
                    held[(venue, asset)] = float(total)
        await self.store.record_event(self.clock.time(), self.run_id,
                                      EventKind.STARTING_BALANCES_RECORDED, balances)
        return held

    def _fund(self, snap: Any) -> dict[tuple[Venue, str], float]:
        """Pre-funded inventory on both venues (R-M4): quote plus every base, as the
        paper settings say; a real venue's balances are what they are."""
        s = self.settings
        holdings = paper_holdings(self.universe, snap, quote_usd=s.paper_initial_usd,
                                  base_usd=s.paper_base_usd, notional_usd=self.spec.notional_usd,
                                  overrides=s.paper_funding)
        funded: dict[tuple[Venue, str], float] = {}
        for venue, ex in self.ex.items():
            if not isinstance(ex, PaperExchange):
                continue
            ex.list_markets(self.universe, snap)
            for (v, asset), amount in holdings.items():
                if v is venue:
                    ex.fund(asset, amount)
                    funded[(v, asset)] = amount
        return funded

    async def _next_snapshot(self) -> Any | None:
        if self.spec.fast:
            # The gap between ticks is where the write-behind journal commits in
            # real time; with no gap, let it finish here, outside the measured tick.
            await self.journal.flush()
            if isinstance(self.clock, ManualClock) and not getattr(self.market, "drives_clock",
                                                                   False):
                self.clock.advance(getattr(self.market, "interval_s",
                                           self.settings.tick_interval_ms / 1000.0))
            try:
                snap = self.market.step()
            except EOFError:  # a recording ran out: stop as if the duration ended
                if not self.closing:
                    self.request_stop(REPLAY_ENDED)
                return None
            if getattr(self.market, "ended", False) and not self.closing:
                # The last books are held so what is open closes at the last prices.
                self.request_stop(REPLAY_ENDED)
            await asyncio.sleep(0)  # let the control channel and signal tasks run
        else:
            if getattr(self.market, "lockstep", False):
                # A market that moves only when asked (a data clock): commit here,
                # before it moves, so a replay of the same books does the same.
                await self.journal.flush()
            # Bounded wait: with a venue down no snapshot may come, and the loop
            # must keep its heartbeat and its deadlines.
            wait_s = max(2.0, 3.0 * getattr(self.market, "interval_s", 0.1))
            try:
                snap = await asyncio.wait_for(self.market.wait_next(self._seq), wait_s)
            except TimeoutError:
                return None
        self._seq = snap.seq
        return snap

    def _hourly_gate(self, mono: float) -> None:
        """Phase 3 continuous (R-S4): every hour the phase-2 criteria over that hour;
        a FAIL stops the run gracefully and sends the ladder back to live phase 1."""

        engine = self.engine
        assert engine is not None
        if self._hour_mark is None:
            self._hour_mark = (mono, engine.round_trips, engine.wins, engine.pnl_usd,
                               len(engine.latency.samples))
            return
        start, rt0, wins0, pnl0, lat0 = self._hour_mark
        if mono - start < HOURLY_S:
            return
        rts, wins = engine.round_trips - rt0, engine.wins - wins0
        lat = engine.latency.samples[lat0:]
        hour = {"summary": {"round_trips_completed": rts, "win_rate": wins / rts if rts else 0.0,
                            "strategy_pnl_usd": engine.pnl_usd - pnl0},
                "performance": {"loop_latency_ms": {"avg": sum(lat) / len(lat) if lat else 0.0}},
                "trading": {}, "guards": {}}
        gate = evaluate_gate(3, hour, thresholds_from_settings(self.settings))
        self.hourly_gates.append(gate.as_dict())
        self._hour_mark = (mono, engine.round_trips, engine.wins, engine.pnl_usd, len(lat) + lat0)
        self._spawn(self.store.record_event(self.clock.time(), self.run_id, EventKind.HOURLY_GATE_EVALUATED,
                                            gate.as_dict()))
        if not gate.passed:
            self._spawn(self.store.record_event(
                self.clock.time(), self.run_id, EventKind.LADDER_ROLLED_BACK,
                {"actor": "hourly-gate", "reason": "; ".join(gate.reasons)}))
            self.request_stop("hourly gate failed: " + "; ".join(gate.reasons))

    async def _watch_venues(self) -> None:
        """Venue outage (runbook §9): REDUCING at once, escalate after a while, and
        back to ACTIVE only when the venue answers again (fresh books follow)."""
        down = getattr(self.market, "down", None)
        if down is None:
            return
        if down and not self._outage:
            self._outage = True
            self._outage_escalated = False
            why = "; ".join(f"{v}: {str(e).removeprefix(f'{v}: ')}" for v, e in down.items())
            if self.state.set(TradingState.REDUCING, f"venue outage ({why})", self.clock.time()):
                self._outage_reducing = True
            if self.notifier is not None:
                await self.notifier.notify(Severity.ALERT, "venue outage", f"REDUCING: {why}")
        elif down and not self._outage_escalated:
            since = min(self.market.down_since.values(), default=time.monotonic())
            engine = self.engine
            if (time.monotonic() - since >= self.settings.outage_escalate_s and engine is not None
                    and engine.open_positions()):
                self._outage_escalated = True
                if self.notifier is not None:
                    await self.notifier.notify(
                        "CRITICAL", "venue outage",
                        f"still down after {self.settings.outage_escalate_s:.0f} s with "
                        f"{len(engine.open_positions())} position(s) open: act by hand")
        elif not down and self._outage:
            self._outage = False
            if self._outage_reducing and self.state.state is TradingState.REDUCING:
                self.state.set(TradingState.ACTIVE, "venues answer again", self.clock.time())
            self._outage_reducing = False
            if self.notifier is not None:
                await self.notifier.notify(Severity.RECOVERED, "venue outage", "venues answer again")

    async def _close_step(self, snap: Any, mono: float) -> None:
        engine = self.engine
        assert engine is not None
        purpose = Purpose.FLATTEN if self.killed else Purpose.EXIT
        reason = ExitReason.KILL if self.killed else ExitReason.SHUTDOWN
        for slot in engine.slots.values():
            for wo in list(slot.working.values()):
                if wo.purpose is Purpose.ENTRY and not wo.cancel_sent:
                    wo.cancel_sent = True
                    try:
                        await self.ex[wo.venue].cancel_order(wo.order_id, wo.symbol)
                    except ExchangeError as exc:
                        wo.cancel_sent = False
                        logger.warning("cancel failed, will retry: {}", exc)
            if slot.state is SlotState.OPEN:
                await engine.start_exit(slot, reason, snap, mono, purpose)

    async def _cancel_everything(self) -> bool:
        """Cancel every open order on both venues, retrying with backoff and waiting as
        long as a venue's Retry-After says; a failure is reported, never skipped (R-K1).
        After a kill it keeps going past the deadline until the venues take the cancels
        or an operator stops the flattening; other stops give up at the deadline."""
        delay = 0.05
        attempts = 0
        # Real time, not the injected clock: a manual clock stops when the loop
        # does, and the retries must still end.
        give_up = time.monotonic() + self.spec.close_timeout_s + 2.0
        reported = False
        while True:
            attempts += 1
            failed: list[str] = []
            wait = 0.0
            for venue, ex in self.ex.items():
                try:
                    await ex.cancel_all_orders()
                except RateLimited as exc:
                    failed.append(f"{venue}: {exc}")
                    wait = max(wait, exc.retry_after_s)
                except ExchangeError as exc:
                    failed.append(f"{venue}: {exc}")
            if not failed:
                if self.killed:
                    self.step("cancel_all", True, f"every open order cancelled "
                              f"(attempt {attempts}{', after the deadline' if reported else ''})")
                return True
            logger.warning("cancel-all attempt {} failed: {}", attempts, "; ".join(failed))
            if (time.monotonic() >= give_up or attempts >= 200) and not reported:
                reported = True
                if self.killed:
                    self.step("cancel_all", False, f"still failing after {attempts} attempts: "
                              + "; ".join(failed) + "; retrying until the venues answer")
            if reported and (not self.killed or self.flatten_stopped is not None):
                return False
            await asyncio.sleep(max(delay, wait))
            delay = min(delay * 2, 1.0)

    async def _flatten_alert(self, mono: float) -> None:
        """Past the close deadline after a kill: say so, at intervals, until flat."""
        if mono - self._last_flatten_alert < self.settings.flatten_alert_interval_s:
            return
        self._last_flatten_alert = mono
        engine = self.engine
        left = len(engine.open_positions()) if engine is not None else 0
        body = (f"run {self.run_id} HALTED and still flattening: {left} position(s) or "
                "order(s) open; retrying as the venues allow. `arbops stop` ends flattening.")
        logger.critical(body)
        if self.notifier is not None:
            await self.notifier.notify(Severity.CRITICAL, "kill switch", body)

    def _halt(self, reason: str) -> None:
        self.state.set(TradingState.HALTED, reason, self.clock.time())
        if self.engine is not None:
            self.engine.accept_entries = False
        self.durable.record(TradingState.HALTED, reason)

    async def _persist_halt(self, reason: str) -> None:
        """Record where the HALT written by kill() is kept; the stores that have not
        taken it yet keep being retried in the background."""
        status = await self.durable.settle(1.0)
        held = self.durable.holds()
        waiting = {k: v for k, v in status.items() if k not in held}
        detail = f"HALT kept by {', '.join(held) or 'no store'}"
        if waiting:
            detail += "; still writing: " + "; ".join(f"{k} ({v})" for k, v in waiting.items())
        self.step("persist_flag", "file" in held, detail)

    # --- KPI ----------------------------------------------------------------------
    def kpi(self, final: bool, exit_code: int | None, gate: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self.engine is not None
        snap = self.engine.last_snapshot
        ended = self.clock.time() if final else None
        run = {
            "run_id": self.run_id, "mode": self.spec.mode, "phase": self.spec.phase,
            "universe": f"top{self.spec.top_n}", "data_source": self.spec.data_source,
            "started_at": _iso(self.started_at), "ended_at": _iso(ended) if ended else None,
            "duration_seconds": round(self.clock.time() - self.started_at, 3),
            "max_notional_usd": self.spec.notional_usd,
        }
        kpi = build_kpi(
            final=final, run=run, engine=self.engine, exit_code=exit_code,
            # a second signal's emergency halt is the kill switch too (R-K1)
            kill_switch_triggered=self.killed or self.emergency, stop_reason=self.stop_reason,
            trading_state=str(self.state.state), fx_mid=snap.fx.mid if snap else 0.0, gate=gate,
        )
        if hasattr(self.market, "stream_stats"):
            # Streams: per venue events taken, gaps, disconnects, silences, REST reads.
            kpi["market_data"] = {"streams": self.market.stream_stats()}
        orders = self.engine.orders if self.engine is not None else None
        if isinstance(orders, OrderWatch) and orders.streams:
            # Own orders: per venue stream updates taken, REST reads, missed orders.
            kpi["order_streams"] = orders.stream_stats()
        return kpi

    def stream_health(self) -> dict[str, dict[str, bool]]:
        """Per venue, whether its book and order streams are up now (only the
        streams this run uses: a REST-only or paper run has none)."""
        out: dict[str, dict[str, bool]] = {}
        if hasattr(self.market, "stream_stats"):
            for venue, st in self.market.stream_stats().items():
                out.setdefault(str(venue), {})["books"] = bool(st.get("streaming"))
        orders = self.engine.orders if self.engine is not None else None
        if isinstance(orders, OrderWatch):
            for venue, stream in orders.streams.items():
                out.setdefault(str(venue), {})["orders"] = stream.up
        return out

    async def _checkpoint(self, final: bool) -> None:
        if self.engine is None:
            return
        data = self.kpi(final=False, exit_code=None)
        await asyncio.to_thread(write_atomic, self.kpi_path, data)
        await self.store.save_kpi(self.run_id, False, self.clock.time(), _dumps(data))

    async def finish_after_crash(self) -> RunOutcome:
        """The end of a run whose loop died (after kill()): the kill's cancels run to
        completion, then the usual end, with the positions still open listed."""
        self._stop_feeds()
        return await self._finish()

    async def _finish(self) -> RunOutcome:
        """The run's end, whatever refuses to help: venues are asked, files are written,
        the alert goes out; journal writes that fail are retried until they land
        (R-K1: the kill procedure always completes its record)."""
        engine = self.engine
        assert engine is not None
        engine.resources.sample()
        if self.trade_notices is not None:  # the last trades (a final digest) go out first
            await self.trade_notices.stop()
        await asyncio.gather(*self._bg, return_exceptions=True)
        if any(not hasattr(ex, "fund") for ex in self.ex.values()):
            # Live: sends still in flight are waited for (their orders become working
            # orders), then fills the loop had no tick left to take are journaled.
            try:
                await engine.drain_sends(JOURNAL_FLUSH_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - start-up recovery re-reads the venues
                logger.error("sends in flight at the run's end: {}", exc)
            try:
                await asyncio.wait_for(engine.record_last_fills(), JOURNAL_FLUSH_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - start-up recovery re-reads the venues
                logger.error("last read of working orders failed: {}", exc)
        try:  # everything the run learned is committed first, if the journal lets it
            await asyncio.wait_for(self.journal.close(), JOURNAL_FLUSH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - start-up recovery re-reads the venues
            logger.error("journal flush at the run's end failed: {}", exc)
        self.crash.hit("in_close")
        unresolved = await self._resolve_intents()
        still_open = await self._verify_flat()
        reconciliation = await self._reconcile()
        halted = self.killed or self.emergency
        clean = not (halted or still_open or unresolved)
        gate = None
        if self.hourly_gates:  # phase 3 continuous: the last hour's gate decides
            gate = self.hourly_gates[-1]
            clean = clean and all(g["result"] == "PASS" for g in self.hourly_gates)
        elif clean and not self.stop_reason_is_signal:
            gate = evaluate_gate(self.spec.phase, self.kpi(final=True, exit_code=0),
                                 thresholds_from_settings(self.settings),
                                 await self._observed_for_gate()).as_dict()
        exit_code = 0 if clean and (gate is None or gate["result"] == "PASS") else 1
        data = self.kpi(final=True, exit_code=exit_code, gate=gate)
        data["trading"]["still_open_on_venues"] = still_open
        data["trading"]["unresolved_intents"] = unresolved
        data["reconciliation"] = reconciliation
        if halted:
            if self.kill_trigger is None:  # an emergency halt (second signal) is reported
                self.kill_trigger = str(self.stop_reason)  # like a kill (R-K1)
            # Written provisionally first (final: false) so the incident can cite
            # it; the file says final only once every kill step is in it.
            data["kill"] = {"trigger": self.kill_trigger, "steps": self.kill_steps}
            data["final"] = False
            write_atomic(self.kpi_path, data)
            self.step("final_kpi", True, str(self.kpi_path))
            data["kill"]["incident"] = str(await self._incident(still_open))
            data["final"] = True
        write_atomic(self.kpi_path, data)
        status = "killed" if self.killed else "stopped" if self.emergency else (
            "completed" if exit_code == 0 else "failed")
        final_json = _dumps(data)
        await self.durably("final KPI", lambda: self.store.save_kpi(
            self.run_id, True, self.clock.time(), final_json))
        await self.durably("run row", lambda: self.store.finish_run(
            self.run_id, ended_at=self.clock.time(), status=status, stop_reason=self.stop_reason,
            exit_code=exit_code, kpi_path=str(self.kpi_path),
            gate_json=_dumps(gate) if gate else None))
        logger.info("run {} ended: {} exit {} ({})", self.run_id, status, exit_code, self.stop_reason)
        return RunOutcome(self.run_id, exit_code, self.kpi_path, data)

    async def _observed_for_gate(self) -> dict[str, bool | None]:
        """Runbook §2.1: Telegram alert received, metrics collected (when configured)."""
        s = self.settings
        telegram = None
        if s.telegram_bot_token is not None:
            stats = getattr(self.notifier, "stats", None)
            telegram = getattr(stats, "test_alert_delivered_at", None) is not None
        metrics = None
        if s.prometheus_enabled:
            import aiohttp

            try:
                async with aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=3)) as http, http.get(
                        f"http://{s.prometheus_host}:{s.prometheus_port}/metrics") as resp:
                    metrics = resp.status == 200 and "arbitrage_loop_latency_ms" in (
                        await resp.text())
            except (aiohttp.ClientError, TimeoutError, OSError):
                metrics = False
        return {"telegram_test_alert": telegram, "metrics_served": metrics}

    async def _reconcile(self) -> dict[str, Any]:
        """Journal vs venues after every phase; a drift is an alert. A journal that does
        not answer makes it a failed reconciliation, said, not a failed run end."""
        from core.venues.reconcile import reconcile_run

        try:
            result = await asyncio.wait_for(reconcile_run(self.store, self.ex, self.run_id),
                                            JOURNAL_FLUSH_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - reported in the KPI and the alert
            result = {"run_id": self.run_id, "ok": False, "drift": [],
                      "problems": [f"not reconciled: {type(exc).__name__}: {exc}"]}
        # The journal and the venues agree on dust (it is in both), so it is no drift;
        # it is named here so the record of the run's end says what was left unhedged.
        result["dust"] = list(self.engine.dust) if self.engine is not None else []
        if result["dust"] and self.notifier is not None:
            await self.notifier.notify(Severity.ALERT, "dust left", f"run {self.run_id}: "
                                       + "; ".join(f"{d['base']} {d['venue']} {d['qty']:g} "
                                                   f"(${d['usd']:.2f})" for d in result["dust"]))
        await self.durably("reconciliation", lambda: self.store.record_event(
            self.clock.time(), self.run_id, EventKind.RECONCILED, result))
        if not result["ok"] and self.notifier is not None:
            await self.notifier.notify(Severity.ALERT, "reconciliation",
                                       f"run {self.run_id}: " + "; ".join(result["problems"]))
        return result

    async def _resolve_intents(self) -> list[dict[str, Any]]:
        """Every intent of this run the journal still has PENDING, UNKNOWN or OPEN is
        resolved against its venue by client id before the final KPI: an order placed
        in the run's last tick, a cancel that raced a fill at the close deadline, a close
        that timed out with orders working, an order adopted after an unknown send.
        Returns the ones it could not resolve, each with why (empty: all resolved)."""
        from core.venues.recovery import recover_live

        left: list[dict[str, Any]]
        try:
            report = await asyncio.wait_for(recover_live(
                self.store, self.ex, self.clock.time(), cancel_foreign=False,
                run_id=self.run_id, reason="resolved at the run's end"), RESOLVE_TIMEOUT_S)
            left = report.unresolved
            done = len(report.resolved)
        except Exception as exc:  # noqa: BLE001 - listed below, never silent
            why = (f"not resolved within {RESOLVE_TIMEOUT_S:.0f} s"
                   if isinstance(exc, TimeoutError) else f"not resolved: {exc!r}")
            done = 0
            try:  # briefly: a journal that did not answer above rarely does now
                rows = await asyncio.wait_for(self.store.intents_in_states(
                    list(UNRESOLVED_INTENTS), self.run_id), 2.0)
                left = [{"client_order_id": r["client_order_id"], "venue": r["venue"],
                         "state": r["state"], "why": why} for r in rows]
            except Exception as exc2:  # noqa: BLE001 - the journal itself does not answer
                left = [{"why": f"{why}; the journal could not list them: {exc2}"}]
        if done:
            logger.info("run's end: {} intent(s) resolved against the venues", done)
        if self.killed or self.emergency:
            self.step("resolve_intents", not left,
                      "every order intent resolved on the venues" if not left
                      else f"{len(left)} intent(s) not resolved: run `arbops reconcile`")
        if left:
            body = (f"run {self.run_id}: {len(left)} order intent(s) not resolved at the end: "
                    + "; ".join(f"{x.get('client_order_id', '?')} ({x['why']})" for x in left[:5]))
            logger.error(body)
            if self.notifier is not None:
                await self.notifier.notify(Severity.ALERT, "unresolved orders", body)
        return left

    async def _verify_flat(self) -> list[dict[str, Any]]:
        """What is still open: the engine's positions and every venue's open orders.
        After a kill, a venue that cannot list its orders is asked again once it answers
        (waiting as it says) until an operator stops the flattening."""
        engine = self.engine
        assert engine is not None
        delay = 0.5
        while True:
            leftovers: list[dict[str, Any]] = list(engine.open_positions())
            unreachable = False
            for venue, ex in self.ex.items():
                try:
                    for order in await ex.fetch_open_orders():
                        leftovers.append({"venue": str(venue), "open_order": order.client_order_id,
                                          "symbol": order.symbol, "side": str(order.side),
                                          "remaining": order.remaining})
                except ExchangeError as exc:
                    unreachable = True
                    delay = max(delay, getattr(exc, "retry_after_s", 0.0))
                    leftovers.append({"venue": str(venue),
                                      "error": f"could not list orders: {exc}"})
            if not (unreachable and self.killed and self.flatten_stopped is None):
                break
            logger.warning("verify flat: a venue does not answer; asking again in {:.1f} s",
                           delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        if self.killed or self.emergency:
            self.step("verify_flat", not leftovers,
                      "no open orders, positions flat" if not leftovers
                      else f"{len(leftovers)} item(s) still open: clean up by hand (runbook 6.1)")
        return leftovers

    async def _incident(self, still_open: list[dict[str, Any]]) -> Path:
        from core.monitoring.incident import write_incident

        path = await asyncio.to_thread(
            write_incident, self.settings.data_dir, run_id=self.run_id,
            title=f"kill switch: {self.kill_trigger}", trigger=str(self.kill_trigger),
            metrics=self.kill_metrics, actions=[*self.kill_steps, {
                "step": "incident_report", "ok": True, "detail": "this file",
                "at": datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]}]
            + ([{"step": "still_open", "ok": False, "detail": _dumps(still_open)}]
               if still_open else []),
        )
        if self.notifier is not None:
            body = (f"run {self.run_id} HALTED: {self.kill_trigger}. Strategy PnL "
                    f"{usd(self.engine.pnl_usd)}, inventory revaluation "
                    f"{usd(self.engine.inventory_pnl_usd)}"
                    if self.engine else str(self.kill_trigger))
            if still_open:
                body += f"; {len(still_open)} item(s) still open, see {path}"
            await self.notifier.notify(Severity.KILL, "kill switch", body)
            self.step("notify", True, "notification sent")
        return path

    @property
    def stop_reason_is_signal(self) -> bool:
        # A recording running out ends the run like its duration: the gate is evaluated.
        return bool(self.stop_reason) and self.stop_reason not in ("duration_elapsed",
                                                                   REPLAY_ENDED)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _dumps(data: Any) -> str:
    import json

    return json.dumps(data)


async def _write_now(what: str, write: Callable[[], Awaitable[Any]]) -> bool:
    """A journal write done at once; a failure is logged and reported, not raised."""
    try:
        await write()
        return True
    except Exception:  # noqa: BLE001 - the caller records the step as failed
        logger.exception("journal write '{}' failed", what)
        return False
