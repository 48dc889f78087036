"""The report charts: PnL through a day or a run (timeline), and a week's days (bars).

Worker-process only (matplotlib). Each function takes the plain data of
core.monitoring.charts.data and returns the image bytes.
"""
from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from core.monitoring.charts.data import (
    BLUE,
    DARK,
    GREEN,
    GREY,
    ORANGE,
    PURPLE,
    RED,
    RUN_SHADE,
    DayBar,
    ImageFormat,
    MarkerData,
    RunSpanData,
    Series,
    TimelineChart,
    WeeklyChart,
    usd,
)
from core.monitoring.charts.style import (
    Rendered,
    figure,
    header,
    money_axis,
    pad_limits,
    save,
    time_axis,
    x1,
    xs,
    ys,
)

RUN_EDGE = "#8fa6c8"
MAX_MARKERS = 80  # beyond this many closes, dots hide the line instead of explaining it


def _from_zero(points: Series, start: float, until: float) -> tuple[np.ndarray, np.ndarray]:
    """A cumulative series as drawn: 0 at `start`, its points, held flat to `until`."""
    inside = [(float(p[0]), float(p[1])) for p in points if p[0] <= until]
    pts = [(start, 0.0), *inside]
    if pts[-1][0] < until:
        pts.append((until, pts[-1][1]))
    return xs(pts), ys(pts)


def _runs(ax: Axes, runs: list[RunSpanData], start: float, end: float, until: float) -> bool:
    """Each run as a shaded span with its start (solid) and end (dashed) marked."""
    label_tx = blended_transform_factory(ax.transData, ax.transAxes)
    last_label_x = -1.0
    width = x1(end) - x1(start)
    for run in runs:
        s = max(run["start"], start)
        e = min(run["end"] if run["end"] is not None else until, end)
        if e < s:
            continue
        ax.axvspan(x1(s), x1(e), color=RUN_SHADE, lw=0, zorder=0)
        if run["start"] >= start:
            ax.axvline(x1(s), color=RUN_EDGE, lw=1.0, zorder=1)
        if run["end"] is not None and run["end"] <= end:
            ax.axvline(x1(e), color=RUN_EDGE, lw=1.0, ls=(0, (3, 2)), zorder=1)
        if (x1(s) - last_label_x) > 0.12 * width:  # labels must not overprint each other
            near_end = x1(s) > x1(start) + 0.85 * width
            ax.text(x1(s), 0.985, f" {run['label']} " , transform=label_tx, va="top",
                    ha="right" if near_end else "left", fontsize=7, color="#5a6f90",
                    clip_on=True, zorder=6)
            last_label_x = x1(s)
    return bool(runs)


def _markers(ax: Axes, markers: list[MarkerData]) -> None:
    if not markers or len(markers) > MAX_MARKERS:
        return
    for kind, colour in (("win", GREEN), ("loss", RED)):
        pts = [(m["ts"], m["value"]) for m in markers if m["kind"] == kind]
        if pts:
            ax.scatter(xs(pts), ys(pts), s=14, color=colour, zorder=5, linewidths=0)


