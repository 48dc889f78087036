"""Forward-only schema migrations for the SQLite journal.

Rules (R-S6 journal, R-P3 KPI snapshots, R-O5 audit):
- Migrations only move forward; each runs in one IMMEDIATE transaction together
  with its `schema_version` row, so a crash leaves either the old or the new
  schema, never half of one.
- Before migrating a database that already holds anything, the file is copied
  with `VACUUM INTO` to `<path>.bak-v<old>-<utc timestamp>`: that copy is the
  rollback path, because there are no down-migrations.
- A database written by newer code is refused (SchemaTooNew) before anything
  touches the file, so an older binary never "repairs" a newer journal.
- Nothing here drops or deletes rows: start-up must never lose data.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from core.domain.journal_kinds import LEGACY_EVENT_NAMES
from core.errors import SchemaTooNew


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY,"
    " applied_at REAL NOT NULL)"
)

_V1: tuple[str, ...] = (
    """CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        phase INTEGER NOT NULL,
        universe TEXT NOT NULL,
        data_source TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        status TEXT NOT NULL DEFAULT 'running'
            CHECK (status IN ('running','completed','failed','killed','stopped')),
        stop_reason TEXT,
        exit_code INTEGER,
        max_notional_usd TEXT,
        kpi_path TEXT,
        gate_json TEXT)""",
    """CREATE TABLE order_intents (
        client_order_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        venue TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        type TEXT NOT NULL,
        amount TEXT,
        price TEXT,
        cost TEXT,
        purpose TEXT NOT NULL CHECK (purpose IN ('entry','exit','flatten','unwind')),
        position_id TEXT,
        state TEXT NOT NULL DEFAULT 'PENDING'
            CHECK (state IN ('PENDING','OPEN','FILLED','CANCELED','REJECTED','UNKNOWN')),
        exchange_order_id TEXT,
        filled TEXT NOT NULL DEFAULT '0',
        reason TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL)""",
    "CREATE INDEX ix_intents_run_state ON order_intents(run_id, state)",
    "CREATE INDEX ix_intents_state ON order_intents(state)",
    """CREATE TABLE fills (
        venue TEXT NOT NULL,
        trade_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        price TEXT NOT NULL,
        amount TEXT NOT NULL,
        cost TEXT NOT NULL,
        fee TEXT NOT NULL,
        fee_currency TEXT NOT NULL,
        fx TEXT,
        position_id TEXT,
        ts REAL NOT NULL,
        PRIMARY KEY (venue, trade_id))""",
    "CREATE INDEX ix_fills_run ON fills(run_id, ts)",
    """CREATE TABLE positions (
        position_id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        base TEXT NOT NULL,
        direction TEXT NOT NULL,
        qty TEXT NOT NULL,
        state TEXT NOT NULL
            CHECK (state IN ('entering','open','exiting','closed','flat')),
        opened_at REAL NOT NULL,
        closed_at REAL,
        entry_premium_bps REAL,
        expected_edge_bps REAL,
        break_even_bps REAL,
        exit_reason TEXT,
        pnl_usd TEXT,
        fees_usd TEXT)""",
    "CREATE INDEX ix_positions_run_state ON positions(run_id, state)",
    """CREATE TABLE kpi_snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        final INTEGER NOT NULL,
        ts REAL NOT NULL,
        json TEXT NOT NULL)""",
    "CREATE INDEX ix_kpi_run ON kpi_snapshots(run_id, id)",
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        user_id TEXT,
        role TEXT,
        chat_id TEXT,
        surface TEXT,
        command TEXT NOT NULL,
        args TEXT,
        outcome TEXT,
        latency_ms REAL)""",
    """CREATE TABLE flags (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at REAL NOT NULL)""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        run_id TEXT,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL)""",
    "CREATE INDEX ix_events_run_kind ON events(run_id, kind, id)",
)

# Events are facts named in the past tense (core.domain.journal_kinds.EventKind);
# journals written before that used imperative names. Renamed in place, rows kept.
_V2 = tuple(
    f"UPDATE events SET kind = '{new.value}' WHERE kind = '{old}'"
    for old, new in LEGACY_EVENT_NAMES.items()
)

# Append only. Never edit or reorder an entry once released: deployed journals
# have already applied it.
MIGRATIONS: list[Migration] = [
    Migration(1, "initial journal schema", _V1),
    Migration(2, "event kinds in the past tense", _V2),
]


def latest_version(migrations: list[Migration] | None = None) -> int:
    migs = MIGRATIONS if migrations is None else migrations
    return max((m.version for m in migs), default=0)


def _check_sequence(migrations: list[Migration]) -> None:
    # A gap or duplicate would make "version N" mean different schemas on
    # different machines; fail loudly instead.
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..N in order, got {versions}")


async def current_version(conn: aiosqlite.Connection) -> int:
    """Schema version recorded in the file; 0 when nothing has been applied."""
    async with conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_version'"
    ) as cur:
        if await cur.fetchone() is None:
            return 0
    async with conn.execute("SELECT MAX(version) FROM schema_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


async def has_content(conn: aiosqlite.Connection) -> bool:
    """True when the file holds any user table (schema or rows worth keeping)."""
    async with conn.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
    ) as cur:
        row = await cur.fetchone()
    return row is not None and int(row[0]) > 0


def backup_path(db_path: Path, old_version: int, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    candidate = db_path.with_name(f"{db_path.name}.bak-v{old_version}-{stamp}")
    n = 1
    # Two migrations within one second must not overwrite (or fail on) a backup.
    while candidate.exists():
        candidate = db_path.with_name(f"{db_path.name}.bak-v{old_version}-{stamp}-{n}")
        n += 1
    return candidate


async def backup(conn: aiosqlite.Connection, db_path: Path, old_version: int) -> Path:
    """Consistent copy of the live database (includes WAL content)."""
    target = backup_path(db_path, old_version)
    await conn.execute("VACUUM INTO ?", (str(target),))
    return target


async def migrate(
    conn: aiosqlite.Connection,
    db_path: Path,
    now: float,
    migrations: list[Migration] | None = None,
) -> tuple[int, int, Path | None]:
    """Apply pending migrations. Returns (old_version, new_version, backup_or_None).

    The connection must be in autocommit mode (isolation_level=None) so the
    explicit BEGIN IMMEDIATE / COMMIT below are the only transactions.
    """
    migs = MIGRATIONS if migrations is None else migrations
    _check_sequence(migs)
    known = latest_version(migs)
    old = await current_version(conn)
    if old > known:
        raise SchemaTooNew(old, known)
    pending = [m for m in migs if m.version > old]
    if not pending:
        return old, old, None
    bak: Path | None = None
    if await has_content(conn):
        bak = await backup(conn, db_path, old)
    for m in pending:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while we waited for the lock.
            await conn.execute(_SCHEMA_VERSION_DDL)
            if await current_version(conn) >= m.version:
                await conn.execute("COMMIT")
                continue
            for stmt in m.statements:
                await conn.execute(stmt)
            await conn.execute(
                "INSERT INTO schema_version(version, applied_at) VALUES (?, ?)",
                (m.version, now),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return old, await current_version(conn), bak
