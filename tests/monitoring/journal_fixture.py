"""A hand-built journal for the report tests (Asia/Seoul days; values hand-computed).

Week Mon 2026-01-05 .. Sun 2026-01-11 (KST = UTC+9):
- R1 2026-01-04 22:00 -> 01-05 02:00; closes +10 (01-04 23:30), +3 (00:30), -5 (01:00)
- R2 01-05 10:00 -> 11:30; closes +2 (10:30), -1 (11:00), 0 (11:10)
- R3 01-05 23:00, crashed (never finished); last KPI snapshot 01-06 00:30; no trades
- R4 01-07 09:00 -> 10:00; closes +4, +2            (no counters in its snapshots)
- R5 01-09 12:00 -> 13:00; closes -3                 (no KPI snapshots at all)
Also on 01-05: a `flat` row (pnl -0.1, no close time) and an `open` row: both ignored.

Counters (KPI snapshots guards.exchange_errors / guards.rate_limit_hits):
- R1: 01-04 22:00 (0,0); 01-04 23:59 (2,0); 01-05 01:00 (5,1); 01-05 02:00 (6,1)
- R2: 01-05 10:00 (0,0); 01-05 11:30 (3,2)
- R3: 01-05 23:00 (0,0); 01-06 00:30 (4,0)
"""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from core.journal.sqlite_store import SqliteStore

KST = ZoneInfo("Asia/Seoul")
DB_NAME = "arbops.sqlite3"


def kst(d: int, h: int, m: int = 0, month: int = 1) -> float:
    return datetime(2026, month, d, h, m, tzinfo=KST).timestamp()


def _kpi(errors: int | None, hits: int | None) -> str:
    guards: dict[str, object] = {"trading_state": "ACTIVE"}
    if errors is not None:
        guards["exchange_errors"] = errors
        guards["rate_limit_hits"] = hits
    return json.dumps({"schema_version": 1, "final": False, "guards": guards})


async def build_journal(data_dir: Path) -> Path:
    path = data_dir / DB_NAME
    store = await SqliteStore.open(path)
    try:
        runs = [
            ("R1", kst(4, 22), kst(5, 2), "completed"),
            ("R2", kst(5, 10), kst(5, 11, 30), "completed"),
            ("R3", kst(5, 23), None, "running"),
            ("R4", kst(7, 9), kst(7, 10), "completed"),
            ("R5", kst(9, 12), kst(9, 13), "failed"),
        ]
        for run_id, start, end, status in runs:
            await store.create_run(run_id, "paper", 1, "top10", "sim", start, 50.0)
            if end is not None:
                await store.finish_run(run_id, end, status, "duration_elapsed",
                                       0 if status == "completed" else 1, None)
        closed = [
            ("R1", "p0", kst(4, 23, 30), 10.0), ("R1", "p1", kst(5, 0, 30), 3.0),
            ("R1", "p2", kst(5, 1), -5.0), ("R2", "p3", kst(5, 10, 30), 2.0),
            ("R2", "p4", kst(5, 11), -1.0), ("R2", "p5", kst(5, 11, 10), 0.0),
            ("R4", "p6", kst(7, 9, 20), 4.0), ("R4", "p7", kst(7, 9, 40), 2.0),
            ("R5", "p8", kst(9, 12, 30), -3.0),
        ]
        for run_id, pid, closed_at, pnl in closed:
            await store.upsert_position(pid, run_id, "BTC", "sell_upbit_buy_binance", 0.0,
                                        "closed", closed_at - 60, 12.0, 20.0, 15.0,
                                        closed_at=closed_at, exit_reason="take_profit",
                                        pnl_usd=pnl, fees_usd=0.1)
        await store.upsert_position("pf", "R2", "ETH", "sell_upbit_buy_binance", 0.0, "flat",
                                    kst(5, 10, 5), 12.0, 20.0, 15.0, pnl_usd=-0.1)
        await store.upsert_position("po", "R2", "XRP", "sell_upbit_buy_binance", 1.0, "open",
                                    kst(5, 11, 20), 12.0, 20.0, 15.0)
        snaps = [
            ("R1", kst(4, 22), 0, 0), ("R1", kst(4, 23, 59), 2, 0), ("R1", kst(5, 1), 5, 1),
            ("R1", kst(5, 2), 6, 1), ("R2", kst(5, 10), 0, 0), ("R2", kst(5, 11, 30), 3, 2),
            ("R3", kst(5, 23), 0, 0), ("R3", kst(6, 0, 30), 4, 0),
            ("R4", kst(7, 9), None, None), ("R4", kst(7, 10), None, None),
        ]
        for run_id, ts, errors, hits in snaps:
            await store.save_kpi(run_id, False, ts, _kpi(errors, hits))
    finally:
        await store.close()
    return path


