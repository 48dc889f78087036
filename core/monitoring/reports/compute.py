"""Daily and weekly reports from the journal (R-O4, runbook §7.2).

Definitions (docs/monitoring.md):
- The day is the calendar day in the report time zone (default Asia/Seoul),
  midnight to midnight; the week is Monday to Sunday in that zone.
- Runtime: the part of every run's [started_at, end) inside the day, where end
  is ended_at, `now` for a run this process is running, or the newest KPI
  snapshot of a run that never finished (a crash).
- Round trips, PnL, win rate: positions closed (state `closed`) inside the
  day; PnL is the sum of their net `pnl_usd`; a win is pnl_usd > 0.
- Max drawdown: the largest fall of the cumulative closed-trade PnL of the
  day from its running peak, the peak starting at 0 at midnight.
- Exchange API errors and rate-limit hits: each run's counters in its KPI
  snapshots; the increase between consecutive snapshots is counted on the day
  of the later snapshot (60-s resolution). 0 when no run has a snapshot that
  day; None when the snapshots do not carry the counters (not journaled).
- Fees: the `fees_usd` of the same closed positions (already inside their net PnL).
- Inventory revaluation: each run's KPI `summary.inventory_pnl_usd`, its change
  within the day summed over runs; None while the snapshots do not carry it.
- Weekly: PnL is the sum of the days; average win rate is the mean of the
  daily win rates of the days with at least one round trip; best and worst day
  are chosen among those days by PnL.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.monitoring.reports.journal import CounterPoint, JournalReader


def day_bounds(day: date, tz: ZoneInfo) -> tuple[float, float]:
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return start.timestamp(), end.timestamp()


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


@dataclass(slots=True)
class DailyReport:
    kind: str
    date: str
    timezone: str
    start: str
    end: str
    complete: bool
    runs: int
    runtime_hours: float
    round_trips: int
    wins: int
    total_pnl_usd: float
    win_rate: float | None
    max_drawdown_usd: float
    exchange_errors: int | None
    rate_limit_hits: int | None
    fees_usd: float = 0.0
    equity: list[tuple[float, float]] = field(default_factory=list)  # (ts, cumulative PnL)
    fees: list[tuple[float, float]] = field(default_factory=list)  # (ts, cumulative fees)
    inventory: list[tuple[float, float]] | None = None  # (ts, cumulative revaluation)
    run_spans: list[dict[str, Any]] = field(default_factory=list)  # runs inside the day

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("equity", "fees", "inventory"):
            series = getattr(self, key)
            d[key] = None if series is None else [[ts, v] for ts, v in series]
        return d


@dataclass(slots=True)
class WeeklyReport:
    kind: str
    week_start: str
    week_end: str
    timezone: str
    complete: bool
    runtime_hours: float
    round_trips: int
    wins: int
    weekly_pnl_usd: float
    avg_win_rate: float | None
    pooled_win_rate: float | None
    best_day: dict[str, Any] | None
    worst_day: dict[str, Any] | None
    exchange_errors: int | None
    rate_limit_hits: int | None
    days: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat()


def _counter_in(points: list[CounterPoint], attr: str, start: float, end: float) -> int | None:
    if not points:
        return 0  # nothing ran (or nothing was checkpointed): no errors were seen
    total, seen = 0, False
    prev: dict[str, int] = {}
    for p in points:  # ordered by run, then ts
        value = getattr(p, attr)
        if value is None:
            continue
        seen = True
        delta = max(value - prev.get(p.run_id, 0), 0)
        prev[p.run_id] = value
        if start <= p.ts < end:
            total += delta
    return total if seen else None


def _inventory_in(points: list[CounterPoint], start: float,
                  end: float) -> list[tuple[float, float]] | None:
    """The day's cumulative inventory revaluation: each run's change since its last
    snapshot before the day (0 for a run that started inside it), summed over runs."""
    known = sorted((p for p in points if p.inventory_pnl_usd is not None), key=lambda p: p.ts)
    if not known:
        return None
    base: dict[str, float] = {}
    latest: dict[str, float] = {}
    out: list[tuple[float, float]] = []
    for p in known:
        value = float(p.inventory_pnl_usd or 0.0)
        if p.ts < start:
            base[p.run_id] = value
        elif p.ts < end:
            latest[p.run_id] = value
            out.append((p.ts, round(sum(v - base.get(r, 0.0) for r, v in latest.items()), 6)))
    return out


def daily_report(db_path: Path, day: date, tz: ZoneInfo, now: float,
                 active_runs: frozenset[str] = frozenset()) -> DailyReport:
    reader = JournalReader(db_path)
    start, end = day_bounds(day, tz)
    runs = []
    spans: list[dict[str, Any]] = []
    runtime_s = 0.0
    for r in reader.runs_overlapping(start, end):
        if r.ended_at is not None:
            stop = r.ended_at
        elif r.run_id in active_runs:
            stop = now
        else:  # never finished (a crash): alive until its newest KPI snapshot
            stop = r.last_seen if r.last_seen is not None else r.started_at
        overlap = min(stop, end, now) - max(r.started_at, start)
        if overlap > 0 or start <= r.started_at < end:
            runs.append(r)
            runtime_s += max(overlap, 0.0)
            spans.append({"run_id": r.run_id, "mode": r.mode, "phase": r.phase,
                          "status": r.status, "started_at": r.started_at,
                          "ended_at": None if r.run_id in active_runs and r.ended_at is None
                          else stop})
    trades = reader.closed_trades(start, end)
    cum = peak = drawdown = fees = 0.0
    equity: list[tuple[float, float]] = []
    fee_line: list[tuple[float, float]] = []
    wins = 0
    for t in trades:
        cum += t.pnl_usd
        fees += t.fees_usd
        wins += 1 if t.pnl_usd > 0 else 0
        peak = max(peak, cum)
        drawdown = max(drawdown, peak - cum)
        equity.append((t.closed_at, cum))
        fee_line.append((t.closed_at, round(fees, 6)))
    points = reader.counter_points([r.run_id for r in runs])
    n = len(trades)
    return DailyReport(
        kind="daily", date=day.isoformat(), timezone=tz.key, start=_iso(start, tz),
        end=_iso(end, tz), complete=now >= end, runs=len(runs),
        runtime_hours=round(runtime_s / 3600.0, 4), round_trips=n, wins=wins,
        total_pnl_usd=round(cum, 6), win_rate=round(wins / n, 6) if n else None,
        max_drawdown_usd=round(drawdown, 6),
        exchange_errors=_counter_in(points, "exchange_errors", start, end),
        rate_limit_hits=_counter_in(points, "rate_limit_hits", start, end),
        fees_usd=round(fees, 6), equity=equity, fees=fee_line,
        inventory=_inventory_in(points, start, end), run_spans=spans,
    )


def _sum_known(values: list[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def weekly_report(db_path: Path, any_day: date, tz: ZoneInfo, now: float,
                  active_runs: frozenset[str] = frozenset()) -> WeeklyReport:
    monday = week_start(any_day)
    days = [daily_report(db_path, monday + timedelta(days=i), tz, now, active_runs)
            for i in range(7)]
    traded = [d for d in days if d.round_trips > 0]
    rates = [d.win_rate for d in traded if d.win_rate is not None]
    round_trips = sum(d.round_trips for d in days)
    wins = sum(d.wins for d in days)

    def pick(d: DailyReport | None) -> dict[str, Any] | None:
        return None if d is None else {"date": d.date, "pnl_usd": d.total_pnl_usd,
                                       "round_trips": d.round_trips}

    best = max(traded, key=lambda d: d.total_pnl_usd) if traded else None
    worst = min(traded, key=lambda d: d.total_pnl_usd) if traded else None
    return WeeklyReport(
        kind="weekly", week_start=monday.isoformat(),
        week_end=(monday + timedelta(days=6)).isoformat(), timezone=tz.key,
        complete=all(d.complete for d in days),
        runtime_hours=round(sum(d.runtime_hours for d in days), 4), round_trips=round_trips,
        wins=wins, weekly_pnl_usd=round(sum(d.total_pnl_usd for d in days), 6),
        avg_win_rate=round(sum(rates) / len(rates), 6) if rates else None,
        pooled_win_rate=round(wins / round_trips, 6) if round_trips else None,
        best_day=pick(best), worst_day=pick(worst),
        exchange_errors=_sum_known([d.exchange_errors for d in days]),
        rate_limit_hits=_sum_known([d.rate_limit_hits for d in days]),
        days=[{"date": d.date, "pnl_usd": d.total_pnl_usd, "round_trips": d.round_trips,
               "win_rate": d.win_rate, "runtime_hours": d.runtime_hours, "runs": d.runs}
              for d in days],
    )
