"""Read-only queries over the SQLite journal for the reports (R-O4).

Reports are computed from the journal, never from the service's memory, so a
report after a restart (or from `arbops report` in another process) says the
same thing. A plain `sqlite3` connection in read-only URI mode is used: the
reports run in a worker thread (`asyncio.to_thread`), off the event loop, and
never write.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Where the counters live in the KPI JSON snapshots (checkpoint every 60 s and the
# final one). Missing paths read as NULL: the report then says "not journaled".
EXCHANGE_ERRORS_PATH = "$.guards.exchange_errors"
RATE_LIMIT_HITS_PATH = "$.guards.rate_limit_hits"


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


@dataclass(frozen=True, slots=True)
class CounterPoint:
    run_id: str
    ts: float
    exchange_errors: int | None
    rate_limit_hits: int | None


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

    def runs_overlapping(self, start: float, end: float) -> list[RunSpan]:
        rows = self._all(
            "SELECT r.run_id, r.mode, r.phase, r.started_at, r.ended_at, r.status,"
            " (SELECT MAX(k.ts) FROM kpi_snapshots k WHERE k.run_id = r.run_id) AS last_seen"
            " FROM runs r WHERE r.started_at < ? ORDER BY r.started_at, r.rowid", (end,))
        out = []
        for r in rows:
            span = RunSpan(r["run_id"], r["mode"], int(r["phase"]), float(r["started_at"]),
                           None if r["ended_at"] is None else float(r["ended_at"]),
                           r["status"], None if r["last_seen"] is None else float(r["last_seen"]))
            if span.ended_at is None or span.ended_at > start:
                out.append(span)
        return out

    def closed_trades(self, start: float, end: float) -> list[ClosedTrade]:
        rows = self._all(
            "SELECT position_id, run_id, base, closed_at, pnl_usd, exit_reason FROM positions"
            " WHERE state = 'closed' AND closed_at >= ? AND closed_at < ?"
            " ORDER BY closed_at, rowid", (start, end))
        return [ClosedTrade(r["position_id"], r["run_id"], r["base"], float(r["closed_at"]),
                            float(r["pnl_usd"] or 0.0), r["exit_reason"]) for r in rows]

    def counter_points(self, run_ids: list[str]) -> list[CounterPoint]:
        if not run_ids:
            return []
        marks = ",".join("?" * len(run_ids))
        rows = self._all(
            "SELECT run_id, ts, json_extract(json, ?) AS errors, json_extract(json, ?) AS hits"
            f" FROM kpi_snapshots WHERE run_id IN ({marks}) ORDER BY run_id, ts, id",
            (EXCHANGE_ERRORS_PATH, RATE_LIMIT_HITS_PATH, *run_ids))
        return [CounterPoint(r["run_id"], float(r["ts"]),
                             None if r["errors"] is None else int(r["errors"]),
                             None if r["hits"] is None else int(r["hits"])) for r in rows]
