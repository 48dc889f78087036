"""What a chart is drawn from: plain data (JSON as it is), and the house palette.

The worker process receives these as JSON, so every field is a number, a string,
a list or a dict; timestamps are Unix seconds (UTC) and the chart converts them to
the `timezone` it is given. Nothing here imports matplotlib: the service builds
these without loading the plotting library.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NotRequired, TypedDict

Point = Sequence[float]  # (ts, value); JSON turns the tuples into lists
Series = Sequence[Point]

ChartKind = Literal["timeline", "weekly", "backtest"]
ImageFormat = Literal["png", "svg", "html"]
FORMATS: tuple[ImageFormat, ...] = ("png", "svg", "html")

# Phone size: Telegram shows a photo at the chat's width; a phone screen is about
# 1080 px wide, so the PNGs are drawn 1080 px wide at 200 dpi (type stays large).
PHONE_DPI = 200
PHONE_SIZE_IN = {"timeline": (5.4, 3.6), "weekly": (5.4, 3.6), "backtest": (5.4, 8.1)}
# SVG/HTML are for a desktop browser: wider, in vector form.
DESKTOP_SIZE_IN = {"timeline": (12.0, 6.0), "weekly": (12.0, 6.0), "backtest": (14.0, 11.0)}


def phone_pixels(kind: ChartKind) -> tuple[int, int]:
    """The PNG's (width, height) in pixels."""
    w, h = PHONE_SIZE_IN[kind]
    return round(w * PHONE_DPI), round(h * PHONE_DPI)


# The house palette (RGB hex). Tests look for these colours in the pixels.
BLUE = "#1f5fbf"  # strategy equity
RED = "#d1343a"  # drawdown, losses, exits
GREEN = "#23924a"  # gains, entries
ORANGE = "#e08a00"  # fees
PURPLE = "#7b4fb8"  # inventory revaluation
DARK = "#222222"  # text, total equity
GREY = "#8a8f98"  # baseline, notes
RUN_SHADE = "#e9eef6"  # time a run was active
GRID = "#e3e5e8"


MINUS = "\u2212"


def usd(value: float, decimals: int = 2, signed: bool = False) -> str:
    """$1,234.50 with thousands separators and a real minus sign; + when `signed`."""
    shown = round(abs(value), decimals)
    sign = MINUS if value < 0 and shown > 0 else ("+" if signed and shown > 0 else "")
    return f"{sign}${shown:,.{decimals}f}"


def rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


class RunSpanData(TypedDict):
    label: str  # short: "paper p1"
    start: float
    end: float | None  # None: still running (drawn up to `until`)


class MarkerData(TypedDict):
    ts: float
    value: float
    kind: Literal["win", "loss", "entry", "exit"]


class TimelineChart(TypedDict):
    """PnL through a period (a report day, or one run): the strategy equity with its
    drawdown shaded, run spans marked, and optional extra lines."""

    title: str
    subtitle: str
    timezone: str
    start: float  # x axis range
    end: float
    until: float  # lines stop here (now, for a period still in progress)
    origin: NotRequired[float]  # where the lines start at 0 (default `start`)
    equity: Series  # cumulative strategy PnL (USD); 0 at `origin`
    equity_label: str
    equity_step: bool  # True: changes at each point (closed trades); False: a line
    closed: NotRequired[Series | None]  # closed-trade PnL beside a marked-to-market equity
    fees: NotRequired[Series | None]  # cumulative fees paid (USD, positive)
    inventory: NotRequired[Series | None]  # inventory revaluation (USD), once journaled
    inventory_step: NotRequired[bool]  # default True; False joins the samples with a line
    runs: list[RunSpanData]
    markers: NotRequired[list[MarkerData]]
    note: NotRequired[str | None]  # said in the plot when there is nothing to draw


class DayBar(TypedDict):
    date: str  # YYYY-MM-DD
    pnl_usd: float
    round_trips: int
    ran: bool  # False: no run that day (a gap, not a flat day)


class WeeklyChart(TypedDict):
    title: str
    subtitle: str
    days: list[DayBar]
    total_usd: float


class PremiumData(TypedDict):
    label: str  # "BTC premium"
    points: Series  # bps
    baseline: Series  # bps


class BacktestChart(TypedDict):
    """A backtest over days or weeks: equity, premium vs baseline with entries and
    exits, drawdown, and PnL per day, in one multi-panel figure."""

    title: str
    subtitle: str
    timezone: str
    equity: Series  # cumulative strategy PnL (USD)
    inventory: NotRequired[Series | None]  # inventory revaluation (USD)
    total: NotRequired[Series | None]  # total equity change (USD)
    premium: NotRequired[PremiumData | None]
    markers: NotRequired[list[MarkerData]]  # kind entry|exit, value in bps
    days: list[DayBar]
    summary: NotRequired[list[list[str]]]  # [label, value] rows for the HTML page
