"""Report charts: the day's equity curve and the week's daily PnL bars."""
from __future__ import annotations

from core.monitoring.reports.compute import DailyReport, WeeklyReport, day_bounds
from core.monitoring.reports.png import BLACK, BLUE, DARK, GREEN, GREY, RED, Canvas

W, H = 640, 320
LEFT, RIGHT, TOP, BOTTOM = 90, 20, 36, 30


def _money(v: float) -> str:
    return f"{'+' if v >= 0 else '-'}${abs(v):.2f}"


def _frame(c: Canvas, lo: float, hi: float, title: str) -> tuple[float, float]:
    """Axes, zero line and y labels; returns the (lo, hi) actually used."""
    if hi - lo < 1e-9:
        lo, hi = lo - 1.0, hi + 1.0
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    c.text(LEFT, 8, title, DARK)
    x0, x1, y0, y1 = LEFT, W - RIGHT, TOP, H - BOTTOM
    c.line(x0, y0, x0, y1, BLACK)
    c.line(x0, y1, x1, y1, BLACK)
    c.text(4, TOP, _money(hi - pad), DARK)
    c.text(4, H - BOTTOM - 10, _money(lo + pad), DARK)
    return lo, hi


def _y(v: float, lo: float, hi: float) -> int:
    top, bottom = TOP, H - BOTTOM
    return round(bottom - (v - lo) / (hi - lo) * (bottom - top))


def daily_chart(report: DailyReport) -> bytes:
    """Cumulative closed-trade PnL over the day (a step line), with the zero line."""
    from datetime import date
    from zoneinfo import ZoneInfo

    c = Canvas(W, H)
    start, end = day_bounds(date.fromisoformat(report.date), ZoneInfo(report.timezone))
    values = [0.0] + [v for _, v in report.equity]
    lo, hi = _frame(c, min(*values, 0.0), max(*values, 0.0), report.date)
    x0, x1 = LEFT, W - RIGHT

    def x(ts: float) -> int:
        return round(x0 + (ts - start) / (end - start) * (x1 - x0))

    for h in (6, 12, 18):  # grid every 6 hours
        gx = x(start + h * 3600)
        c.line(gx, TOP, gx, H - BOTTOM, GREY, dash=3)
        c.text(gx - 8, H - BOTTOM + 8, f"{h:02d}", DARK)
    zy = _y(0.0, lo, hi)
    c.line(x0, zy, x1, zy, DARK, dash=4)
    px, py = x0, zy
    for ts, v in report.equity:
        nx, ny = x(ts), _y(v, lo, hi)
        for off in (0, 1):  # two pixels wide
            c.line(px, py + off, nx, py + off, BLUE)  # flat until the trade closes
            c.line(nx + off, py, nx + off, ny, BLUE)
        px, py = nx, ny
    end_x = x1 if report.complete else px  # a day in progress stops at its last trade
    for off in (0, 1):
        c.line(px, py + off, end_x, py + off, BLUE)
    return c.png()


def weekly_chart(report: WeeklyReport) -> bytes:
    """One bar per day, Monday to Sunday: green for a gain, red for a loss."""
    c = Canvas(W, H)
    pnl = [float(d["pnl_usd"]) for d in report.days]
    lo, hi = _frame(c, min(*pnl, 0.0), max(*pnl, 0.0),
                    f"{report.week_start} / {report.week_end}")
    x0, x1 = LEFT, W - RIGHT
    zy = _y(0.0, lo, hi)
    slot = (x1 - x0) / max(len(pnl), 1)
    for i, v in enumerate(pnl):
        a = round(x0 + i * slot + slot * 0.15)
        b = round(x0 + (i + 1) * slot - slot * 0.15)
        if v != 0.0:
            c.rect(a, zy, b, _y(v, lo, hi), GREEN if v > 0 else RED)
        c.text((a + b) // 2 - 4, H - BOTTOM + 8, str(i + 1), DARK)
    c.line(x0, zy, x1, zy, DARK)
    return c.png()
