"""`arbops backtest`: recordings replayed on their own clock, as fast as the CPU goes,
through the same engine, gateway, paper exchange and journal as a live run (R-M10).

The run's clock is a ManualClock moved to each snapshot's recorded time, so every
setting in seconds (baseline half-life, holding limit, cooldown) means seconds of the
market's clock. After the last snapshot the last books are held, so what is open is
closed at the last prices; the run then ends like one whose duration elapsed, and its
phase gate is evaluated and reported.

A backtest never touches the data dir's trading state: its kill switch, pause and
HALT live in memory only (a backtest that halts must not halt the engine).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import TypeAdapter, ValidationError

from core.clock import ManualClock
from core.config.settings import Settings
from core.domain.models import TradingState, Venue
from core.errors import BadInput
from core.ports import JournalStore
from core.trading.durable_state import DurableState
from core.trading.phase_run import PhaseRun, RunSpec
from core.trading.phases import PHASES
from core.trading.state import TradingStateBox
from core.venues.paper_exchange import PaperExchange
from core.venues.replay_market import ReplayMarket, first_timestamp, read_header

# Settings a backtest may not change: where things are kept, secrets, the venues'
# addresses. Everything else (strategy, fees, paper venue, guards) is a parameter.
NOT_PARAMS = frozenset({
    "data_dir", "upbit_access_key", "upbit_secret_key", "binance_api_key",
    "binance_api_secret", "telegram_bot_token", "redis_url", "postgres_dsn",
    "arbitrage_env", "live_arm_ack", "live_arm_at",
})


# Recordings are sparse (a book every minute or five): an order waits for the next
# recorded book, so its limit needs room for the price's move until then (inside the
# gateway's 50-bps collar). An execution assumption, not a strategy parameter; a
# --param overrides it.
BACKTEST_EXECUTION = {"limit_slack_bps": "30"}


def parse_params(items: list[str] | None) -> dict[str, str]:
    """["baseline_halflife_s=3600", ...] -> {name: text}; a bad item is BadInput."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not value.strip():
            raise BadInput(f"--param {item!r}: expected NAME=VALUE")
        out[name] = value.strip()
    return out


def parse_sweep(items: list[str] | None) -> dict[str, list[str]]:
    """["entry_buffer_bps=0,5,10", ...] -> {name: [values]}."""
    out: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        grid = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not grid:
            raise BadInput(f"--sweep {item!r}: expected NAME=V1,V2,...")
        out[name] = grid
    return out


def with_params(settings: Settings, params: Mapping[str, str]) -> Settings:
    """The settings with each parameter validated as its field is (type and bounds)."""
    update: dict[str, Any] = {}
    for name, text in params.items():
        info = Settings.model_fields.get(name)
        if info is None or name in NOT_PARAMS:
            raise BadInput(f"--param {name}: not a setting a backtest may change")
        try:
            adapter: TypeAdapter[Any] = TypeAdapter(
                Annotated[info.annotation, *info.metadata])
            update[name] = adapter.validate_python(text)
        except ValidationError as exc:
            msg = exc.errors()[0]["msg"]
            raise BadInput(f"--param {name}={text}: {msg}") from None
    return settings.model_copy(update=update)


class _MemoryOnlyState(DurableState):
    """Trading state for a backtest: in memory only, never the data dir's file,
    journal flag or Redis key."""

    def record(self, state: TradingState, reason: str) -> bool:
        return True

    async def settle(self, timeout_s: float) -> dict[str, str]:
        return {"memory": "ok"}

    def holds(self) -> list[str]:
        return ["memory"]


@dataclass(slots=True)
class Sample:
    ts: float  # the data's clock (s)
    strategy_usd: float
    inventory_usd: float
    premium_bps: float | None
    baseline_bps: float | None


@dataclass(slots=True)
class Trace:
    """What the backtest saw, tick by tick, for the report and the chart."""

    samples: list[Sample] = field(default_factory=list)
    exposure_s: float = 0.0
    _last_ts: float | None = None
    _busy: bool = False

    def observe(self, run: PhaseRun) -> None:
        engine = run.engine
        if engine is None:
            return
        ts = run.clock.time()
        if self._last_ts is not None and self._busy:
            self.exposure_s += max(ts - self._last_ts, 0.0)
        self._last_ts = ts
        self._busy = bool(engine.open_positions())
        sig = next(iter(engine.last_signals.values()), None)
        self.samples.append(Sample(
            ts, engine.pnl_usd, engine.inventory_pnl_usd,
            None if sig is None else sig.prem.mid_bps, None if sig is None else sig.baseline))


def recordings(paths: list[Path]) -> list[Path]:
    """The recordings in the order given, each checked to be one (BadInput if not)."""
    if not paths:
        raise BadInput("--data needs at least one recording")
    for p in paths:
        if not p.is_file():
            raise BadInput(f"--data {p}: no such file")
        try:
            read_header(p)
            first_timestamp(p)
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise BadInput(f"--data {p}: not a usable recording: {exc}") from None
    return paths


