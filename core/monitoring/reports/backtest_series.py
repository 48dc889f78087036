"""A backtest as chart data (core.monitoring.charts.data.BacktestChart): equity
(strategy PnL, inventory revaluation, total), the premium against the baseline the
strategy measured it from, entries and exits, and strategy PnL per day.

Plain data in, plain data out: the backtest hands over its samples
(ts, strategy, inventory, premium, baseline) and its journaled positions.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.monitoring.charts.data import BacktestChart, DayBar, MarkerData, Series, usd

SEP = " \u00b7 "
MAX_POINTS = 20_000  # enough for a month of minutes; the chart stays quick to draw

Sample = tuple[float, float, float, float | None, float | None]


def _thin(points: Series) -> Series:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    return [points[int(i * step)] for i in range(MAX_POINTS)] + [points[-1]]


def backtest_chart(report: dict[str, Any], samples: Sequence[Sample],
                   positions: Sequence[dict[str, Any]]) -> BacktestChart:
    strategy: Series = [(s[0], s[1]) for s in samples]
    inventory: Series = [(s[0], s[2]) for s in samples]
    total: Series = [(s[0], s[1] + s[2]) for s in samples]
    premium: Series = [(s[0], s[3]) for s in samples if s[3] is not None]
    baseline: Series = [(s[0], s[4]) for s in samples if s[4] is not None]
    markers: list[MarkerData] = []
    for p in positions:
        if p.get("entry_premium_bps") is not None and p.get("opened_at") is not None:
            markers.append({"ts": float(p["opened_at"]), "value": float(p["entry_premium_bps"]),
                            "kind": "entry"})
        if p.get("state") == "closed" and p.get("closed_at") is not None:
            # The exit's premium: the nearest sample's mid (the journal keeps the entry's).
            at = float(p["closed_at"])
            near = min(premium, key=lambda pt: abs(pt[0] - at), default=None)
            if near is not None:
                markers.append({"ts": at, "value": near[1], "kind": "exit"})
    days: list[DayBar] = [{"date": d["date"], "pnl_usd": float(d["strategy_pnl_usd"]),
                           "round_trips": int(d["round_trips"]), "ran": True}
                          for d in report["days"]]
    subtitle = SEP.join([
        f"strategy {usd(report['strategy_pnl_usd'], signed=True)}",
        f"inventory {usd(report['inventory_pnl_usd'], signed=True)}",
        f"total {usd(report['total_pnl_usd'], signed=True)}",
        f"{report['round_trips']} round trips", f"fees {usd(report['fees_usd'])}",
        f"max drawdown {usd(report['max_drawdown_usd'])}"])
    summary = [[k, str(report[k])] for k in (
        "strategy_pnl_usd", "inventory_pnl_usd", "total_pnl_usd", "fees_usd", "turnover_usd",
        "round_trips", "win_rate", "max_drawdown_usd", "exposure_s", "verdict", "run_id")]
    return {
        "title": f"Backtest {report['run_id']}",
        "subtitle": subtitle,
        "timezone": report.get("timezone", "UTC"),
        "equity": _thin(strategy),
        "inventory": _thin(inventory),
        "total": _thin(total),
        "premium": {"label": "premium (bps)", "points": _thin(premium),
                    "baseline": _thin(baseline)} if premium else None,
        "markers": markers[:2000],
        "days": days,
        "summary": summary,
    }
