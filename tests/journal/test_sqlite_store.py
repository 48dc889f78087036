"""SqliteStore: real SQLite files, durability, migrations and round-trips."""
from __future__ import annotations

import contextlib
import json
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from core.journal import migrations as mig
from core.journal.sqlite_store import SchemaTooNew, SqliteStore


def _q(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Query on a second, independent sqlite3 connection (closed afterwards)."""
    with contextlib.closing(sqlite3.connect(path)) as c:
        return c.execute(sql, params).fetchall()


@pytest.fixture
async def store(tmp_path: Path):
    s = await SqliteStore.open(tmp_path / "sub" / "arbops.db")
    yield s
    await s.close()


async def test_open_creates_parent_and_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "j.db"
    s = await SqliteStore.open(path)
    try:
        assert path.exists()
        assert await s.pragma("journal_mode") == "wal"
        assert await s.pragma("synchronous") == 2  # FULL
        assert await s.pragma("foreign_keys") == 1
        assert await s.pragma("busy_timeout") == 5000
        assert await s.schema_version() == mig.latest_version()
        assert s.last_backup is None  # fresh file: nothing to back up
    finally:
        await s.close()
    # WAL is persistent in the file; a second connection sees it.
    assert _q(path, "PRAGMA journal_mode")[0][0] == "wal"
    assert _q(path, "SELECT version FROM schema_version") == [
        (v,) for v in range(1, mig.latest_version() + 1)]
    assert not list(tmp_path.glob("a/b/*.bak-*"))


async def test_runs_round_trip(store: SqliteStore) -> None:
    assert await store.last_run() is None
    await store.create_run("r1", "paper", 1, "top5", "sim", 100.0, max_notional_usd=50.0)
    await store.create_run("r2", "live", 2, "top3", "real", 200.0, max_notional_usd=0.1)
    r = await store.get_run("r1")
    assert r is not None
    assert r["status"] == "running" and r["ended_at"] is None
    assert r["max_notional_usd"] == "50.0"
    assert (await store.get_run("r2"))["max_notional_usd"] == repr(0.1)  # type: ignore[index]
    assert (await store.last_run())["run_id"] == "r2"  # type: ignore[index]
    await store.finish_run("r1", 160.0, "completed", "duration", 0, "/k.json", '{"ok": true}')
    r = await store.get_run("r1")
    assert r is not None
    assert (r["ended_at"], r["status"], r["stop_reason"], r["exit_code"], r["kpi_path"]) == (
        160.0, "completed", "duration", 0, "/k.json")
    assert json.loads(r["gate_json"]) == {"ok": True}
    assert await store.get_run("nope") is None
    with pytest.raises(KeyError):
        await store.finish_run("nope", 1.0, "failed", None, 1, None)
    with pytest.raises(sqlite3.IntegrityError):
        await store.create_run("r3", "paper", 1, "top5", "sim", 1.0, status="bogus")


async def test_intent_is_durable_before_send(store: SqliteStore) -> None:
    await store.record_intent("cid-1", "r1", "upbit", "BTC/KRW", "buy", "market",
                              None, None, 150000.0, "entry", "p1", 10.0)
    # A separate connection (as after a crash) sees it the moment the call returns.
    rows = _q(store.path, "SELECT state, cost, amount FROM order_intents"
                          " WHERE client_order_id='cid-1'")
    assert rows == [("PENDING", "150000.0", None)]


async def test_intent_lifecycle(store: SqliteStore) -> None:
    await store.record_intent("c1", "r1", "binance", "BTC/USDT", "sell", "limit",
                              0.1, 65000.5, None, "entry", "p1", 10.0)
    await store.record_intent("c2", "r1", "upbit", "BTC/KRW", "buy", "limit",
                              0.1, 9.1e7, None, "exit", "p1", 11.0)
    await store.record_intent("c3", "r2", "upbit", "ETH/KRW", "buy", "limit",
                              1, 5e6, None, "flatten", None, 12.0)
    i = await store.get_intent("c1")
    assert i is not None
    assert (i["amount"], i["price"], i["filled"], i["state"]) == ("0.1", "65000.5", "0",
                                                                   "PENDING")
    assert Decimal(i["amount"]) * Decimal(i["price"]) == Decimal("6500.05")
    await store.update_intent("c1", "OPEN", exchange_order_id="x1", updated_at=20.0)
    await store.update_intent("c1", "FILLED", filled=0.1, updated_at=21.0)
    i = await store.get_intent("c1")
    assert i is not None
    assert (i["state"], i["exchange_order_id"], i["filled"], i["updated_at"]) == (
        "FILLED", "x1", "0.1", 21.0)
    await store.update_intent("c2", "REJECTED", reason="min notional", updated_at=22.0)
    assert (await store.get_intent("c2"))["reason"] == "min notional"  # type: ignore[index]
    pending = await store.intents_in_states(["PENDING", "OPEN", "UNKNOWN"])
    assert [x["client_order_id"] for x in pending] == ["c3"]
    assert await store.intents_in_states(["PENDING"], run_id="r1") == []
    assert {x["client_order_id"] for x in await store.intents_in_states(
        ["FILLED", "REJECTED"], run_id="r1")} == {"c1", "c2"}
    assert await store.intents_in_states([]) == []
    assert await store.get_intent("missing") is None
    with pytest.raises(KeyError):
        await store.update_intent("missing", "OPEN", updated_at=1.0)
    with pytest.raises(sqlite3.IntegrityError):
        await store.update_intent("c3", "WEIRD", updated_at=1.0)
    with pytest.raises(sqlite3.IntegrityError):  # client order ids are unique
        await store.record_intent("c3", "r2", "upbit", "ETH/KRW", "buy", "limit",
                                  1, 5e6, None, "flatten", None, 12.0)


async def test_record_fill_idempotent(store: SqliteStore) -> None:
    args = {"venue": "binance", "trade_id": "t1", "client_order_id": "c1", "run_id": "r1",
            "symbol": "BTC/USDT", "side": "sell", "price": 65000.5, "amount": 0.1,
            "cost": 6500.05, "fee": 6.5, "fee_currency": "USDT", "fx": 1385.5,
            "position_id": "p1", "ts": 30.0}
    assert await store.record_fill(**args) is True
    assert await store.record_fill(**args) is False
    assert await store.record_fill(**{**args, "venue": "upbit"}) is True  # key is (venue, id)
    await store.record_fill(**{**args, "trade_id": "t0", "run_id": "r2"})
    fills = await store.fills("r1")
    assert len(fills) == 2
    f = fills[0]
    assert (f["price"], f["amount"], f["cost"], f["fee"], f["fx"]) == (
        "65000.5", "0.1", "6500.05", "6.5", "1385.5")
    assert _q(store.path, "SELECT COUNT(*) FROM fills") == [(3,)]


async def test_positions_upsert(store: SqliteStore) -> None:
    await store.upsert_position("p1", "r1", "BTC", "sell_upbit_buy_binance", 0.1, "entering",
                                10.0, 85.0, 40.0, 25.0)
    await store.upsert_position("p2", "r1", "ETH", "buy_upbit_sell_binance", 1.5, "open",
                                11.0, -60.0, 30.0, 25.0)
    await store.upsert_position("p1", "r1", "BTC", "sell_upbit_buy_binance", 0.1, "closed",
                                10.0, 85.0, 40.0, 25.0, closed_at=50.0,
                                exit_reason="take_profit", pnl_usd=3.25, fees_usd=0.75)
    # A later partial update keeps the recorded outcome.
    await store.upsert_position("p1", "r1", "BTC", "sell_upbit_buy_binance", 0.0, "flat",
                                10.0, 85.0, 40.0, 25.0)
    all_ = await store.positions("r1")
    assert [p["position_id"] for p in all_] == ["p1", "p2"]
    p1 = all_[0]
    assert (p1["state"], p1["qty"], p1["closed_at"], p1["exit_reason"], p1["pnl_usd"],
            p1["fees_usd"]) == ("flat", "0.0", 50.0, "take_profit", "3.25", "0.75")
    assert p1["entry_premium_bps"] == 85.0
    assert [p["position_id"] for p in await store.positions("r1", ["open", "entering"])] == ["p2"]
    assert await store.positions("r2") == []
    assert len(await store.positions(None)) == 2
    assert await store.positions("r1", []) == []


async def test_kpi_snapshots(store: SqliteStore) -> None:
    assert await store.latest_kpi() is None
    await store.save_kpi("r1", False, 60.0, '{"final": false}')
    await store.save_kpi("r2", False, 61.0, '{"final": false, "r": 2}')
    kid = await store.save_kpi("r1", True, 120.0, '{"final": true}')
    k = await store.latest_kpi("r1")
    assert k is not None
    assert (k["id"], k["final"], k["ts"], json.loads(k["json"])) == (kid, 1, 120.0,
                                                                      {"final": True})
    assert (await store.latest_kpi())["id"] == kid  # type: ignore[index]
    assert (await store.latest_kpi("r2"))["final"] == 0  # type: ignore[index]
    assert await store.latest_kpi("zzz") is None


async def test_audit_newest_first(store: SqliteStore) -> None:
    await store.audit(1.0, "42", "admin", "-100", "telegram", "/status", "", "ok", 3.5)
    await store.audit(1.0, 43, "viewer", -100, "telegram", "/kill", ["now"], "denied", 1.0)
    await store.audit(2.0, "cli", "admin", None, "cli", "arm", '{"cap": 10}', "ok", None)
    rows = await store.audit_rows(10)
    assert [r["command"] for r in rows] == ["arm", "/kill", "/status"]
    assert rows[1]["user_id"] == "43" and rows[1]["chat_id"] == "-100"
    assert json.loads(rows[1]["args"]) == ["now"]
    assert rows[2]["latency_ms"] == 3.5 and rows[2]["outcome"] == "ok"
    assert [r["command"] for r in await store.audit_rows(2)] == ["arm", "/kill"]


async def test_flags(store: SqliteStore) -> None:
    assert await store.get_flag("trading_state") is None
    await store.set_flag("trading_state", "HALTED", 1.0)
    await store.set_flag("trading_state", "REDUCING", 2.0)
    assert await store.get_flag("trading_state") == "REDUCING"
    assert _q(store.path, "SELECT updated_at FROM flags") == [(2.0,)]
    await store.clear_flag("trading_state")
    await store.clear_flag("trading_state")  # idempotent
    assert await store.get_flag("trading_state") is None


async def test_events(store: SqliteStore) -> None:
    await store.record_event(1.0, "r1", "guard", {"name": "stale", "action": "PAUSE"})
    await store.record_event(2.0, "r1", "fill", {"qty": 0.1})
    await store.record_event(3.0, None, "kill", {"by": "cli", "d": Decimal("1.5")})
    ev = await store.events()
    assert [e["kind"] for e in ev] == ["kill", "fill", "guard"]
    assert ev[0]["payload"] == {"by": "cli", "d": "1.5"} and ev[0]["run_id"] is None
    assert [e["kind"] for e in await store.events(run_id="r1")] == ["fill", "guard"]
    assert [e["payload"] for e in await store.events(kind="guard")] == [
        {"name": "stale", "action": "PAUSE"}]
    assert len(await store.events(limit=1)) == 1


async def test_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    s = await SqliteStore.open(path)
    await s.create_run("r1", "paper", 1, "top5", "sim", 1.0)
    await s.record_intent("c1", "r1", "upbit", "BTC/KRW", "buy", "limit", 0.1, 9e7, None,
                          "entry", None, 1.0)
    await s.set_flag("kill", "1", 1.0)
    await s.close()
    for _ in range(2):
        s = await SqliteStore.open(path)
        try:
            assert (await s.get_run("r1")) is not None
            assert (await s.get_intent("c1"))["state"] == "PENDING"  # type: ignore[index]
            assert await s.get_flag("kill") == "1"
            assert s.last_backup is None  # same version: no migration, no backup
        finally:
            await s.close()
    assert _q(path, "SELECT COUNT(*) FROM schema_version") == [(mig.latest_version(),)]


async def test_schema_too_new_refused_and_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    known = mig.latest_version()
    with contextlib.closing(sqlite3.connect(path)) as c:
        c.execute("CREATE TABLE schema_version(version INTEGER PRIMARY KEY, applied_at REAL)")
        c.execute("INSERT INTO schema_version VALUES (?, 0)", (known + 1,))
        c.execute("CREATE TABLE future(x)")
        c.execute("INSERT INTO future VALUES ('keep me')")
        c.commit()
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew) as ei:
        await SqliteStore.open(path)
    assert ei.value.found == known + 1 and ei.value.known == known
    assert str(known + 1) in str(ei.value) and "newer" in str(ei.value)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.bak-*"))


async def test_migration_from_v0_with_data_backs_up_first(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    with contextlib.closing(sqlite3.connect(path)) as c:  # pre-versioning file with data
        c.execute("CREATE TABLE legacy(x TEXT)")
        c.execute("INSERT INTO legacy VALUES ('old row')")
        c.commit()
    s = await SqliteStore.open(path)
    try:
        assert s.last_backup is not None
        assert s.last_backup.name.startswith("j.db.bak-v0-")
        assert await s.schema_version() == mig.latest_version()
    finally:
        await s.close()
    baks = list(tmp_path.glob("j.db.bak-v0-*"))
    assert baks == [s.last_backup]
    assert _q(baks[0], "SELECT x FROM legacy") == [("old row",)]
    assert _q(path, "SELECT x FROM legacy") == [("old row",)]  # never deleted


async def test_migration_to_the_next_version_backs_up_old_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.db"
    n = mig.latest_version()
    s = await SqliteStore.open(path)
    await s.create_run("r1", "paper", 1, "top5", "sim", 1.0)
    await s.record_fill("upbit", "t1", "c1", "r1", "BTC/KRW", "buy", 9e7, 0.1, 9e6, 0.0,
                        "KRW", 1385.0, None, 2.0)
    await s.close()

    nxt = mig.Migration(n + 1, "test: add runs.note",
                        ("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'v2'",))
    monkeypatch.setattr(mig, "MIGRATIONS", [*mig.MIGRATIONS, nxt])
    s = await SqliteStore.open(path)
    try:
        assert await s.schema_version() == n + 1
        assert (await s.get_run("r1"))["note"] == "v2"  # type: ignore[index]
        assert len(await s.fills("r1")) == 1
        bak = s.last_backup
    finally:
        await s.close()
    assert bak is not None and bak.name.startswith(f"j.db.bak-v{n}-")
    # The backup is the version-n file, data included: the rollback path.
    assert _q(bak, "SELECT MAX(version) FROM schema_version") == [(n,)]
    assert _q(bak, "SELECT run_id FROM runs") == [("r1",)]
    assert "note" not in [r[1] for r in _q(bak, "PRAGMA table_info(runs)")]
    assert _q(bak, "SELECT COUNT(*) FROM fills") == [(1,)]

    # Older code (only versions up to n known) now refuses the newer file.
    monkeypatch.setattr(mig, "MIGRATIONS", list(mig.MIGRATIONS[:n]))
    with pytest.raises(SchemaTooNew):
        await SqliteStore.open(path)


async def test_failed_migration_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.db"
    s = await SqliteStore.open(path)
    await s.create_run("r1", "paper", 1, "top5", "sim", 1.0)
    await s.close()
    n = mig.latest_version()
    bad = mig.Migration(n + 1, "broken", ("ALTER TABLE runs ADD COLUMN a TEXT", "NOT SQL"))
    monkeypatch.setattr(mig, "MIGRATIONS", [*mig.MIGRATIONS, bad])
    with pytest.raises(sqlite3.OperationalError):
        await SqliteStore.open(path)
    assert _q(path, "SELECT MAX(version) FROM schema_version") == [(n,)]
    assert "a" not in [r[1] for r in _q(path, "PRAGMA table_info(runs)")]
    assert _q(path, "SELECT run_id FROM runs") == [("r1",)]


def test_open_has_no_destructive_sql() -> None:
    import inspect

    from core.journal import sqlite_store

    src = inspect.getsource(sqlite_store.SqliteStore.open) + inspect.getsource(mig)
    for word in ("DROP ", "DELETE ", "TRUNCATE"):
        assert word not in src.upper()


async def test_v1_journal_events_are_renamed_to_past_tense_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal written before the event vocabulary became EventKind keeps its rows and
    their meaning: 'kill' becomes 'killed', so the ladder still sees the kill."""
    from core.domain.journal_kinds import LEGACY_EVENT_NAMES, EventKind

    path = tmp_path / "j.db"
    monkeypatch.setattr(mig, "MIGRATIONS", list(mig.MIGRATIONS[:1]))
    s = await SqliteStore.open(path)
    for i, old in enumerate(LEGACY_EVENT_NAMES):
        await s.record_event(float(i), None, old, {"n": i})
    await s.record_event(99.0, None, "order_refused", {"n": 99})
    await s.close()
    monkeypatch.undo()
    s = await SqliteStore.open(path)
    try:
        kinds = [e["kind"] for e in sorted(await s.events(limit=100), key=lambda e: e["ts"])]
        assert kinds == [*LEGACY_EVENT_NAMES.values(), EventKind.ORDER_REFUSED]
        assert [e["payload"]["n"] for e in await s.events(kind=EventKind.KILLED)] == [
            list(LEGACY_EVENT_NAMES).index("kill")]
    finally:
        await s.close()
