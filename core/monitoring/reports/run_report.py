"""One run's report from the journal: its row, its closed round trips and its KPI
snapshots (`arbops report run RUN_ID`, `/report run RUN_ID`).

Two PnL bases, each labelled: the closed round trips (net `pnl_usd` of the run's
positions closed so far, the daily report's basis) and the KPI's strategy PnL
(marked to market, every checkpoint and at the end), beside its inventory
revaluation and total (docs/monitoring.md, "Three PnL figures"). The
newest KPI snapshot gives the run's own summary (final or not, said so).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import BadInput
from core.monitoring.reports.journal import JournalReader

# Run ids are `<UTC stamp>-<mode>-p<phase>-<hex>`; anything else is refused before it
# reaches a query or a file name (`last` names the newest run).
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise BadInput(f"bad run id {run_id[:40]!r}: letters, digits and . _ : - only")
    return run_id


@dataclass(slots=True)
class RunReport:
    kind: str
    run_id: str
    timezone: str
    mode: str
    phase: int
    universe: str | None
    data_source: str | None
    status: str
    stop_reason: str | None
    exit_code: int | None
    start_ts: float
    end_ts: float  # ended_at, now for the running run, else the newest snapshot (a crash)
    finished: bool  # the journal has its end
    running: bool  # this process runs it now
    duration_hours: float
    round_trips: int
    wins: int
    pnl_usd: float  # closed round trips, net of fees
    win_rate: float | None
    max_drawdown_usd: float  # of the closed round trips' cumulative PnL
    fees_usd: float  # of the closed round trips
    kpi: dict[str, Any] | None  # the newest snapshot's figures, or None without snapshots
    equity: list[tuple[float, float]] = field(default_factory=list)  # closed trades, cumulative
    fees: list[tuple[float, float]] = field(default_factory=list)
    trade_pnl: list[float] = field(default_factory=list)  # each closed trade's net PnL
    mtm: list[tuple[float, float]] = field(default_factory=list)  # KPI total_pnl_usd
    inventory: list[tuple[float, float]] | None = None  # KPI inventory_pnl_usd

    @property
    def key(self) -> str:
        return self.run_id

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("equity", "fees", "mtm", "inventory"):
            series = getattr(self, k)
            d[k] = None if series is None else [[ts, v] for ts, v in series]
        return d


def _kpi_figures(kpi: dict[str, Any], ts: float, final: bool) -> dict[str, Any]:
    summary = kpi.get("summary") or {}
    trading = kpi.get("trading") or {}
    guards = kpi.get("guards") or {}
    return {"final": final, "ts": ts,
            "strategy_pnl_usd": summary.get("strategy_pnl_usd", summary.get("total_pnl_usd")),
            "total_pnl_usd": summary.get("total_pnl_usd"),
            "inventory_pnl_usd": summary.get("inventory_pnl_usd"),
            "max_drawdown_usd": summary.get("max_drawdown_usd"),
            "round_trips": summary.get("round_trips_completed"),
            "win_rate": summary.get("win_rate"),
            "fees_usd": trading.get("fees_usd"),
            "exchange_errors": guards.get("exchange_errors"),
            "rate_limit_hits": guards.get("rate_limit_hits")}


def run_report(db_path: Path, run_id: str, tz: ZoneInfo, now: float,
               active_runs: frozenset[str] = frozenset()) -> RunReport:
    reader = JournalReader(db_path)
    found = reader.run(check_run_id(run_id))
    if found is None:
        raise BadInput(f"no run {run_id!r} in the journal (`last` names the newest run)")
    span, row = found
    points = reader.run_kpi(span.run_id)
    running = span.ended_at is None and span.run_id in active_runs
    if span.ended_at is not None:
        end = span.ended_at
    elif running:
        end = now
    else:  # never finished (a crash): alive until its newest KPI snapshot
        end = span.last_seen if span.last_seen is not None else span.started_at
    trades = reader.run_trades(span.run_id)
    cum = peak = drawdown = fees = 0.0
    equity, fee_line = [], []
    for t in trades:
        cum += t.pnl_usd
        fees += t.fees_usd
        peak = max(peak, cum)
        drawdown = max(drawdown, peak - cum)
        equity.append((t.closed_at, round(cum, 6)))
        fee_line.append((t.closed_at, round(fees, 6)))
    wins = sum(1 for t in trades if t.pnl_usd > 0)
    inventory = [(p.ts, p.inventory_pnl_usd) for p in points if p.inventory_pnl_usd is not None]
    newest = points[-1] if points else None
    return RunReport(
        kind="run", run_id=span.run_id, timezone=tz.key, mode=span.mode, phase=span.phase,
        universe=row.get("universe"), data_source=row.get("data_source"), status=span.status,
        stop_reason=row.get("stop_reason"), exit_code=row.get("exit_code"),
        start_ts=span.started_at, end_ts=end, finished=span.ended_at is not None,
        running=running, duration_hours=round(max(end - span.started_at, 0.0) / 3600.0, 4),
        round_trips=len(trades), wins=wins, pnl_usd=round(cum, 6),
        win_rate=round(wins / len(trades), 6) if trades else None,
        max_drawdown_usd=round(drawdown, 6), fees_usd=round(fees, 6),
        kpi=None if newest is None else _kpi_figures(newest.kpi, newest.ts, newest.final),
        equity=equity, fees=fee_line, trade_pnl=[t.pnl_usd for t in trades],
        mtm=[(p.ts, p.total_pnl_usd) for p in points if p.total_pnl_usd is not None],
        inventory=[(ts, float(v)) for ts, v in inventory if v is not None] or None,
    )


def _money(v: Any) -> str:
    return "n/a" if v is None else f"${float(v):+.2f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.1f}%"


def format_run(r: RunReport) -> str:
    tz = ZoneInfo(r.timezone)

    def at(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d %H:%M")

    if r.finished:
        state = f"{r.status} ({r.stop_reason or 'no reason recorded'})"
        end = f"end {at(r.end_ts)}"
    elif r.running:
        state, end = "running", "so far"
    else:
        state, end = "never finished (no end in the journal)", f"last seen {at(r.end_ts)}"
    lines = [
        f"Run report {r.run_id}",
        f"{r.mode}, phase {r.phase}, {r.universe or '?'}, {r.data_source or '?'}: {state}",
        f"Start {at(r.start_ts)}, {end} ({r.timezone}): {r.duration_hours:.2f} h",
        f"Round trips: {r.round_trips} (wins {r.wins})",
        f"Closed-trade PnL: ${r.pnl_usd:+.2f} (fees ${r.fees_usd:.2f} included)",
        f"Win rate: {_pct(r.win_rate)}",
        f"Max drawdown (closed trades): ${r.max_drawdown_usd:.2f}",
    ]
    k = r.kpi
    if k is None:
        lines.append("KPI: no snapshot journaled")
    else:
        which = "final" if k["final"] else f"checkpoint {at(k['ts'])}"
        lines.append(f"KPI ({which}): strategy PnL {_money(k['strategy_pnl_usd'])} marked to "
                     f"market, max drawdown (strategy) {_money(k['max_drawdown_usd'])}")
        if k.get("inventory_pnl_usd") is not None:
            lines.append(f"Inventory revaluation: {_money(k['inventory_pnl_usd'])}; total "
                         f"equity change: {_money(k['total_pnl_usd'])}")
        errors = "n/a" if k["exchange_errors"] is None else k["exchange_errors"]
        hits = "n/a" if k["rate_limit_hits"] is None else k["rate_limit_hits"]
        lines.append(f"Exchange API errors: {errors}; rate-limit hits: {hits}")
    return "\n".join(lines)
