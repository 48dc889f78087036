"""The backtest chart: equity, premium vs its baseline with entries and exits,
drawdown, and PnL per day, as one multi-panel figure (PNG for the phone, SVG or an
HTML page for the desktop). Worker-process only (matplotlib)."""
from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import numpy as np
from matplotlib.axes import Axes

from core.monitoring.charts.data import (
    BLUE,
    DARK,
    GREEN,
    GREY,
    PURPLE,
    RED,
    BacktestChart,
    ImageFormat,
    Series,
)
from core.monitoring.charts.style import (
    Rendered,
    bps_axis,
    figure,
    header,
    money_axis,
    pad_limits,
    save,
    time_axis,
    xs,
    ys,
)

GAP_FACTOR = 10.0  # a step this many times the usual spacing is a hole in the data
MAX_DAY_LABELS = 10


def _with_gaps(points: Series) -> tuple[np.ndarray, np.ndarray]:
    """x, y with a NaN wherever the data has a hole, so no line is drawn across it
    (recordings come in separate windows; a straight line would invent prices)."""
    x, y = xs(points), ys(points)
    if len(x) < 3:
        return x, y
    dx = np.diff(x)
    usual = float(np.median(dx))
    holes = np.nonzero(dx > usual * GAP_FACTOR)[0] if usual > 0 else np.array([], dtype=int)
    if len(holes) == 0:
        return x, y
    return np.insert(x, holes + 1, np.nan), np.insert(y, holes + 1, np.nan)


def _panel_title(ax: Axes, text: str, legend: bool = False) -> None:
    """The panel's title; with `legend`, a row under it holds the legend, so the
    legend never covers the data."""
    ax.set_title(text, loc="left", fontsize=9.5, fontweight="bold", color=DARK,
                 pad=17 if legend else 4)


def _legend(ax: Axes) -> None:
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=4, fontsize=7,
              borderaxespad=0.2, handlelength=1.6, columnspacing=1.2, borderpad=0.1)


def _equity(ax: Axes, d: BacktestChart) -> list[float]:
    values: list[float] = []
    lines = (("equity", "strategy PnL", BLUE, 2.0), ("inventory", "inventory revaluation",
             PURPLE, 1.4), ("total", "total", DARK, 1.2))
    drawn = 0
    for key, label, colour, width in lines:
        points = d.get(key)
        if not points:
            continue
        x, y = xs(points), ys(points)  # type: ignore[arg-type]
        ax.plot(x, y, color=colour, lw=width, drawstyle="steps-post", label=label)
        values += list(y)
        drawn += 1
    ax.axhline(0.0, color="#9aa0a6", lw=0.8, zorder=1)
    _panel_title(ax, "Equity (USD)", legend=drawn > 1)
    if drawn > 1:
        _legend(ax)
    pad_limits(ax, values)
    ax.set_ylabel("USD")
    return values


def _premium(ax: Axes, d: BacktestChart) -> None:
    premium = d.get("premium")
    if not premium:
        _panel_title(ax, "Premium (no premium series given)")
        return
    _panel_title(ax, f"{premium['label']} vs baseline (bps)", legend=True)
    x, y = _with_gaps(premium["points"])
    ax.plot(x, y, color="#6f8fc4", lw=0.9, label="premium")
    bx, by = _with_gaps(premium["baseline"])
    ax.plot(bx, by, color=DARK, lw=1.3, ls=(0, (4, 2)), label="baseline")
    markers = d.get("markers") or []
    for kind, colour, shape in (("entry", GREEN, "^"), ("exit", RED, "v")):
        pts = [(m["ts"], m["value"]) for m in markers if m["kind"] == kind]
        if pts:
            ax.scatter(xs(pts), ys(pts), marker=shape, s=22, color=colour, zorder=5,
                       linewidths=0, label=f"{kind} ({len(pts):,})")
    _legend(ax)
    ax.set_ylabel("bps")
    bps_axis(ax)


def _drawdown(ax: Axes, d: BacktestChart) -> None:
    _panel_title(ax, "Drawdown of strategy PnL (USD)")
    x, y = xs(d["equity"]), ys(d["equity"])
    dd = y - np.maximum.accumulate(np.maximum(y, 0.0)) if len(y) else y
    if len(y):
        ax.fill_between(x, dd, 0.0, step="post", color=RED, alpha=0.3, lw=0)
        ax.plot(x, dd, color=RED, lw=1.0, drawstyle="steps-post")
    pad_limits(ax, list(dd), min_span=0.5)
    ax.set_ylabel("USD")


def _days(ax: Axes, d: BacktestChart) -> None:
    days = d["days"]
    _panel_title(ax, f"Strategy PnL per day ({len(days):,} days)")
    pnl = [float(day["pnl_usd"]) for day in days]
    colours = [GREEN if v > 0 else RED if v < 0 else GREY for v in pnl]
    ax.bar(range(len(days)), pnl, width=0.75, color=colours, zorder=3)
    ax.axhline(0.0, color="#9aa0a6", lw=0.8, zorder=2)
    every = max(1, -(-len(days) // MAX_DAY_LABELS))
    ticks = list(range(0, len(days), every))
    ax.set_xticks(ticks, [f"{date.fromisoformat(days[i]['date']):%m-%d}" for i in ticks])
    ax.tick_params(axis="x", length=0)
    ax.set_xlim(-0.6, max(len(days), 1) - 0.4)
    pad_limits(ax, pnl)
    ax.set_ylabel("USD")
    money_axis(ax)


def backtest(d: BacktestChart, fmt: ImageFormat) -> Rendered:
    tz = ZoneInfo(d["timezone"])
    with figure("backtest", fmt, rows=4, height_ratios=(3.0, 2.6, 1.5, 2.0)) as (fig, axes):
        header(fig, d["title"], d["subtitle"], fmt)
        ax_eq, ax_prem, ax_dd, ax_days = axes
        _equity(ax_eq, d)
        _premium(ax_prem, d)
        _drawdown(ax_dd, d)
        _days(ax_days, d)
        times = [p[0] for p in d["equity"]]
        premium = d.get("premium")
        if premium:
            times += [p[0] for p in premium["points"]]
        start, end = (min(times), max(times)) if times else (0.0, 86400.0)
        if end <= start:
            end = start + 3600.0
        for ax in (ax_eq, ax_prem, ax_dd):
            time_axis(ax, tz, start, end, label=ax is ax_dd)
        for ax in (ax_eq, ax_dd):
            money_axis(ax)
        return save(fig, fmt, d["title"], d["subtitle"], d.get("summary") or [])