def timeline(d: TimelineChart, fmt: ImageFormat) -> Rendered:
    tz = ZoneInfo(d["timezone"])
    start, end, until = d["start"], d["end"], min(d["until"], d["end"])
    origin = d.get("origin", start)
    with figure("timeline", fmt) as (fig, axes):
        ax = axes[0]
        header(fig, d["title"], d["subtitle"], fmt)
        handles: list[Line2D | Patch] = []
        if _runs(ax, d["runs"], start, end, until):
            handles.append(Patch(color=RUN_SHADE, label="run active"))
        x, y = _from_zero(d["equity"], origin, until)
        step: Literal["post"] | None = "post" if d["equity_step"] else None
        peak = np.maximum.accumulate(y)
        ax.fill_between(x, y, peak, where=peak > y, step=step, color=RED, alpha=0.16, lw=0,
                        zorder=2, interpolate=not step)
        if (peak > y).any():
            handles.append(Patch(color=RED, alpha=0.16, label="drawdown"))
        ax.axhline(0.0, color="#9aa0a6", lw=0.8, zorder=1)
        values = list(y)
        (line,) = (ax.step(x, y, where="post", color=BLUE, lw=2.0, zorder=4,
                           label=d["equity_label"]) if step else
                   ax.plot(x, y, color=BLUE, lw=2.0, zorder=4, label=d["equity_label"]))
        handles.insert(0, line)
        # (key, label, colour, dash, sign, step): events (closes, fees) change the value
        # at their time; the inventory figure is sampled, a line when the samples are
        # dense (one run's snapshots), steps when runs leave gaps between them (a day).
        extra = (("closed", "closed round trips", DARK, (0, (1, 1.5)), 1, True),
                 ("fees", "fees paid (in PnL)", ORANGE, (0, (4, 2)), -1, True),
                 ("inventory", "inventory reval. (not in PnL)", PURPLE, "-", 1,
                  d.get("inventory_step", True)))
        for key, label, colour, dash, sign, stepped in extra:
            points = d.get(key)
            if not points:
                continue
            ex, ey = _from_zero(points, origin, until)  # type: ignore[arg-type]
            ey = ey * sign  # fees are a cost: drawn below zero
            (h,) = ax.plot(ex, ey, drawstyle="steps-post" if stepped else "default",
                           color=colour, lw=1.6, ls=dash, zorder=3, label=label)
            handles.append(h)
            values += list(ey)
        _markers(ax, d.get("markers") or [])
        note = d.get("note")
        if note:
            ax.text(0.5, 0.72, note, transform=ax.transAxes, ha="center", va="center",
                    fontsize=10, color=GREY, zorder=6,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8})
        time_axis(ax, tz, start, end)
        pad_limits(ax, values)
        ax.set_ylabel("USD")
        money_axis(ax)
        _legend(fig, handles)
        return save(fig, fmt, d["title"], d["subtitle"])


def _legend(fig: Figure, handles: list[Line2D | Patch]) -> None:
    """A legend only when more than the one line is drawn; below the plot, out of it."""
    if len(handles) > 1:
        fig.legend(handles=handles, loc="outside lower center", ncol=2,
                   handlelength=2.0, columnspacing=1.5)


def _day_label(day: DayBar) -> str:
    from datetime import date

    d = date.fromisoformat(day["date"])
    return f"{d:%a}\n{d:%m-%d}"


def weekly(d: WeeklyChart, fmt: ImageFormat) -> Rendered:
    """One bar per day (green gain, red loss), a gap day said as such, and the week."""
    with figure("weekly", fmt) as (fig, axes):
        ax = axes[0]
        header(fig, d["title"], d["subtitle"], fmt)
        days = d["days"]
        pnl = [float(day["pnl_usd"]) for day in days]
        n = len(days)
        positions = [*range(n), n + 0.6]  # the week's bar stands apart
        colours = [GREEN if v > 0 else RED for v in pnl] + [BLUE]
        values = [*pnl, float(d["total_usd"])]
        bars = ax.bar(positions, values, width=0.68, color=colours, zorder=3)
        ax.axhline(0.0, color="#9aa0a6", lw=0.8, zorder=2)
        pad_limits(ax, values)
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - (hi - lo) * 0.06, hi + (hi - lo) * 0.06)  # room for the labels
        off = (hi - lo) * 0.02
        for i, (bar, v) in enumerate(zip(bars, values, strict=True)):
            if i < n and not days[i]["ran"]:
                ax.text(bar.get_x() + bar.get_width() / 2, off, "no\nrun", ha="center",
                        va="bottom", fontsize=7.5, color=GREY)
                continue
            label = usd(v, 2, signed=True)
            if i < n and days[i]["round_trips"] == 0:
                label = "0 trades"
            ax.text(bar.get_x() + bar.get_width() / 2, v + (off if v >= 0 else -off), label,
                    ha="center", va="bottom" if v >= 0 else "top", fontsize=7.5,
                    color=DARK, zorder=4)
        ax.set_xticks(positions, [*(_day_label(day) for day in days), "week\ntotal"])
        ax.tick_params(axis="x", length=0)
        ax.set_ylabel("strategy PnL (USD)")
        money_axis(ax)
        return save(fig, fmt, d["title"], d["subtitle"])
