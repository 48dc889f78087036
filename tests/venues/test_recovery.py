"""Start-up recovery (crash safety): journal intents resolved against the emulator by
client order id, foreign orders cancelled, paper leftovers closed in the journal.

A "crashed" process is simulated by one CcxtExchange placing orders and a fresh
CcxtExchange (no memory of them) running `recover_live`, as a restart would.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_service
from core.domain.models import OrderRequest, OrderStatus, OrderType, Side, Venue
from core.journal.sqlite_store import SqliteStore
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.recovery import close_paper_orphans, recover_live
from tests.venues.support import SYMBOL, admin, emu_settings, emulator

RUN = "20260101T000000Z-live-p1-beef"
FEE = {"binance": 10.0, "upbit": 5.0}
AMOUNT = 0.001  # BTC: ~$90 / ~130k KRW, above both venues' minimums


def venue_client(emu: Any, venue: str) -> CcxtExchange:
    key, secret = emu.keys[venue]
    ex = CcxtExchange(Venue(venue), emu.url, key, secret, FEE[venue])
    ex.ccxt.enableRateLimit = False
    return ex


async def journal(store: SqliteStore, cid: str, venue: str, side: str, type_: str,
                  amount: float, price: float | None, state: str, run_id: str = RUN,
                  position_id: str | None = "pos-1") -> None:
    await store.record_intent(cid, run_id, venue, SYMBOL[venue], side, type_, amount, price,
                              None, "entry", position_id, time.time())
    if state != "PENDING":
        await store.update_intent(cid, state, updated_at=time.time())


async def far_limit_buy(ex: CcxtExchange, venue: str, cid: str) -> tuple[Any, float]:
    book = await ex.fetch_order_book(SYMBOL[venue], 5)
    price = book.best_bid * 0.9
    order = await ex.create_order(OrderRequest(SYMBOL[venue], Side.BUY, OrderType.LIMIT, AMOUNT,
                                               cid, price))
    return order, price


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_recover_live_resolves_every_intent_by_client_id(tmp_path: Path,
                                                                venue: str) -> None:
    async with emulator(autostep=False) as emu:
        store = await SqliteStore.open(tmp_path / "j.sqlite3")
        before = venue_client(emu, venue)
        after = venue_client(emu, venue)
        try:
            await store.create_run(RUN, "live", 1, "top10", "real", time.time() - 60)
            await before.load_markets()
            sym = SYMBOL[venue]
            # (a) sent, then filled on the venue while "we" were down: journal says PENDING.
            await journal(store, "rc-filled", venue, "sell", "market", AMOUNT, None, "PENDING")
            await before.create_order(OrderRequest(sym, Side.SELL, OrderType.MARKET, AMOUNT,
                                                   "rc-filled"))
            emu.step(2)  # the emulator matches on its next book
            # (b) sent and still resting: journal says OPEN.
            await journal(store, "rc-open", venue, "buy", "limit", AMOUNT, None, "OPEN")
            open_order, _ = await far_limit_buy(before, venue, "rc-open")
            # (c) journaled, never reached the venue: UNKNOWN.
            await journal(store, "rc-never", venue, "buy", "limit", AMOUNT, 1.0, "UNKNOWN")
            # (d) a stranger's order on the account: not in the journal at all.
            foreign, _ = await far_limit_buy(before, venue, "foreign-1")
            emu.step(1)
            assert {o.client_order_id for o in await before.fetch_open_orders()} == {
                "rc-open", "foreign-1"}

            await after.load_markets()
            report = await recover_live(store, {Venue(venue): after}, time.time())

            assert report.complete, report.as_dict()
            states = {r["client_order_id"]: r["state"] for r in report.resolved}
            assert states == {"rc-filled": "FILLED", "rc-open": "CANCELED",
                              "rc-never": "REJECTED"}
            assert report.unresolved == []
            assert [(f["client_order_id"], f["id"]) for f in report.foreign_cancelled] == [
                ("foreign-1", foreign.id)]
            # The journal: states, exchange ids and fills recorded from the venue.
            a = await store.get_intent("rc-filled")
            assert a is not None and a["state"] == "FILLED" and a["exchange_order_id"]
            assert float(a["filled"]) == pytest.approx(AMOUNT)
            fills = await store.fills(RUN)
            assert [f["client_order_id"] for f in fills] == ["rc-filled"]
            assert sum(float(f["amount"]) for f in fills) == pytest.approx(AMOUNT)
            f = fills[0]
            assert f["side"] == "sell" and f["symbol"] == sym and f["position_id"] == "pos-1"
            assert float(f["cost"]) > 0 and float(f["fee"]) > 0
            assert float(f["fee"]) == pytest.approx(float(f["cost"]) * FEE[venue] / 1e4,
                                                    rel=1e-3)
            assert f["ts"] > 1e9  # seconds, from the venue's trade time
            b = await store.get_intent("rc-open")
            assert b is not None and b["state"] == "CANCELED"
            assert b["exchange_order_id"] == open_order.id
            c = await store.get_intent("rc-never")
            assert c is not None and c["state"] == "REJECTED"
            assert c["reason"] == "never reached the venue"
            # The venue agrees: nothing open, ours and the stranger's cancelled.
            assert await after.fetch_open_orders() == []
            rows = {r["client_order_id"]: r for r in
                    (await admin(emu, "GET", f"/admin/orders?venue={venue}"))[venue]}
            assert rows["rc-open"]["status"] == "canceled"
            assert rows["foreign-1"]["status"] == "canceled"
            assert rows["rc-filled"]["status"] == "closed"
            assert "rc-never" not in rows  # recovery never sends an intent again
            # Running it again changes nothing and records no fill twice.
            again = await recover_live(store, {Venue(venue): after}, time.time())
            assert again.complete and again.resolved == [] and again.foreign_cancelled == []
            assert len(await store.fills(RUN)) == 1
        finally:
            await before.close()
            await after.close()
            await store.close()


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_recover_live_partial_fill_is_cancelled_with_its_fill(tmp_path: Path,
                                                                     venue: str) -> None:
    async with emulator(autostep=False) as emu:
        store = await SqliteStore.open(tmp_path / "j.sqlite3")
        before, after = venue_client(emu, venue), venue_client(emu, venue)
        try:
            await store.create_run(RUN, "live", 1, "top10", "real", time.time() - 60)
            await before.load_markets()
            await after.load_markets()
            book = await before.fetch_order_book(SYMBOL[venue], 5)
            await journal(store, "rc-part", venue, "buy", "limit", AMOUNT, None, "OPEN")
            emu.add_fault(venue=venue, kind="partial_fill", ratio=0.5, count=1)
            # Marketable limit buy: half fills, the rest keeps resting.
            order = await before.create_order(OrderRequest(
                SYMBOL[venue], Side.BUY, OrderType.LIMIT, AMOUNT, "rc-part",
                book.best_ask * 1.001))
            emu.step(1)
            now = await before.fetch_order(order.id, SYMBOL[venue])
            if not (0 < now.filled < AMOUNT and now.status is OrderStatus.OPEN):
                pytest.skip(f"the emulator did not leave a partial fill open: {now}")
            report = await recover_live(store, {Venue(venue): after}, time.time())
            assert report.complete, report.as_dict()
            row = await store.get_intent("rc-part")
            assert row is not None and row["state"] == "CANCELED"
            assert 0 < float(row["filled"]) < AMOUNT
            fills = await store.fills(RUN)
            assert sum(float(f["amount"]) for f in fills) == pytest.approx(float(row["filled"]))
            assert await after.fetch_open_orders() == []
        finally:
            await before.close()
            await after.close()
            await store.close()


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_recover_live_venue_read_failure_leaves_it_unresolved(tmp_path: Path,
                                                                    venue: str) -> None:
    async with emulator(autostep=False) as emu:
        store = await SqliteStore.open(tmp_path / "j.sqlite3")
        before, after = venue_client(emu, venue), venue_client(emu, venue)
        try:
            await store.create_run(RUN, "live", 1, "top10", "real", time.time() - 60)
            await before.load_markets()
            await after.load_markets()
            await journal(store, "rc-open", venue, "buy", "limit", AMOUNT, None, "OPEN")
            await far_limit_buy(before, venue, "rc-open")
            path = "/api/v3/order" if venue == "binance" else "/v1/order"
            emu.add_fault(venue=venue, kind="maintenance", count=None, path=path, method="GET")
            report = await recover_live(store, {Venue(venue): after}, time.time())
            assert not report.complete
            assert report.as_dict()["complete"] is False
            assert [u["client_order_id"] for u in report.unresolved
                    if "client_order_id" in u] == ["rc-open"]
            assert "ExchangeNotAvailable" in report.unresolved[0]["why"]
            row = await store.get_intent("rc-open")
            assert row is not None and row["state"] == "OPEN"  # untouched, not guessed
            # Nothing was cancelled blindly while the venue could not be read.
            emu.clear_faults()
            assert [o.client_order_id for o in await after.fetch_open_orders()] == ["rc-open"]
            # With the venue back, a second pass resolves it.
            report = await recover_live(store, {Venue(venue): after}, time.time())
            assert report.complete and report.resolved[0]["state"] == "CANCELED"
        finally:
            await before.close()
            await after.close()
            await store.close()


async def test_recover_live_unknown_venue_is_unresolved(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "j.sqlite3")
    try:
        await store.create_run(RUN, "live", 1, "top10", "real", time.time())
        await journal(store, "rc-x", "upbit", "buy", "limit", AMOUNT, 1.0, "OPEN")
        report = await recover_live(store, {}, time.time())
        assert not report.complete
        assert report.unresolved == [{"client_order_id": "rc-x", "why": "no such venue"}]
    finally:
        await store.close()


async def _orphan_journal(store: SqliteStore) -> None:
    now = time.time()
    paper, live = "20260101T000000Z-paper-p1-0001", RUN
    await store.create_run(paper, "paper", 1, "top10", "sim", now - 100)
    await store.create_run(live, "live", 1, "top10", "real", now - 50)
    await journal(store, "p-pending", "binance", "buy", "limit", 0.01, 1.0, "PENDING", paper)
    await journal(store, "p-open", "upbit", "buy", "limit", 0.01, 1.0, "OPEN", paper)
    await journal(store, "p-unknown", "upbit", "sell", "limit", 0.01, 1.0, "UNKNOWN", paper)
    await journal(store, "p-filled", "upbit", "sell", "limit", 0.01, 1.0, "FILLED", paper)
    await journal(store, "l-open", "binance", "buy", "limit", 0.01, 1.0, "OPEN", live)
    for pid, run, state in (("pp-1", paper, "open"), ("pp-2", paper, "entering"),
                            ("pp-3", paper, "closed"), ("lp-1", live, "open")):
        await store.upsert_position(position_id=pid, run_id=run, base="BTC",
                                    direction="sell_upbit", qty=0.01, state=state,
                                    opened_at=now - 10, entry_premium_bps=10.0,
                                    expected_edge_bps=5.0, break_even_bps=15.0)


async def _check_orphans_closed(store: SqliteStore) -> None:
    for cid in ("p-pending", "p-open", "p-unknown"):
        row = await store.get_intent(cid)
        assert row is not None and row["state"] == "CANCELED", row
        assert row["reason"] == "paper venue ended with its process"
    assert (await store.get_intent("p-filled") or {})["state"] == "FILLED"
    assert (await store.get_intent("l-open") or {})["state"] == "OPEN"  # live: left to recovery
    pos = {p["position_id"]: p for p in await store.positions(None)}
    assert pos["pp-1"]["state"] == pos["pp-2"]["state"] == "flat"
    assert pos["pp-1"]["exit_reason"] == "paper venue ended with its process"
    assert pos["pp-3"]["state"] == "closed"
    assert pos["lp-1"]["state"] == "open"


async def test_close_paper_orphans(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "j.sqlite3")
    try:
        await _orphan_journal(store)
        assert await close_paper_orphans(store, time.time()) == 3
        await _check_orphans_closed(store)
        assert await close_paper_orphans(store, time.time()) == 0  # idempotent
    finally:
        await store.close()


async def test_service_start_closes_paper_orphans(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "arbops.sqlite3")
    try:
        await _orphan_journal(store)
    finally:
        await store.close()
    async with emulator(autostep=False) as emu:
        service = await build_service(emu_settings(emu, tmp_path))
        try:
            await _check_orphans_closed(service.store)
        finally:
            await service.store.close()
