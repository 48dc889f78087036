"""Daily, weekly and run reports (R-O4): computed from the journal, with a PNG chart.

`build_report` is synchronous and does all the work (SQLite reads, the chart drawn by
a worker process, file writes); callers on the event loop run it with
`asyncio.to_thread`. A chart that fails or runs past its time leaves the report
as text: `png` is None and `chart_error` says why.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from core.errors import ChartFailed
from core.monitoring.charts.render import DEFAULT_TIMEOUT_S, render_chart
from core.monitoring.reports.compute import (
    DailyReport,
    WeeklyReport,
    daily_report,
    week_start,
    weekly_report,
)
from core.monitoring.reports.run_report import RunReport, format_run, run_report

__all__ = ["KINDS", "BuiltReport", "DailyReport", "RunReport", "WeeklyReport", "build_report",
           "default_date", "format_daily", "format_run", "format_weekly", "resolve_date"]

KINDS = ("daily", "weekly", "run")
AnyReport = DailyReport | WeeklyReport | RunReport


@dataclass(slots=True)
class BuiltReport:
    kind: str
    key: str  # the day, the week's Monday (ISO date), or the run id
    report: AnyReport
    text: str
    png_path: Path | None  # where the chart was written (None: not asked, or not drawn)
    png: bytes | None = None  # the chart, when one was drawn (written to png_path or not)
    chart_error: str | None = None  # why a chart that was asked for is missing

    def as_dict(self) -> dict[str, Any]:
        return {**self.report.as_dict(), "text": self.text,
                "png_path": str(self.png_path) if self.png_path else None,
                "chart_error": self.chart_error}


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
        # Strategy PnL of the closed round trips (docs/monitoring.md, "Three PnL
        # figures"); the inventory's revaluation is its own line.
        f"Strategy PnL (closed round trips): ${r.total_pnl_usd:+.2f}",
        f"Win rate: {_pct(r.win_rate)}",
        f"Max drawdown: ${r.max_drawdown_usd:.2f}",
        "Inventory revaluation: " + (
            "n/a" if not r.inventory else f"${r.inventory[-1][1]:+.2f}"),
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
        f"Weekly PnL: ${r.weekly_pnl_usd:+.2f} (strategy, closed round trips)",
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


def chart_png(report: AnyReport, now: float, *,
              timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
    """The report's chart as PNG bytes, drawn by a worker process (blocks the calling
    thread up to `timeout_s`; ChartFailed/ChartTimeout when it is not drawn)."""
    from core.monitoring.reports.chart_data import daily_chart, run_chart, weekly_chart

    if isinstance(report, WeeklyReport):
        return render_chart("weekly", weekly_chart(report), timeout_s=timeout_s)
    if isinstance(report, RunReport):
        return render_chart("timeline", run_chart(report, now), timeout_s=timeout_s)
    return render_chart("timeline", daily_chart(report, now), timeout_s=timeout_s)


def build_report(kind: str, db_path: Path, day: date | None, tz: ZoneInfo, now: float, *,
                 png_path: Path | None = None, chart: bool = False, run_id: str | None = None,
                 active_runs: frozenset[str] = frozenset(),
                 chart_timeout_s: float = DEFAULT_TIMEOUT_S) -> BuiltReport:
    """The report, and its chart when `png_path` (written there) or `chart` (kept in
    memory) asks for one. `day` is any day of the period; `run_id` names a run."""
    report: AnyReport
    if kind == "run":
        if not run_id:
            raise ValueError("a run report needs a run id")
        run = run_report(db_path, run_id, tz, now, active_runs)
        text, key, report = format_run(run), run.run_id, run
    elif day is None:
        raise ValueError(f"a {kind} report needs a date")
    elif kind == "daily":
        daily = daily_report(db_path, day, tz, now, active_runs)
        text, key, report = format_daily(daily), daily.date, daily
    elif kind == "weekly":
        weekly = weekly_report(db_path, day, tz, now, active_runs)
        text, key, report = format_weekly(weekly), weekly.week_start, weekly
    else:
        raise ValueError(f"unknown report kind {kind!r}")
    built = BuiltReport(kind, key, report, text, None)
    if png_path is None and not chart:
        return built
    try:
        built.png = chart_png(report, now, timeout_s=chart_timeout_s)
    except ChartFailed as exc:
        built.chart_error = str(exc)
        logger.warning("{} report {}: no chart ({})", kind, key, exc)
        return built
    except Exception as exc:  # noqa: BLE001 - a bug in the chart's data: the text still goes
        built.chart_error = f"{type(exc).__name__}: {exc}"
        logger.exception("{} report {}: no chart", kind, key)
        return built
    if png_path is not None:
        png_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = png_path.with_name(f".{png_path.name}.tmp")
        tmp.write_bytes(built.png)
        tmp.replace(png_path)
        built.png_path = png_path
    return built