def _kpi_full(pnl: float, inventory: float, fees: float, **summary: object) -> str:
    return json.dumps({"schema_version": 1, "final": False,
                       "summary": {"total_pnl_usd": pnl, "inventory_pnl_usd": inventory,
                                   **summary},
                       "trading": {"fees_usd": fees},
                       "guards": {"exchange_errors": 1, "rate_limit_hits": 0}})


async def build_inventory_journal(data_dir: Path) -> Path:
    """Runs whose KPI snapshots carry `summary.inventory_pnl_usd` (the inventory
    revaluation figure), for the charts' optional line. Tuesday 2026-01-13 (KST):
    - R6 10:00 -> 11:00; closes +1.5 (10:20, fees 0.2), -0.5 (10:40, fees 0.2);
      snapshots 10:00 (pnl 0, inv 0), 10:30 (1.2, -2.0), 11:00 final (1.0, 3.0)
    - R7 23:00 -> 01-14 01:00, no trades; snapshots 23:30 (inv 1.0), 00:30 (4.0),
      01:00 (2.0)
    Inventory revaluation: 01-13 = 0, -2, 3, then 3 + 1 = 4 at 23:30;
    01-14 = 4 - 1 = 3 at 00:30, 2 - 1 = 1 at 01:00 (R7's change since 23:30).
    """
    path = data_dir / DB_NAME
    store = await SqliteStore.open(path)
    try:
        for run_id, start, end in (("R6", kst(13, 10), kst(13, 11)),
                                   ("R7", kst(13, 23), kst(14, 1))):
            await store.create_run(run_id, "paper", 2, "top20", "sim", start, 100.0)
            await store.finish_run(run_id, end, "completed", "duration_elapsed", 0, None)
        for pid, closed_at, pnl in (("q1", kst(13, 10, 20), 1.5), ("q2", kst(13, 10, 40), -0.5)):
            await store.upsert_position(pid, "R6", "ETH", "sell_upbit_buy_binance", 0.0,
                                        "closed", closed_at - 60, 12.0, 20.0, 15.0,
                                        closed_at=closed_at, exit_reason="take_profit",
                                        pnl_usd=pnl, fees_usd=0.2)
        snaps = [
            ("R6", kst(13, 10), False, _kpi_full(0.0, 0.0, 0.0)),
            ("R6", kst(13, 10, 30), False, _kpi_full(1.2, -2.0, 0.2)),
            ("R6", kst(13, 11), True, _kpi_full(1.0, 3.0, 0.4, max_drawdown_usd=0.5,
                                                round_trips_completed=2, win_rate=0.5)),
            ("R7", kst(13, 23, 30), False, _kpi_full(0.0, 1.0, 0.0)),
            ("R7", kst(14, 0, 30), False, _kpi_full(0.0, 4.0, 0.0)),
            ("R7", kst(14, 1), True, _kpi_full(0.0, 2.0, 0.0)),
        ]
        for run_id, ts, final, text in snaps:
            await store.save_kpi(run_id, final, ts, text)
    finally:
        await store.close()
    return path
