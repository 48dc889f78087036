"""OperatorService: the one API both surfaces (CLI, Telegram) call.

Surfaces parse and authorize; this class decides and acts, and returns plain
typed results. It never formats for a surface and never imports one
(freqtrade's RPC class is the model, docs/architecture.md).
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from core.clock import Clock
from core.commands import BY_NAME, RunArgs, invoke, validate_args
from core.config.settings import Settings
from core.domain.journal_kinds import LIVE_POSITIONS, UNRESOLVED_INTENTS, EventKind, Severity
from core.domain.models import TradingState, Venue
from core.errors import ArbopsError, CommandError, ExchangeError, ExitCode, ServiceError
from core.monitoring.notifier import LogNotifier
from core.ports import ExchangePort, JournalStore, MarketData
from core.trading.durable_state import DurableState, ExtraStore, StateRecord
from core.trading.gateway import TradingVenue
from core.trading.phase_run import PhaseRun, RunOutcome, RunSpec
from core.trading.phases import PHASES
from core.trading.state import HALT_FLAG, TradingStateBox
from core.trading.universe import parse_universe

# A status read asks Redis itself; a Redis that hangs must not hang status.
REDIS_PING_TIMEOUT_S = 0.5
REPLAY_CLOSE_MARGIN_S = 10.0
VenuesFactory = Callable[[RunSpec], tuple[MarketData, dict[Venue, TradingVenue]]]


def _finite(seconds: float) -> float | None:
    """JSON has no infinity: a continuous run's duration is null."""
    return None if seconds == float("inf") else seconds


def _no_real_venues() -> dict[Venue, ExchangePort]:
    raise ServiceError("no venue adapters are configured in this process", exit_code=ExitCode.FAILED)


@dataclass(slots=True)
class KillResult:
    halted: bool
    run_id: str | None
    already_halted: bool
    cancelled: int
    message: str
    trading_state: str = "HALTED"
    stores: dict[str, str] = field(default_factory=dict)  # what each store holds, or why not


