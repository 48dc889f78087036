"""The reports as chart data (core.monitoring.charts.data): what each chart shows.

- Daily: the day's strategy PnL from closed round trips (the report's own figures,
  so the chart's last value is the report's PnL and its shaded drawdown its max
  drawdown), fees paid, inventory revaluation when journaled, and every run's span.
- Weekly: each day's PnL as a bar, days without a run said as such, and the week.
- Run: the KPI's marked-to-market PnL over the run (closed trades beside it), or the
  closed trades alone when the run left no KPI snapshot.
"""
from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

from core.monitoring.charts.data import (
    DayBar,
    MarkerData,
    RunSpanData,
    Series,
    TimelineChart,
    WeeklyChart,
    usd,
)
from core.monitoring.reports.compute import DailyReport, WeeklyReport, day_bounds
from core.monitoring.reports.run_report import RunReport

SEP = " \u00b7 "


def _trips(n: int) -> str:
    return f"{n:,} round trip{'' if n == 1 else 's'}"


def _markers(equity: list[tuple[float, float]], pnl: list[float]) -> list[MarkerData]:
    return [{"ts": ts, "value": v, "kind": "win" if p > 0 else "loss"}
            for (ts, v), p in zip(equity, pnl, strict=True)]


def _series(points: list[tuple[float, float]] | None) -> Series | None:
    return None if points is None else [(ts, v) for ts, v in points]


def daily_chart(r: DailyReport, now: float) -> TimelineChart:
    day = date.fromisoformat(r.date)
    start, end = day_bounds(day, ZoneInfo(r.timezone))
    cums = [v for _, v in r.equity]
    pnl = [b - a for a, b in zip([0.0, *cums], cums, strict=False)]
    note = ("no run this day" if r.runs == 0 else
            "no round trip closed" if r.round_trips == 0 else None)
    runs: list[RunSpanData] = [{"label": f"{s['mode']} p{s['phase']}", "start": s["started_at"],
                                "end": s["ended_at"]} for s in r.run_spans]
    subtitle = SEP.join([f"PnL {usd(r.total_pnl_usd, signed=True)}",
                         _trips(r.round_trips),
                         f"max drawdown {usd(r.max_drawdown_usd)}",
                         f"fees {usd(r.fees_usd)}"])
    return {
        "title": f"Strategy PnL, {day:%a} {r.date}" + ("" if r.complete else " (so far)"),
        "subtitle": subtitle, "timezone": r.timezone, "start": start, "end": end,
        "until": min(now, end), "equity": [(ts, v) for ts, v in r.equity],
        "equity_label": "strategy PnL, closed round trips", "equity_step": True,
        "fees": [(ts, v) for ts, v in r.fees], "inventory": _series(r.inventory),
        "runs": runs, "markers": _markers(r.equity, pnl), "note": note,
    }


def weekly_chart(r: WeeklyReport) -> WeeklyChart:
    days: list[DayBar] = [{"date": d["date"], "pnl_usd": float(d["pnl_usd"]),
                           "round_trips": int(d["round_trips"]),
                           "ran": bool(d.get("runs", 1))} for d in r.days]
    subtitle = SEP.join([f"week {usd(r.weekly_pnl_usd, signed=True)}",
                         _trips(r.round_trips), r.timezone])
    return {"title": f"Daily strategy PnL, week of {r.week_start}"
                     + ("" if r.complete else " (so far)"),
            "subtitle": subtitle, "days": days, "total_usd": r.weekly_pnl_usd}


def run_chart(r: RunReport, now: float) -> TimelineChart:
    span = max(r.end_ts - r.start_ts, 60.0)
    start, end = r.start_ts - span * 0.03, r.start_ts + span * 1.03
    kpi_pnl = r.kpi.get("strategy_pnl_usd") if r.kpi else None
    parts = [f"closed trades {usd(r.pnl_usd, signed=True)}", _trips(r.round_trips)]
    if kpi_pnl is not None:
        parts.insert(0, f"KPI strategy PnL {usd(float(kpi_pnl), signed=True)}")
    parts.append(f"fees {usd(r.fees_usd)}")
    chart: TimelineChart = {
        "title": f"Run {r.run_id}", "subtitle": SEP.join(parts), "timezone": r.timezone,
        "start": start, "end": end, "origin": r.start_ts, "until": min(r.end_ts, now) if r.running else r.end_ts,
        "equity": [(ts, v) for ts, v in r.equity], "equity_step": True,
        "equity_label": "strategy PnL, closed round trips",
        "fees": [(ts, v) for ts, v in r.fees], "inventory": _series(r.inventory),
        "inventory_step": False,  # a run's snapshots, 60 s apart
        "runs": [],  # the whole chart is the run: its span would shade everything
        "markers": _markers(r.equity, r.trade_pnl),
        "note": None if (r.equity or r.mtm) else "no round trip closed",
    }
    if r.mtm:  # the KPI's marked-to-market PnL leads; the closed trades stay beside it
        chart.update({"equity": list(r.mtm), "equity_step": False,
                      "equity_label": "strategy PnL marked to market (KPI)",
                      "closed": [(ts, v) for ts, v in r.equity]})
        chart["markers"] = []
    return chart
