"""R-K2: `arbops kill` with no service running cancels on the venues itself, from
the journal and from the venues' own open-order lists (here: the emulator)."""
from __future__ import annotations

import time

from bot.drill.emulator import start_emulator
from core.domain.models import OrderRequest, OrderType, Side, Venue
from core.journal.sqlite_store import SqliteStore
from core.venues.ccxt_exchange import CcxtExchange
from tests.helpers.procs import arbops_env, short_data_dir
from tests.venues.support import admin, emu_env
from tests.venues.test_reconcile import acli


async def test_offline_kill_cancels_journal_and_foreign_orders_on_the_venues() -> None:
    emu = await start_emulator(top_n=10, autostep=True)
    try:
        with short_data_dir("okl") as d:
            up = CcxtExchange(Venue.UPBIT, emu.url, *emu.keys["upbit"], fee_bps=5)
            try:
                markets = await up.load_markets()
                symbol = next(s for s in markets if s.endswith("/KRW") and s != "USDT/KRW")
                book = await up.fetch_order_book(symbol, 5)
                price = book.best_bid * 0.95  # resting, far from the market
                qty = up.rules(symbol).round_amount(20_000 / price)
                ours = await up.create_order(OrderRequest(
                    symbol, Side.BUY, OrderType.LIMIT, qty, "ours-1", price))
                foreign = await up.create_order(OrderRequest(
                    symbol, Side.BUY, OrderType.LIMIT, qty, "someone-else-1", price))
            finally:
                await up.close()
            store = await SqliteStore.open(d / "arbops.sqlite3")
            try:
                run = "20260101T000000Z-live-p1-dead"
                await store.create_run(run, "live", 1, "top10", "real", time.time())
                await store.record_intent(
                    client_order_id="ours-1", run_id=run, venue="upbit", symbol=symbol,
                    side="buy", type="limit", amount=qty, price=price, cost=None,
                    purpose="entry", position_id=None, created_at=time.time())
                await store.update_intent("ours-1", "OPEN", exchange_order_id=ours.id)
            finally:
                await store.close()
            received = {o["client_order_id"] for o in (await admin(emu, "GET", "/admin/orders"))
                        ["upbit"]}
            assert {"ours-1", "someone-else-1"} <= received

            rc, out, err = await acli(["kill", "--reason", "service down"], d,
                                      arbops_env(d, emu_env(emu)))
            assert rc == 0, (out, err)
            assert "no engine was running" in out and out.startswith("HALTED")
            assert "1 resolved, 1 other order(s) cancelled" in out
            assert "upbit: 0 order(s) cancelled, 0 open" in out

            up = CcxtExchange(Venue.UPBIT, emu.url, *emu.keys["upbit"], fee_bps=5)
            try:
                await up.load_markets()
                assert await up.fetch_open_orders() == []
                assert (await up.fetch_order(foreign.id, symbol)).status.done
            finally:
                await up.close()
            store = await SqliteStore.open(d / "arbops.sqlite3")
            try:
                assert (await store.get_intent("ours-1"))["state"] == "CANCELED"
                assert (await store.get_flag("trading_state") or "").startswith("HALTED")
            finally:
                await store.close()
    finally:
        await emu.stop()
