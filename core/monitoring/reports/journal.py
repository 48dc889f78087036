"""Read-only queries over the SQLite journal for the reports (R-O4).

Reports are computed from the journal, never from the service's memory, so a
report after a restart (or from `arbops report` in another process) says the
same thing. A plain `sqlite3` connection in read-only URI mode is used: the
reports run in a worker thread (`asyncio.to_thread`), off the event loop, and
never write.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where the counters live in the KPI JSON snapshots (checkpoint every 60 s and the
# final one). Missing paths read as NULL: the report then says "not journaled".
EXCHANGE_ERRORS_PATH = "$.guards.exchange_errors"
RATE_LIMIT_HITS_PATH = "$.guards.rate_limit_hits"
# Inventory revaluation (R-M5), once the KPI carries it; until then NULL and the charts
# leave its line out. The figures of a run's own chart come from the same snapshots.
INVENTORY_PNL_PATH = "$.summary.inventory_pnl_usd"
TOTAL_PNL_PATH = "$.summary.total_pnl_usd"
STRATEGY_PNL_PATH = "$.summary.strategy_pnl_usd"
FEES_PATH = "$.trading.fees_usd"


@dataclass(frozen=True, slots=True)
class RunSpan:
    run_id: str
    mode: str
    phase: int
    started_at: float
    ended_at: float | None
    status: str
    last_seen: float | None  # ts of the run's newest KPI snapshot


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    position_id: str
    run_id: str
    base: str
    closed_at: float
    pnl_usd: float
    exit_reason: str | None
    fees_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class CounterPoint:
    run_id: str
    ts: float
    exchange_errors: int | None
    rate_limit_hits: int | None
    inventory_pnl_usd: float | None = None


@dataclass(frozen=True, slots=True)
class KpiPoint:
    """One KPI snapshot of a run: the figures its chart draws over time."""

    ts: float
    final: bool
    total_pnl_usd: float | None
    fees_usd: float | None
    inventory_pnl_usd: float | None
    kpi: dict[str, Any]  # the whole snapshot (only the newest one is kept by run_kpi)


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


class JournalReader:
    def __init__(self, db_path: Path) -> None:
        self.db_path = Path(db_path)

    def _connect(self) -> sqlite3.Connection:
        if not self.db_path.exists():
            raise FileNotFoundError(f"no journal at {self.db_path}")
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        con = self._connect()
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    _RUNS = ("SELECT r.run_id, r.mode, r.phase, r.started_at, r.ended_at, r.status,"
             " r.universe, r.data_source, r.stop_reason, r.exit_code,"
             " (SELECT MAX(k.ts) FROM kpi_snapshots k WHERE k.run_id = r.run_id) AS last_seen"
             " FROM runs r")

    @staticmethod
    def _span(r: sqlite3.Row) -> RunSpan:
        return RunSpan(r["run_id"], r["mode"], int(r["phase"]), float(r["started_at"]),
                       None if r["ended_at"] is None else float(r["ended_at"]),
                       r["status"], None if r["last_seen"] is None else float(r["last_seen"]))

    def runs_overlapping(self, start: float, end: float) -> list[RunSpan]:
        rows = self._all(f"{self._RUNS} WHERE r.started_at < ? ORDER BY r.started_at, r.rowid",
                         (end,))
        spans = [self._span(r) for r in rows]
        return [s for s in spans if s.ended_at is None or s.ended_at > start]

    def run(self, run_id: str) -> tuple[RunSpan, dict[str, Any]] | None:
        """A run's span and its row (universe, data source, stop reason...), or None.
        `last` names the newest run."""
        if run_id == "last":
            rows = self._all(f"{self._RUNS} ORDER BY r.started_at DESC, r.rowid DESC LIMIT 1",
                             ())
        else:
            rows = self._all(f"{self._RUNS} WHERE r.run_id = ?", (run_id,))
        if not rows:
            return None
        extra = ("universe", "data_source", "stop_reason", "exit_code")
        return self._span(rows[0]), {k: rows[0][k] for k in extra}

    def run_trades(self, run_id: str) -> list[ClosedTrade]:
        rows = self._all(
            "SELECT position_id, run_id, base, closed_at, pnl_usd, exit_reason, fees_usd"
            " FROM positions WHERE state = 'closed' AND run_id = ? AND closed_at IS NOT NULL"
            " ORDER BY closed_at, rowid", (run_id,))
        return [self._trade(r) for r in rows]

    def run_kpi(self, run_id: str) -> list[KpiPoint]:
        """The run's KPI snapshots in time order; only the newest keeps its whole JSON."""
        rows = self._all(
            # Strategy PnL; snapshots written before the three figures carry only
            # total_pnl_usd, which then was the strategy's figure.
            "SELECT ts, final, COALESCE(json_extract(json, ?), json_extract(json, ?)) AS pnl,"
            " json_extract(json, ?) AS fees,"
            " json_extract(json, ?) AS inv, json FROM kpi_snapshots WHERE run_id = ?"
            " ORDER BY ts, id", (STRATEGY_PNL_PATH, TOTAL_PNL_PATH, FEES_PATH,
                                 INVENTORY_PNL_PATH, run_id))
        out = []
        for i, r in enumerate(rows):
            kpi = json.loads(r["json"]) if i == len(rows) - 1 else {}
            out.append(KpiPoint(float(r["ts"]), bool(r["final"]), _float(r["pnl"]),
                                _float(r["fees"]), _float(r["inv"]), kpi))
        return out

    @staticmethod
    def _trade(r: sqlite3.Row) -> ClosedTrade:
        return ClosedTrade(r["position_id"], r["run_id"], r["base"], float(r["closed_at"]),
                           float(r["pnl_usd"] or 0.0), r["exit_reason"],
                           float(r["fees_usd"] or 0.0))

    def closed_trades(self, start: float, end: float) -> list[ClosedTrade]:
        rows = self._all(
            "SELECT position_id, run_id, base, closed_at, pnl_usd, exit_reason, fees_usd"
            " FROM positions WHERE state = 'closed' AND closed_at >= ? AND closed_at < ?"
            " ORDER BY closed_at, rowid", (start, end))
        return [self._trade(r) for r in rows]

    def recent_round_trips(self, limit: int) -> list[dict[str, Any]]:
        """The newest closed round trips, newest first, with what /trades shows."""
        rows = self._all(
            "SELECT p.position_id, p.run_id, p.base, p.direction, p.opened_at, p.closed_at,"
            " p.entry_premium_bps, p.exit_reason, p.pnl_usd, p.fees_usd, r.mode"
            " FROM positions p LEFT JOIN runs r ON r.run_id = p.run_id"
            " WHERE p.state = 'closed' AND p.closed_at IS NOT NULL"
            " ORDER BY p.closed_at DESC, p.rowid DESC LIMIT ?", (limit,))
        return [{**dict(r), "pnl_usd": float(r["pnl_usd"] or 0.0),
                 "fees_usd": float(r["fees_usd"] or 0.0)} for r in rows]

    def counter_points(self, run_ids: list[str]) -> list[CounterPoint]:
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self._all(
            "SELECT run_id, ts, json_extract(json, ?) AS errors, json_extract(json, ?) AS hits,"
            " json_extract(json, ?) AS inv"
            f" FROM kpi_snapshots WHERE run_id IN ({marks}) ORDER BY run_id, ts, id",
            (EXCHANGE_ERRORS_PATH, RATE_LIMIT_HITS_PATH, INVENTORY_PNL_PATH, *run_ids))
        return [CounterPoint(r["run_id"], float(r["ts"]),
                             None if r["errors"] is None else int(r["errors"]),
                             None if r["hits"] is None else int(r["hits"]),
                             _float(r["inv"])) for r in rows]
