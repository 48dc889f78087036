"""Daily and weekly reports (R-O4): computed from the journal, with a PNG chart.

`build_report` is synchronous and does all the work (SQLite reads, drawing,
file writes); callers on the event loop run it with `asyncio.to_thread`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.monitoring.reports.compute import (
    DailyReport,
    WeeklyReport,
    daily_report,
    week_start,
    weekly_report,
)

__all__ = ["BuiltReport", "DailyReport", "WeeklyReport", "build_report", "chart_png",
           "default_date", "format_daily", "format_weekly", "resolve_date"]


@dataclass(slots=True)
class BuiltReport:
    kind: str
    key: str  # the day, or the week's Monday (ISO date)
    report: DailyReport | WeeklyReport
    text: str
    png_path: Path | None
    png: bytes | None = None  # the chart, when one was drawn (written to png_path or not)

    def as_dict(self) -> dict[str, Any]:
        return {**self.report.as_dict(), "text": self.text,
                "png_path": str(self.png_path) if self.png_path else None}


def _na(v: Any, fmt: str = "{}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.1f}%"


def format_daily(r: DailyReport) -> str:
    head = f"Daily report {r.date} ({r.timezone})" + ("" if r.complete else " - so far")
    return "\n".join([
        head,
        f"Total runtime: {r.runtime_hours:.2f} h ({r.runs} run(s))",
        f"Round trips: {r.round_trips} (wins {r.wins})",
        f"Total PnL: ${r.total_pnl_usd:+.2f}",
        f"Win rate: {_pct(r.win_rate)}",
        f"Max drawdown: ${r.max_drawdown_usd:.2f}",
        f"Exchange API errors: {_na(r.exchange_errors)}",
        f"Rate-limit hits: {_na(r.rate_limit_hits)}",
    ])


def format_weekly(r: WeeklyReport) -> str:
    def day(d: dict[str, Any] | None) -> str:
        return "n/a" if d is None else f"{d['date']} ${d['pnl_usd']:+.2f}"

    head = f"Weekly report {r.week_start}..{r.week_end} ({r.timezone})" + (
        "" if r.complete else " - so far")
    lines = [
        head,
        f"Weekly PnL: ${r.weekly_pnl_usd:+.2f}",
        f"Avg win rate: {_pct(r.avg_win_rate)} (pooled {_pct(r.pooled_win_rate)})",
        f"Round trips: {r.round_trips}",
        f"Best day: {day(r.best_day)}",
        f"Worst day: {day(r.worst_day)}",
        f"Total runtime: {r.runtime_hours:.2f} h",
        (f"Exchange API errors: {_na(r.exchange_errors)}; rate-limit hits: "
         f"{_na(r.rate_limit_hits)}"),
    ]
    lines += [f"  {d['date']}: ${d['pnl_usd']:+.2f}, {d['round_trips']} RT, "
              f"win {_pct(d['win_rate'])}" for d in r.days]
    return "\n".join(lines)


def resolve_date(value: str | None, kind: str, now: float, tz: ZoneInfo) -> date:
    """YYYY-MM-DD, `today`, `yesterday`, or None for the default (see default_date)."""
    today = datetime.fromtimestamp(now, tz).date()
    if value is None:
        return default_date(kind, now, tz)
    if value == "today":
        return today
    if value == "yesterday":
        return today - timedelta(days=1)
    return date.fromisoformat(value)


def default_date(kind: str, now: float, tz: ZoneInfo) -> date:
    """The last complete period: yesterday, or the Monday of last week."""
    today = datetime.fromtimestamp(now, tz).date()
    if kind == "weekly":
        return week_start(today) - timedelta(days=7)
    return today - timedelta(days=1)


def chart_png(report: DailyReport | WeeklyReport) -> bytes:
    """The report's chart as PNG bytes (CPU work: run it off the event loop)."""
    from core.monitoring.reports.charts import daily_chart, weekly_chart

    return weekly_chart(report) if isinstance(report, WeeklyReport) else daily_chart(report)


def build_report(kind: str, db_path: Path, day: date, tz: ZoneInfo, now: float, *,
                 png_path: Path | None = None,
                 active_runs: frozenset[str] = frozenset()) -> BuiltReport:
    if kind == "daily":
        daily = daily_report(db_path, day, tz, now, active_runs)
        text, key = format_daily(daily), daily.date
        report: DailyReport | WeeklyReport = daily
    elif kind == "weekly":
        weekly = weekly_report(db_path, day, tz, now, active_runs)
        text, key = format_weekly(weekly), weekly.week_start
        report = weekly
    else:
        raise ValueError(f"unknown report kind {kind!r}")
    png = chart_png(report) if png_path is not None else None
    if png_path is not None and png is not None:
        png_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = png_path.with_name(f".{png_path.name}.tmp")
        tmp.write_bytes(png)
        tmp.replace(png_path)
    return BuiltReport(kind, key, report, text, png_path, png)
