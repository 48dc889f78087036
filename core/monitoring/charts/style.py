"""The house style: one look for every chart, and the output formats.

Imported only inside the chart worker process (it loads matplotlib). Figures are
made with `matplotlib.figure.Figure` and the Agg canvas directly: no pyplot, so no
global figure registry and no GUI backend is ever touched.
"""
from __future__ import annotations

import html
import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib
import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.layout_engine import ConstrainedLayoutEngine
from matplotlib.ticker import FuncFormatter

from core.monitoring.charts.data import (
    DARK,
    DESKTOP_SIZE_IN,
    GRID,
    MINUS,
    PHONE_DPI,
    PHONE_SIZE_IN,
    ChartKind,
    ImageFormat,
    Series,
    usd,
)

STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs everywhere
    "font.size": 9.5,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.labelsize": 9,
    "axes.labelcolor": "#444444",
    "axes.edgecolor": "#b8bcc2",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": GRID,
    "grid.linewidth": 0.8,
    "xtick.color": "#444444",
    "ytick.color": "#444444",
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "lines.linewidth": 1.8,
    "lines.solid_capstyle": "round",
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "axes.unicode_minus": True,
    "text.parse_math": False,  # "$" is money here, never the start of a formula
    "svg.hashsalt": "arbops",  # stable ids: the same data gives the same SVG
    "svg.fonttype": "path",
}


@contextmanager
def figure(kind: ChartKind, fmt: ImageFormat, rows: int = 1,
           height_ratios: Sequence[float] | None = None,
           sharex: bool = False) -> Iterator[tuple[Figure, list[Axes]]]:
    """A figure in the house style, phone-sized for PNG and desktop-sized otherwise."""
    size = PHONE_SIZE_IN[kind] if fmt == "png" else DESKTOP_SIZE_IN[kind]
    rc: Any = STYLE  # matplotlib types the keys as a Literal of every rcParam name
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=size, dpi=PHONE_DPI if fmt == "png" else 100, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows, 1, sharex=sharex, squeeze=False,
                            gridspec_kw={"height_ratios": list(height_ratios)}
                            if height_ratios else None)[:, 0].tolist()
        yield fig, axes


def header(fig: Figure, title: str, subtitle: str, fmt: ImageFormat) -> None:
    """Title (what is plotted) and a smaller line under it (the figures that matter),
    in a band the layout keeps free at the top of the figure. An HTML page has them
    as its own heading instead."""
    if fmt == "html":
        return
    h = fig.get_figheight()
    band = 0.34 + (0.24 if subtitle else 0.0)  # inches: type size does not scale with h
    engine = fig.get_layout_engine()
    if isinstance(engine, ConstrainedLayoutEngine):
        engine.set(rect=(0.0, 0.0, 1.0, 1.0 - band / h))
    fig.text(0.012, 1 - 0.07 / h, title, ha="left", va="top", fontsize=11.5,
             fontweight="bold", color=DARK)
    if subtitle:
        fig.text(0.012, 1 - 0.36 / h, subtitle, ha="left", va="top", fontsize=8.5,
                 color="#555555")


# --- numbers --------------------------------------------------------------------------
def _decimals(step: float) -> int:
    """Dollars whole when the ticks are whole, else cents (a tenth of a dollar reads
    like a typo), or a tenth of a cent for steps below a cent."""
    if step <= 0 or not math.isfinite(step):
        return 2
    needed = -math.floor(math.log10(step) + 1e-9)
    return 0 if needed <= 0 else 2 if needed <= 2 else 3


def money_axis(ax: Axes, axis: str = "y", signed: bool = True) -> None:
    """Dollar tick labels with as many decimals as the tick step needs."""
    ticks = ax.get_yticks() if axis == "y" else ax.get_xticks()
    step = float(np.min(np.diff(ticks))) if len(ticks) > 1 else 1.0
    dec = _decimals(step)
    fmt = FuncFormatter(lambda v, _pos: usd(v, dec, signed=signed and v != 0))
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def bps_axis(ax: Axes) -> None:
    fmt = FuncFormatter(lambda v, _pos: f"{v:,.0f}".replace("-", MINUS))
    ax.yaxis.set_major_formatter(fmt)


def pad_limits(ax: Axes, values: Sequence[float], include_zero: bool = True,
               min_span: float = 1.0) -> None:
    """y limits around the data (and 0), never a zero-height range."""
    vals = [v for v in values if math.isfinite(v)]
    if include_zero:
        vals.append(0.0)
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    pad = (hi - lo) * 0.08
    ax.set_ylim(lo - pad, hi + pad)


# --- time -----------------------------------------------------------------------------
def xs(points: Series) -> np.ndarray:
    """Unix seconds -> matplotlib date numbers (days since 1970-01-01 UTC)."""
    epoch = mdates.date2num(datetime(1970, 1, 1))
    return np.asarray([p[0] for p in points], dtype=float) / 86400.0 + epoch


def x1(ts: float) -> float:
    return float(xs([(ts, 0.0)])[0])


def ys(points: Series) -> np.ndarray:
    return np.asarray([p[1] for p in points], dtype=float)


def time_axis(ax: Axes, tz: ZoneInfo, start: float, end: float, label: bool = True) -> None:
    """Local times of the report zone on the x axis, with the zone named."""
    ax.set_xlim(x1(start), x1(end))
    span_h = (end - start) / 3600.0
    if 20 <= span_h <= 26:  # a report day (23-25 h across a DST change): every 3 h
        ax.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 3), tz=tz))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    else:
        locator = mdates.AutoDateLocator(tz=tz, minticks=3, maxticks=7)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(
            locator, tz=tz, show_offset=False))
    if label:
        ax.set_xlabel(f"time ({tz.key})")


# --- output ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Rendered:
    data: bytes
    axes: list[list[int]]  # each plot area as [left, top, right, bottom] pixels (PNG only)


def save(fig: Figure, fmt: ImageFormat, title: str = "", subtitle: str = "",
         summary: Sequence[Sequence[str]] = ()) -> Rendered:
    buf = io.BytesIO()
    if fmt == "png":
        fig.savefig(buf, format="png", dpi=PHONE_DPI, metadata={"Software": None})
        height = fig.get_figheight() * PHONE_DPI
        boxes = []
        for ax in fig.axes:  # after the draw: the layout is final
            b = ax.get_window_extent()
            boxes.append([round(b.x0), round(height - b.y1), round(b.x1), round(height - b.y0)])
        return Rendered(buf.getvalue(), boxes)
    fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    if fmt == "svg":
        return Rendered(svg, [])
    return Rendered(html_page(svg.decode(), title, subtitle, summary).encode(), [])


def html_page(svg: str, title: str, subtitle: str, summary: Sequence[Sequence[str]]) -> str:
    """A self-contained page for a desktop browser: the SVG inline, and the summary."""
    body = svg[svg.index("<svg"):]  # drop the XML prologue and doctype: inline SVG
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in summary)
    table = f"<table>{rows}</table>" if rows else ""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:'DejaVu Sans',Arial,sans-serif;margin:24px;color:#222}"
            "h1{font-size:20px;margin:0 0 4px}p{color:#555;margin:0 0 12px}"
            "svg{max-width:100%;height:auto}table{border-collapse:collapse;margin:12px 0}"
            "th,td{padding:3px 12px 3px 0;text-align:left;font-size:14px}"
            "th{font-weight:normal;color:#555}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>{table}"
            f"{body}</body></html>\n")
