"""The tables a Freqtrade user reaches for, from the journal (read-only):
recent round trips, profit today / this week / all time, per-symbol performance,
and PnL per day. Days and weeks are the reports' (core/monitoring/reports/compute.py):
calendar days in the report zone. Strategy PnL is the closed round trips' net
`pnl_usd`; inventory revaluation is what the KPI snapshots carry (None when they do
not); total is their sum when both are known."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.monitoring.reports.compute import _inventory_in, day_bounds, week_start
from core.monitoring.reports.journal import ClosedTrade, JournalReader


def recent_trades(db: Path, limit: int) -> list[dict[str, Any]]:
    rows = JournalReader(db).recent_round_trips(limit)
    for r in rows:
        r["held_s"] = (round(float(r["closed_at"]) - float(r["opened_at"]), 1)
                       if r.get("opened_at") is not None else None)
    return rows


def _period(reader: JournalReader, start: float, end: float) -> dict[str, Any]:
    trades = reader.closed_trades(start, end)
    strategy = round(sum(t.pnl_usd for t in trades), 6)
    runs = [r.run_id for r in reader.runs_overlapping(start, end)]
    inventory_line = _inventory_in(reader.counter_points(runs), start, end)
    inventory = None if inventory_line is None else (
        inventory_line[-1][1] if inventory_line else 0.0)
    wins = sum(1 for t in trades if t.pnl_usd > 0)
    return {"round_trips": len(trades), "wins": wins,
            "strategy_pnl_usd": strategy,
            "inventory_pnl_usd": inventory,
            "total_pnl_usd": None if inventory is None else round(strategy + inventory, 6),
            "fees_usd": round(sum(t.fees_usd for t in trades), 6)}


def profit(db: Path, tz: ZoneInfo, now: float) -> dict[str, Any]:
    reader = JournalReader(db)
    today = datetime.fromtimestamp(now, tz).date()
    t_start, _ = day_bounds(today, tz)
    w_start, _ = day_bounds(week_start(today), tz)
    end = now + 1.0
    return {"timezone": tz.key, "today": today.isoformat(),
            "periods": {"today": _period(reader, t_start, end),
                        "week": _period(reader, w_start, end),
                        "all": _period(reader, 0.0, end)}}


def performance(db: Path, now: float) -> list[dict[str, Any]]:
    """Per symbol, all time: round trips, wins, strategy PnL, fees; best first."""
    by: dict[str, list[ClosedTrade]] = defaultdict(list)
    for t in JournalReader(db).closed_trades(0.0, now + 1.0):
        by[t.base].append(t)
    rows = [{"symbol": base, "round_trips": len(ts),
             "wins": sum(1 for t in ts if t.pnl_usd > 0),
             "strategy_pnl_usd": round(sum(t.pnl_usd for t in ts), 6),
             "fees_usd": round(sum(t.fees_usd for t in ts), 6)} for base, ts in by.items()]
    return sorted(rows, key=lambda r: -float(r["strategy_pnl_usd"]))


def daily(db: Path, tz: ZoneInfo, now: float, days: int) -> dict[str, Any]:
    """The last `days` calendar days in the report zone, today first."""
    reader = JournalReader(db)
    today = datetime.fromtimestamp(now, tz).date()
    out = []
    for i in range(days):
        day: date = today - timedelta(days=i)
        start, end = day_bounds(day, tz)
        trades = reader.closed_trades(start, end)
        out.append({"date": day.isoformat(), "round_trips": len(trades),
                    "wins": sum(1 for t in trades if t.pnl_usd > 0),
                    "strategy_pnl_usd": round(sum(t.pnl_usd for t in trades), 6),
                    "fees_usd": round(sum(t.fees_usd for t in trades), 6)})
    return {"timezone": tz.key, "days": out}