class OperatorService:
    def __init__(
        self, settings: Settings, store: JournalStore, clock: Clock,
        venues_factory: VenuesFactory,
        *, fast: bool = False,
    ) -> None:
        self.fast = fast  # step the sim without sleeping (tests, benchmarks)
        self.notifier: Any = LogNotifier()
        self.watchdog: Any = None
        self._day_pnl: dict[str, float] = {}  # realized PnL of finished runs per report day
        self._tz = ZoneInfo(settings.report_timezone)
        self.settings = settings
        self.store = store
        self.clock = clock
        self._venues_factory = venues_factory
        self.state = TradingStateBox()
        self.current: PhaseRun | None = None
        self.last_outcome: RunOutcome | None = None
        self._proc_started = time.monotonic()
        self._run_task: asyncio.Task[None] | None = None
        self.run_observers: list[Callable[[], None]] = []  # e.g. metrics, at run end
        # Refused webhook requests by reason, since start (the webhook counts them).
        self.webhook_refusals: Mapping[str, int] = {}
        # The surfaces' own health (Telegram's link, the metrics endpoint), for status.
        self.surface_health: dict[str, Callable[[], dict[str, Any]]] = {}
        self.last_incident: str | None = None  # the newest kill's incident report, by path
        self.real_venues: Callable[[], dict[Venue, ExchangePort]] = _no_real_venues
        from core.safety.live_safety import LiveSafety
        from core.safety.redis_state import RedisState, account_id

        redis = (RedisState.from_url(settings.redis_url.get_secret_value(),
                                     settings.redis_key_prefix, account_id(settings))
                 if settings.redis_url is not None else None)
        self.safety = LiveSafety(
            settings, store, clock, venues_provider=lambda: self.real_venues(), redis=redis,
            state_probe=lambda: (self.state.reason
                                 if self.state.state is TradingState.HALTED else None))
        extras = {"redis": ExtraStore(self._redis_write, self._redis_read)} if redis else {}
        self.durable = DurableState(settings.data_dir, store, self.state, clock, extras)
        # Journal writes a kill must not lose while the journal refuses them (a lock):
        # retried in the background until it takes them.
        self._later: set[asyncio.Task[None]] = set()

    async def _redis_write(self, rec: StateRecord) -> None:
        if rec.state is TradingState.HALTED:
            assert self.safety.redis is not None
            await self.safety.redis.set_kill(rec.reason)
        else:
            await self.safety.clear_kill()

    async def _redis_read(self) -> StateRecord | None:
        reason = await self.safety.redis.kill_reason() if self.safety.redis else None
        return StateRecord(TradingState.HALTED, reason, 0.0) if reason else None

    def later(self, what: str, write: Callable[[], Awaitable[Any]]) -> asyncio.Task[None]:
        """A journal write retried in the background until the journal takes it (a
        locked journal must not leave a kill's record or a run's row half written)."""

        async def attempt() -> None:
            delay = 0.5
            while True:
                try:
                    await asyncio.wait_for(write(), 10.0)
                    return
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - retried, and said
                    logger.warning("journal write '{}' failed, retrying: {}", what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

        task = asyncio.get_running_loop().create_task(attempt(), name=f"later:{what}")
        self._later.add(task)
        task.add_done_callback(self._later.discard)
        return task

    async def durably(self, what: str, write: Callable[[], Awaitable[Any]]) -> bool:
        """The write now if the journal takes it within a few seconds, else later."""
        try:
            await asyncio.wait_for(write(), 6.0)
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retried in the background
            logger.error("journal write '{}' failed ({}); retrying in the background", what, exc)
            self.later(what, write)
            return False

    async def drain_later(self, timeout_s: float) -> int:
        """Wait up to `timeout_s` for the retried writes; how many are still pending."""
        if self._later:
            await asyncio.wait(set(self._later), timeout=timeout_s)
        return len(self._later)

    async def close(self) -> None:
        """Release what the service holds: the engine lock and Redis, then the journal.
        State mirrors still pending are safe: the file holds the state and the next
        start writes it to the journal and Redis."""
        pending = await self.drain_later(5.0)
        if pending:
            logger.error("{} journal write(s) still failing at shutdown", pending)
        for task in list(self._later):
            task.cancel()
        await self.durable.close()
        try:
            await self.safety.close()
        finally:
            await self.store.close()

    async def load_persistent_state(self) -> None:
        """HALTED survives restarts until reset (R-S7)."""
        from core.venues.recovery import close_paper_orphans

        # HALTED (and REDUCING) from any store: the file, the journal or Redis (R-K6).
        await self.durable.load()
        if self.state.state is not TradingState.HALTED:
            # What a paper run left open ended with its process. After a halt it stays
            # in the journal until `reset`, so reset's preview and reconcile both show
            # what the halt left open.
            await close_paper_orphans(self.store, self.clock.time())

    # --- runs -----------------------------------------------------------------------
    def plan_run(self, args: RunArgs) -> RunSpec:
        phase = PHASES[args.phase]
        if args.mode == "live" and self.settings.arbitrage_env != "live":
            # Known before any prompt: a paper service never shows a LIVE Confirm.
            # The live gate checks it again (with everything else) at the start.
            raise ServiceError(f"LIVE refused:\n  - env: ARBITRAGE_ENV="
                               f"{self.settings.arbitrage_env}; a live run needs a service "
                               "started with ARBITRAGE_ENV=live")
        replay_path = None
        if args.data_source == "replay":
            replay_path, replay_s = self._recording(args)
            if args.mode == "live":
                raise ServiceError("live never runs on a recording; use --data-source real")
        if args.continuous:
            duration = float("inf")  # until stopped; the hourly gate may stop it
        elif args.duration_seconds is not None:
            duration = args.duration_seconds
        elif args.duration_minutes is not None:
            duration = args.duration_minutes * 60
        else:
            duration = float(phase.duration_s)
        if replay_path is not None:
            # Leave the end of the recording for closing positions.
            duration = min(duration, replay_s - REPLAY_CLOSE_MARGIN_S)
        top_n = parse_universe(args.universe) if args.universe else phase.top_n
        notional = args.max_notional_usd or phase.notional_usd
        if args.mode == "live" and args.data_source != "real":
            raise ServiceError("live trades only on real venues: use --data-source real")
        return RunSpec(mode=args.mode, phase=args.phase, top_n=top_n, duration_s=duration,
                       notional_usd=notional, data_source=args.data_source,
                       kpi_path=args.kpi_output_path, seed=args.seed, replay_path=replay_path,
                       continuous=args.continuous,
                       fast=self.fast)

    async def _live_gate(self, spec: RunSpec, exchanges: dict[Venue, TradingVenue],
                         run_id: str) -> None:
        """R-S1: every condition, each failure named; then the ARM is used up (R-S2)."""
        from core.errors import ArmRefused

        if self.safety.lock is None or not self.safety.lock.held:
            await self.safety.acquire_lock(
                on_lost=lambda why: self.halt_now(f"engine lock lost: {why}"))
        failures = await self.safety.check_live_start(spec.phase, spec.notional_usd, exchanges)
        if failures:
            raise ServiceError("LIVE refused:\n" + "\n".join(f"  - {f}" for f in failures))
        try:
            await self.safety.consume_arm(run_id)
        except ArmRefused as exc:
            raise ServiceError(str(exc)) from None

    def _recording(self, args: RunArgs) -> tuple[Any, float]:
        from core.venues.replay_market import latest_recording, recording_seconds

        path = args.replay_path or latest_recording(self.settings.data_dir)
        if path is None or not path.is_file():
            raise ServiceError(f"no recording at {path or self.settings.data_dir / 'recordings'}"
                               "; make one with `arbops record`")
        try:
            seconds = recording_seconds(path)
        except (OSError, ValueError, KeyError, EOFError, TypeError) as exc:
            raise ServiceError(f"{path} is not a usable recording: {exc}") from None
        if seconds < 2 * REPLAY_CLOSE_MARGIN_S:
            raise ServiceError(f"{path} holds only {seconds:.0f} s of market data")
        return path, seconds

    async def run_phase(
        self, spec: RunSpec, on_progress: Callable[[PhaseRun], None] | None = None
    ) -> RunOutcome:
        if self.state.state is TradingState.HALTED:
            raise ServiceError(f"trading is HALTED ({self.state.reason}); "
                               "inspect, then `arbops reset`")
        if self.current is not None:
            raise ServiceError(f"run {self.current.run_id} is already running in pid "
                               f"{os.getpid()} on this data dir")
        try:
            market, exchanges = self._venues_factory(spec)
        except (ValueError, OSError, EOFError) as exc:
            raise ServiceError(str(exc)) from None
        run = PhaseRun(spec, self.settings, self.store, self.state, self.clock, market,
                       exchanges, on_progress, self.notifier, durable=self.durable)
        run.durably = self.durably
        self.current = run  # visible (as starting) while the live gate is checked
        if spec.mode == "live":
            try:
                await self._live_gate(spec, exchanges, run.run_id)
            except BaseException:
                self.current = None
                for ex in exchanges.values():
                    await ex.close()
                raise
            run.fence = self.safety.fence_ok
        try:
            try:
                outcome = await run.execute()
            except (RuntimeError, ExchangeError) as exc:
                if run.engine is None:  # preparing (universe, recovery, venues): no trade yet
                    raise ServiceError(str(exc), exit_code=ExitCode.FAILED) from None
                outcome = await self._crashed(run, exc)
            except Exception as exc:
                if run.engine is None:
                    raise
                outcome = await self._crashed(run, exc)
        finally:
            for observer in self.run_observers:
                try:
                    observer()
                except Exception:  # noqa: BLE001 - an observer must not break the run's end
                    logger.exception("run observer failed")
            self.current = None
            for ex in exchanges.values():
                await ex.close()
            if hasattr(market, "close"):
                await market.close()
        self.last_outcome = outcome
        day = self._day(self.clock.time())
        self._day_pnl[day] = self._day_pnl.get(day, 0.0) + outcome.kpi["summary"]["strategy_pnl_usd"]
        return outcome

    async def _crashed(self, run: PhaseRun, exc: BaseException) -> RunOutcome:
        """Fail closed: an unexpected exception inside a running phase HALTs and runs the
        kill procedure with the exception as its reason (cancel, verify, KPI, incident,
        alert, run row closed); the loop that would flatten is gone, so what is open is
        listed for the operator."""
        logger.opt(exception=exc).critical("run {} crashed: {}", run.run_id, exc)
        run.kill(f"unhandled exception: {type(exc).__name__}: {exc}")
        return await run.finish_after_crash()

    def _day(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self._tz).date().isoformat()

    def daily_pnl(self, now: float, current_run_pnl: float) -> float:
        """Today's PnL in the report zone: finished runs plus the running one (R-K4)."""
        return self._day_pnl.get(self._day(now), 0.0) + current_run_pnl

    def halt_now(self, reason: str) -> None:
        """HALT from any thread (the watchdog's, when the event loop itself may be stuck):
        the gateway refuses from this instant, the state file is written from this
        thread, and a provisional KPI is written; the loop mirrors to the other stores."""
        if not self.state.set(TradingState.HALTED, reason, self.clock.time()):
            return
        from core.files import write_atomic
        from core.trading.durable_state import write_state_file

        try:
            write_state_file(self.settings.data_dir,
                             StateRecord(TradingState.HALTED, reason, self.clock.time()))
        except OSError:
            logger.exception("could not write HALT to the state file from the watchdog")
        try:  # the journal too, on a connection of this thread's own (the loop may be stuck)
            import sqlite3

            con = sqlite3.connect(self.store.path, timeout=1.0)
            try:
                con.execute("INSERT OR REPLACE INTO flags(key, value, updated_at) VALUES (?,?,?)",
                            (HALT_FLAG, f"HALTED:{reason}", self.clock.time()))
                con.commit()
            finally:
                con.close()
        except Exception:  # noqa: BLE001 - the file holds it; the loop mirrors it later
            logger.exception("could not write HALT to the journal from the watchdog thread")
        try:
            run = self.current
            if run is not None and run.engine is not None:
                write_atomic(run.kpi_path, run.kpi(final=False, exit_code=None))
        except Exception:  # noqa: BLE001 - HALTED holds; the kill procedure follows
            logger.exception("could not write the provisional KPI from the watchdog thread")

    async def start_run(self, args: RunArgs) -> dict[str, Any]:
        """Start a phase inside this (serving) process and return once it is running."""
        spec = self.plan_run(args)
        if self.state.state is TradingState.HALTED:
            raise ServiceError(f"trading is HALTED ({self.state.reason}); "
                               "inspect, then `arbops reset`")
        if self.current is not None:
            raise ServiceError(f"run {self.current.run_id} is already running in pid "
                               f"{os.getpid()} on this data dir")
        task = asyncio.create_task(self._run_logged(spec), name="phase-run")
        self._run_task = task
        # The run registers itself before its first await; a live run then passes the
        # LIVE gate (which sets its fence) or is refused: report that, never "started".
        live = spec.mode == "live"
        for _ in range(3000 if live else 500):
            run = self.current
            if task.done() or (run is not None and (not live or run.fence is not None)):
                break
            await asyncio.sleep(0.01)
        if task.done() and task.exception() is not None:
            exc = task.exception()
            if isinstance(exc, ServiceError):
                raise exc  # a refusal keeps its exit code (2)
            raise ServiceError(f"run failed to start: {exc}", exit_code=ExitCode.FAILED)
        run = self.current
        return {"run_id": run.run_id if run else None, "kpi_path": str(run.kpi_path) if run else None}

    async def _run_logged(self, spec: RunSpec) -> None:
        try:
            await self.run_phase(spec)
        except Exception:
            logger.exception("background run failed")
            raise

    async def report(self, kind: str, date: str | None = None,
                     run_id: str | None = None) -> str:
        from core.monitoring.jobs import on_demand_report

        return (await on_demand_report(self, kind, date, png=False, run_id=run_id)).text

    async def report_with_chart(self, kind: str, date: str | None = None,
                                run_id: str | None = None) -> Any:
        """The report (BuiltReport) with its chart in memory (`.png`, None when it could
        not be drawn), for a chat reply: drawn by a worker process, no file written."""
        from core.monitoring.jobs import on_demand_report

        return await on_demand_report(self, kind, date, png=False, chart=True, run_id=run_id)

    async def send_test_alert(self, actor: str) -> dict[str, Any]:
        """Runbook §8.1: a sample alert through the notifier (Telegram when it is up)."""
        await self.notifier.notify(Severity.TEST, "test alert",
                                   f"sample alert sent by {actor} (runbook 8.1)")
        await self.store.record_event(self.clock.time(), None, EventKind.TEST_ALERT_SENT, {"actor": actor})
        return {"queued": True, "notifier": type(self.notifier).__name__}

    async def positions(self) -> list[dict[str, Any]]:
        run = self.current
        if run is not None and run.engine is not None:
            return run.engine.open_positions()
        rows: list[dict[str, Any]] = await self.store.positions(None, list(LIVE_POSITIONS))
        return rows

    def last_run_result(self) -> dict[str, Any] | None:
        o = self.last_outcome
        if o is None:
            return None
        return {"run_id": o.run_id, "exit_code": o.exit_code, "kpi_path": str(o.kpi_path),
                "kpi": o.kpi}

    async def last_kpi(self) -> dict[str, Any]:
        """The last finished run's result: this process's, else the journal's newest
        final KPI (so a terminal with no engine running still sees the last run)."""
        result = self.last_run_result()
        if result is not None:
            return result
        last = await self.store.last_run()
        if last is None:
            return {}
        row = await self.store.latest_kpi(last["run_id"])
        kpi = json.loads(row["json"]) if row else {}
        return {"run_id": last["run_id"], "exit_code": last.get("exit_code"),
                "kpi_path": last.get("kpi_path"), "kpi": kpi, "status": last.get("status")}

    def stop(self, reason: str, actor: str) -> dict[str, Any]:
        """The runbook's graceful stop, idempotent on every surface: asking again never
        escalates to the emergency halt (a second signal does; /kill is the operator's
        way to halt at once)."""
        run = self.current
        if run is None:
            raise ServiceError("no run is active", exit_code=ExitCode.FAILED)
        if run.killed:  # after a kill, stopping means: stop flattening, end the run
            return {"run_id": run.run_id,
                    "action": run.stop_flattening(f"{reason} (by {actor})")}
        if run.closing:
            return {"run_id": run.run_id, "action": "already closing"}
        return {"run_id": run.run_id, "action": run.request_stop(f"stop: {reason} (by {actor})")}

    # --- kill switch, pause/resume, reset -------------------------------------------
    async def kill(self, reason: str, actor: str) -> KillResult:
        """One idempotent kill for every entry point: CLI, Telegram, guards (R-K1, R-K2).

        HALTED in memory first, then the state file (synchronously), then the journal
        and Redis mirrored in the background; the reply says which stores hold it and
        never waits on a store that does not answer."""
        already = self.state.state is TradingState.HALTED
        why = f"{reason} (by {actor})"
        self.state.advance_epoch()
        run = self.current
        if run is not None:
            started = run.kill(why)  # HALTED and the file, then cancel + flatten
            msg = "HALTED; cancelling and flattening" if started else "kill already in progress"
        else:
            if not already:
                self.state.set(TradingState.HALTED, why, self.clock.time())
                self.durable.record(TradingState.HALTED, why)
                self._no_run_kill_record(why)
            msg = "HALTED; no run was active" if not already else "already HALTED"
        stores = await self.durable.settle(1.0)
        return KillResult(True, run.run_id if run else None, already, 0, msg, stores=stores)

    def _no_run_kill_record(self, why: str) -> None:
        """The kill's record with no run: event, incident, alert - each on its own, so a
        locked journal delays the event but never the incident or the alert."""
        self.later("kill event", lambda: self.store.record_event(
            self.clock.time(), None, EventKind.KILLED, {"reason": why}))

        async def report() -> None:
            from core.monitoring.incident import write_incident

            try:
                leftovers: dict[str, Any] = await asyncio.wait_for(self.still_open(), 6.0)
                open_note = f"{len(leftovers['open_orders'])} open order(s) in the journal"
                open_ok = not leftovers["open_orders"]
            except Exception as exc:  # noqa: BLE001 - the journal is not needed to report
                open_note, open_ok = f"journal unreadable: {exc}", False
            path = await asyncio.to_thread(
                write_incident, self.settings.data_dir, run_id="no-run", title=f"kill: {why}",
                trigger=why, metrics=self.status(), actions=[
                    {"step": "halt", "ok": True, "detail": "HALTED (no run was active)"},
                    {"step": "persist_flag", "ok": "file" in self.durable.holds(),
                     "detail": f"kept by {', '.join(self.durable.holds()) or 'no store'}"},
                    {"step": "still_open_per_journal", "ok": open_ok, "detail": open_note},
                ])
            self.last_incident = str(path)
            await self.notifier.notify(Severity.KILL, "kill switch", f"HALTED: {why}; report {path}")

        task = asyncio.get_running_loop().create_task(report(), name="kill-report")
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    def venue_keys_configured(self) -> bool:
        return all(self.settings.secrets_present[k] for k in (
            "UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY", "BINANCE_API_KEY", "BINANCE_API_SECRET"))

    async def cancel_on_venues(self) -> dict[str, Any]:
        """R-K2 with no engine running: resolve the journal against the venues and
        cancel every open order there (ours from the journal and any other)."""
        from core.venues.recovery import recover_live

        if not self.venue_keys_configured():
            return {"venues": "no venue keys configured (paper venues end with their run)"}
        venues = self.real_venues()
        cancelled: dict[str, int] = {}
        try:
            for ex in venues.values():
                await ex.load_markets()
            report = await recover_live(self.store, venues, self.clock.time(), act=True)
            for venue, ex in venues.items():
                try:
                    cancelled[str(venue)] = len(await ex.cancel_all_orders())
                except ExchangeError as exc:
                    report.unresolved.append({"venue": str(venue), "why": f"cancel all: {exc}"})
        finally:
            for ex in venues.values():
                await ex.close()
        await self.store.record_event(self.clock.time(), None, EventKind.ORDERS_CANCELLED_OFFLINE,
                                      {**report.as_dict(), "cancel_all": cancelled})
        return {**report.as_dict(), "cancel_all": cancelled}

    def pause(self, reason: str) -> dict[str, Any]:
        """REDUCING, kept across restarts like HALTED (the file, then the journal)."""
        self.state.advance_epoch()
        changed = self.state.set(TradingState.REDUCING, reason, self.clock.time())
        if changed:
            self.durable.record(TradingState.REDUCING, reason)
        return {"trading_state": str(self.state.state), "changed": changed}

    def resume(self, reason: str) -> dict[str, Any]:
        if self.state.state is TradingState.HALTED:
            raise ServiceError("HALTED: only `reset` leaves it")
        changed = self.state.set(TradingState.ACTIVE, reason, self.clock.time())
        if changed:
            self.durable.record(TradingState.ACTIVE, reason)
        return {"trading_state": str(self.state.state), "changed": changed}

    async def still_open(self) -> dict[str, Any]:
        intents = await self.store.intents_in_states(list(UNRESOLVED_INTENTS))
        positions = await self.store.positions(None, list(LIVE_POSITIONS))
        return {"open_orders": intents, "open_positions": positions}

    async def reset(self, actor: str) -> dict[str, Any]:
        """Leave HALTED: every store must let go of it, or nothing changes (R-S7)."""
        if self.current is not None:
            raise ServiceError("a run is active; stop it first")
        if self.state.state is not TradingState.HALTED:
            raise ServiceError(f"not HALTED (state {self.state.state})", exit_code=ExitCode.FAILED)
        leftovers = await self.still_open()
        # The journal and Redis first, the file last: a reset cut short leaves HALTED
        # in a store that start-up reads, never ACTIVE with a kill still recorded.
        try:
            await asyncio.wait_for(self.store.clear_flag(HALT_FLAG), 6.0)
            await asyncio.wait_for(self.safety.clear_kill(), 6.0)
            from core.trading.durable_state import write_state_file

            write_state_file(self.settings.data_dir,
                             StateRecord(TradingState.ACTIVE, f"reset by {actor}",
                                         self.clock.time()))
        except Exception as exc:  # noqa: BLE001 - fail closed: still HALTED everywhere
            self.durable.record(TradingState.HALTED, self.state.reason)
            raise ServiceError(f"reset failed, still HALTED: {type(exc).__name__}: {exc}",
                               exit_code=ExitCode.FAILED) from None
        self.state.reset(self.clock.time(), f"reset by {actor}")
        self.durable.record(TradingState.ACTIVE, f"reset by {actor}")
        from core.venues.recovery import close_paper_orphans

        await close_paper_orphans(self.store, self.clock.time())
        await self.store.record_event(self.clock.time(), None, EventKind.RESET, {"actor": actor})
        return {"trading_state": str(self.state.state), **leftovers}

    # --- LIVE safety (R-S1..R-S4): thin wrappers over LiveSafety ----------------------
    async def arm(self, usd: str, actor: str) -> dict[str, Any]:
        from core.errors import ArmRefused

        try:
            return await self.safety.arm(usd, actor)
        except ArmRefused as exc:
            raise ServiceError(str(exc)) from None

    async def disarm(self, actor: str) -> dict[str, Any]:
        self.state.advance_epoch()
        return await self.safety.disarm(actor)

    async def preflight(self, dry_run: bool, phase: int = 1) -> dict[str, Any]:
        return await self.safety.preflight(dry_run, phase)

    async def ladder_status(self) -> dict[str, Any]:
        return await self.safety.ladder_status()

    async def ladder_override(self, phase: int, actor: str, reason: str) -> dict[str, Any]:
        return await self.safety.override(phase, actor, reason)

    # --- venues: reconciliation and balances -----------------------------------------
    async def reconcile(self) -> dict[str, Any]:
        """The last run against its venues (runbook §5.2); live runs are re-checked now."""
        last = await self.store.last_run()
        if last is None:
            raise ServiceError("no run to reconcile yet", exit_code=ExitCode.FAILED)
        if last["mode"] != "live":
            kpi = await self.store.latest_kpi(last["run_id"])
            recorded = json.loads(kpi["json"]).get("reconciliation") if kpi else None
            if recorded is None:
                raise ServiceError(f"run {last['run_id']} has no reconciliation recorded "
                                   "(paper venues end with their run)", exit_code=ExitCode.FAILED)
            return {**recorded, "source": "recorded at the end of the paper run"}
        from core.venues.reconcile import reconcile_run
        from core.venues.recovery import recover_live

        venues = self.real_venues()
        try:
            for ex in venues.values():
                await ex.load_markets()
            # Read-only: report, never cancel; a live start does the clean-up.
            recovery = await recover_live(self.store, venues, self.clock.time(), act=False)
            result = await reconcile_run(self.store, venues, last["run_id"])
        finally:
            for ex in venues.values():
                await ex.close()
        result["recovery"] = recovery.as_dict()
        result["ok"] = result["ok"] and recovery.complete
        await self.store.record_event(self.clock.time(), last["run_id"], EventKind.RECONCILED,
                                      result)
        return {**result, "source": "venues now"}

    async def balances(self) -> dict[str, Any]:
        """Both venues' balances (runbook §5.2), or the paper view when no keys are set."""
        if not all(self.settings.secrets_present[k] for k in (
                "UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY", "BINANCE_API_KEY", "BINANCE_API_SECRET")):
            last = await self.store.last_run()
            start = None
            if last is not None:
                events = await self.store.events(run_id=last["run_id"],
                                                 kind=EventKind.STARTING_BALANCES_RECORDED)
                start = events[0]["payload"] if events else None
            return {"source": "paper (no venue keys set; paper venues live only during a run)",
                    "run_id": last["run_id"] if last else None, "balances_at_start": start}
        venues = self.real_venues()
        out: dict[str, Any] = {"source": "venues now"}
        try:
            for venue, ex in venues.items():
                out[str(venue)] = {a: {"free": b.free, "used": b.used}
                                   for a, b in (await ex.fetch_balance()).items() if b.total}
        except ExchangeError as exc:
            raise ServiceError(f"cannot read balances: {exc}", exit_code=ExitCode.FAILED) from None
        finally:
            for ex in venues.values():
                await ex.close()
        return out

    # --- read-only ------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        run = self.current
        run_info = None
        if run is not None and run.engine is None:
            run_info = {"run_id": run.run_id, "phase": run.spec.phase, "mode": run.spec.mode,
                        "universe": f"top{run.spec.top_n}", "starting": True,
                        "started_at": datetime.fromtimestamp(run.started_at, UTC).isoformat(),
                        "elapsed_s": round(self.clock.time() - run.started_at, 1),
                        "duration_s": _finite(run.spec.duration_s), "round_trips": 0,
                        "pnl_usd": 0.0, "inventory_pnl_usd": 0.0, "total_pnl_usd": 0.0,
                        "entries": 0, "exits": 0, "open_positions": 0}
        elif run is not None and run.engine is not None:
            e = run.engine
            st = e.stats()
            run_info = {
                "run_id": run.run_id, "phase": run.spec.phase, "mode": run.spec.mode,
                "universe": f"top{run.spec.top_n}",
                "started_at": datetime.fromtimestamp(run.started_at, UTC).isoformat(),
                "elapsed_s": round(self.clock.time() - run.started_at, 1),
                "duration_s": _finite(run.spec.duration_s), "round_trips": st.round_trips,
                # pnl_usd is strategy PnL; the other two: docs/monitoring.md
                "pnl_usd": round(st.pnl_usd, 4), "inventory_pnl_usd": round(st.inventory_pnl_usd, 4),
                "total_pnl_usd": round(st.total_pnl_usd, 4),
                "entries": st.entries, "exits": st.exits,
                "open_positions": len(e.open_positions()), "win_rate": round(st.win_rate, 4),
                # from the histogram, not a sort of every tick: status is asked for
                # on the event loop at any time (the final KPI keeps the exact figures)
                "loop_latency_ms": {"last": round(e.latency.last_ms, 3),
                                    **e.latency.live_summary()},
                "closing": run.closing, "stop_reason": run.stop_reason,
            }
            streams = run.stream_health()
            if streams:
                run_info["venue_streams"] = streams
        import psutil

        return {
            "mode": self.settings.arbitrage_env,
            "trading_state": str(self.state.state),
            "halted_reason": self.state.reason if self.state.state is TradingState.HALTED else None,
            "armed": False,
            "arm_cap_usd": None,
            "arm_expires_at": None,
            "run": run_info,
            "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
            "pid": os.getpid(),
            "data_dir": str(self.settings.data_dir),
            "guards": self.guard_status(),
            "surfaces": self.surfaces(),
            "last_run": self._last_run_brief(),
        }

    def surfaces(self) -> dict[str, dict[str, Any]]:
        """Telegram, metrics and Redis as this engine sees them; "off" when not set up."""
        out: dict[str, dict[str, Any]] = {}
        for name in ("telegram", "metrics"):
            probe = self.surface_health.get(name)
            try:
                out[name] = probe() if probe is not None else {"state": "off"}
            except Exception as exc:  # noqa: BLE001 - a status read never fails on a probe
                out[name] = {"state": "unknown", "last_error": f"{type(exc).__name__}: {exc}"}
        if self.settings.telegram_bot_token is not None and "telegram" not in self.surface_health:
            out["telegram"] = {"state": "not started (token set)"}
        redis = self.safety.redis
        if redis is None:
            out["redis"] = {"state": "off"}
        else:  # what the last write of the trading state to Redis said ("-": none yet)
            held = self.durable.status.get("redis", "-")
            out["redis"] = {"state": "in use" if not held.startswith("pending:") else
                            "not answering", "trading_state_written": held}
        return out

    async def _redis_ping(self) -> dict[str, Any]:
        """Ask Redis now, bounded: status says whether it answers, not only what the
        last write said (a Redis that went away between writes is seen here)."""
        assert self.safety.redis is not None
        started = time.perf_counter()
        try:
            ok = await asyncio.wait_for(self.safety.redis.ping(), REDIS_PING_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - a status read reports, never raises
            return {"state": "not answering", "ping": f"{type(exc).__name__}"}
        ms = (time.perf_counter() - started) * 1000.0
        return {"state": "in use" if ok else "not answering", "ping_ms": round(ms, 2)}

    def _last_run_brief(self) -> dict[str, Any] | None:
        o = self.last_outcome
        if o is None:
            return None
        gate = o.kpi.get("gate") if isinstance(o.kpi, dict) else None
        return {"run_id": o.run_id, "exit_code": o.exit_code, "kpi_path": str(o.kpi_path),
                "gate": gate.get("result") if isinstance(gate, dict) else None,
                "stop_reason": (o.kpi.get("summary") or {}).get("stop_reason"),
                "status": "completed" if o.exit_code == 0 else "ended"}

    async def full_status(self) -> dict[str, Any]:
        """status() with the ARM read from the journal (and Redis), and the last run from
        the journal when this process has not finished one: for every surface."""
        st = {**self.status(), **await self.safety.arm_status()}
        if self.safety.redis is not None:
            st["surfaces"]["redis"].update(await self._redis_ping())
        if st["last_run"] is None and st["run"] is None:
            last = await self.store.last_run()
            if last is not None:
                gate = None
                try:
                    parsed = json.loads(last["gate_json"]) if last.get("gate_json") else None
                    gate = parsed.get("result") if isinstance(parsed, dict) else None
                except ValueError:
                    pass
                st["last_run"] = {**{k: last.get(k) for k in (
                    "run_id", "status", "exit_code", "stop_reason", "ended_at", "kpi_path")},
                    "gate": gate}
        return st

    def guard_status(self) -> dict[str, Any]:
        """Tripped guards and the headroom to each threshold, from the last sample."""
        wd = self.watchdog
        if wd is None:
            return {"watchdog": False}
        from core.safety.watchdog import headroom_warnings

        verdicts = wd.last_verdicts
        return {
            "watchdog": True,
            "samples": wd.samples,
            "tripped": [{"name": v.name, "action": v.action.name, "reason": v.reason}
                        for v in verdicts if v.tripped],
            "headroom": {v.name: round(v.threshold - v.observed, 3) for v in verdicts},
            "levels": {v.name: {"observed": round(v.observed, 3), "threshold": v.threshold,
                                "state": v.action.name} for v in verdicts},
            "memory_headroom_warnings": headroom_warnings(wd.rss_baseline, self.settings),
        }

    # --- trade history (journal reads, off the loop) ----------------------------------
    async def recent_trades(self, limit: int = 10) -> list[dict[str, Any]]:
        from core.monitoring.reports.trade_views import recent_trades

        return await asyncio.to_thread(recent_trades, Path(self.store.path), limit)

    async def profit(self) -> dict[str, Any]:
        from core.monitoring.reports.trade_views import profit

        return await asyncio.to_thread(profit, Path(self.store.path), self._tz,
                                       self.clock.time())

    async def performance(self) -> list[dict[str, Any]]:
        from core.monitoring.reports.trade_views import performance

        return await asyncio.to_thread(performance, Path(self.store.path), self.clock.time())

    async def daily_pnl_table(self, days: int = 7) -> dict[str, Any]:
        from core.monitoring.reports.trade_views import daily

        return await asyncio.to_thread(daily, Path(self.store.path), self._tz,
                                       self.clock.time(), days)

    def show_config(self) -> dict[str, Any]:
        from core.monitoring.config_view import config_view

        return config_view(self.settings)

    def version(self) -> dict[str, str]:
        from core.version import version_info

        return version_info()

    async def audit_rows(self, limit: int) -> list[dict[str, Any]]:
        return await self.store.audit_rows(limit)

    async def record_audit(self, *, surface: str, user: str, role: str, chat: str | None,
                           command: str, args: Any, outcome: str, latency_ms: float) -> None:
        await self.store.audit(self.clock.time(), user, role, chat, surface, command, args,
                               outcome, latency_ms)

    # --- the command table's dispatcher --------------------------------------------
    async def control(self, cmd: str, raw_args: dict[str, Any], actor: str) -> dict[str, Any]:
        """One command from the control channel, dispatched from the table: arguments
        validated by the row's own model (bad ones are exit 2 naming the field), the
        row's method called, the row audited. `actor` is who the channel says asked."""
        t0 = time.perf_counter()
        row = BY_NAME.get(cmd)
        outcome = "ok"
        try:
            if row is None or row.method is None:
                raise CommandError(f"unknown command {cmd!r}", ExitCode.REFUSED)
            args = validate_args(row, raw_args)
            return await invoke(row, self, args, actor)
        except ArbopsError as exc:
            outcome = f"refused: {exc}" if exc.exit_code is ExitCode.REFUSED else f"failed: {exc}"
            raise CommandError(str(exc), exc.exit_code) from None
        finally:
            if row is None or row.audited:
                latency = (time.perf_counter() - t0) * 1000
                row_written = self.later("audit", lambda: self.record_audit(
                    surface="control", user=actor, role="local", chat=None, command=cmd,
                    args=raw_args, outcome=outcome, latency_ms=latency))
                # Usually committed before the reply; a journal that is locked delays
                # the row, never the answer (a kill must be answered at once).
                await asyncio.wait({row_written}, timeout=1.0)


__all__ = ["ExchangeError", "KillResult", "OperatorService", "ServiceError"]