async def run_backtest(settings: Settings, store: JournalStore, paths: list[Path], *,
                       phase: int = 2, top_n: int | None = None,
                       notional_usd: float | None = None,
                       params: Mapping[str, str] | None = None,
                       on_tick: Callable[[PhaseRun], None] | None = None) -> BacktestOutcome:
    """One backtest: replay, KPI, journal; returns the report as one dict."""
    s = with_params(settings, {**BACKTEST_EXECUTION, **(params or {})})
    # A backtest's checkpoints every simulated minute would flood the journal;
    # hourly (of the data's clock) keeps an equity trail without that.
    s = s.model_copy(update={"kpi_checkpoint_interval_s": max(s.kpi_checkpoint_interval_s,
                                                              3600.0)})
    clock = ManualClock(start=first_timestamp(paths[0]))
    market = ReplayMarket(list(paths), clock, data_clock=True, hold_last=True)
    fees = {Venue.UPBIT: s.upbit_fee_bps, Venue.BINANCE: s.binance_fee_bps}
    exchanges: dict[Venue, Any] = {
        v: PaperExchange(v, market, clock, fees[v], fill_ratio=s.paper_fill_ratio)
        for v in (Venue.UPBIT, Venue.BINANCE)}
    state = TradingStateBox()
    durable = _MemoryOnlyState(s.data_dir, store, state, clock)
    # Every symbol the recordings hold (that passes the universe's filters).
    spec = RunSpec(mode="backtest", phase=phase, top_n=top_n or len(market.symbol_stats()),
                   duration_s=math.inf,
                   notional_usd=notional_usd or PHASES[phase].notional_usd,
                   data_source="replay", kpi_path=s.data_dir / "backtests" / "pending.json",
                   replay_path=paths[0], fast=True)
    trace = Trace()

    def progress(run: PhaseRun) -> None:
        trace.observe(run)
        if on_tick is not None:
            on_tick(run)

    run = PhaseRun(spec, s, store, state, clock, market, exchanges, progress, None,
                   durable=durable)
    run.kpi_path = s.data_dir / "backtests" / f"{run.run_id}.json"
    outcome = await run.execute()
    fills = await store.fills(outcome.run_id)
    positions = [dict(p) for p in await store.positions(outcome.run_id)]
    rep = report(outcome.run_id, outcome.exit_code, outcome.kpi, trace, fills, positions,
                 paths, dict(params or {}), s.report_timezone)
    rep["kpi_path"] = str(outcome.kpi_path)
    return BacktestOutcome(rep, trace, positions)


@dataclass(slots=True)
class BacktestOutcome:
    report: dict[str, Any]
    trace: Trace
    positions: list[dict[str, Any]]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def report(run_id: str, exit_code: int, kpi: dict[str, Any], trace: Trace,
           fills: list[dict[str, Any]], positions: list[dict[str, Any]], paths: list[Path],
           params: dict[str, str], timezone: str) -> dict[str, Any]:
    summary, trading = kpi["summary"], kpi["trading"]
    turnover = 0.0
    for f in fills:
        cost = float(f["cost"])
        turnover += cost / float(f["fx"]) if str(f["symbol"]).endswith("/KRW") else cost
    closed = [p for p in positions if p.get("state") == "closed"]
    # PnL per UTC day of the data: the strategy figure's change over the day.
    days: dict[str, dict[str, Any]] = {}
    prev = 0.0
    for smp in trace.samples:
        d = days.setdefault(_day(smp.ts), {"date": _day(smp.ts), "start": prev,
                                           "round_trips": 0})
        d["end"] = smp.strategy_usd
        prev = smp.strategy_usd
    for p in closed:
        if p.get("closed_at") is not None:
            on_day = days.get(_day(float(p["closed_at"])))
            if on_day is not None:
                on_day["round_trips"] += 1
    per_day = [{"date": d["date"], "strategy_pnl_usd": round(d["end"] - d["start"], 6),
                "round_trips": d["round_trips"]} for d in days.values()]
    span = (trace.samples[-1].ts - trace.samples[0].ts) if trace.samples else 0.0
    gate = kpi.get("gate")
    strategy = summary["strategy_pnl_usd"]
    verdict = ("the strategy LOST money on this data" if strategy < 0 else
               "the strategy made money on this data" if strategy > 0 else
               "the strategy made nothing on this data")
    return {
        "run_id": run_id,
        "exit_code": exit_code,
        "data": [str(p) for p in paths],
        "params": params,
        "data_span_s": round(span, 3),
        "snapshots": len(trace.samples),
        "strategy_pnl_usd": strategy,
        "inventory_pnl_usd": summary["inventory_pnl_usd"],
        "total_pnl_usd": summary["total_pnl_usd"],
        "fees_usd": trading["fees_usd"],
        "turnover_usd": round(turnover, 6),
        "entries": trading["entries"],
        "round_trips": summary["round_trips_completed"],
        "wins": trading["wins"],
        "win_rate": summary["win_rate"],
        "max_drawdown_usd": summary["max_drawdown_usd"],
        "exposure_s": round(trace.exposure_s, 3),
        "exposure_share": round(trace.exposure_s / span, 6) if span > 0 else 0.0,
        "exit_reasons": kpi.get("exit_reasons", {}),
        "stop_reason": summary.get("stop_reason"),
        "gate": gate,
        "days": per_day,
        "verdict": verdict,
        "kpi_path": None,
        "timezone": timezone,
    }


def grid(sweep: Mapping[str, list[str]]) -> list[dict[str, str]]:
    names = list(sweep)
    return [dict(zip(names, combo, strict=True))
            for combo in itertools.product(*(sweep[n] for n in names))]


def rank(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best strategy PnL first (ties: fewer round trips, i.e. less fee risk)."""
    return sorted(results, key=lambda r: (-float(r["strategy_pnl_usd"]), r["round_trips"]))
