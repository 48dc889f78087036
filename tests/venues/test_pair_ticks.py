"""Upbit's per-pair ticks (issue #15 item 7) and its batch cancel read back.

Upbit may give a pair its own tick (USDT/KRW: 0.5 KRW where the table says 1);
/v1/orderbook/instruments states each pair's tick at its current price. The
adapter reads it at load (and again in the background when stale), uses it in
that price band and falls back to the published table when it cannot.
"""
from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest

from core.domain.models import OrderRequest, OrderStatus, OrderType, Side, Venue
from core.errors import OrderRejected
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.rules import UpbitKrwRules, upbit_band, upbit_tick
from tests.venues.support import emulator


def test_a_pair_tick_holds_in_the_band_it_was_read_in() -> None:
    rules = UpbitKrwRules("BTC/KRW", pair_tick=("5000", "150000000"))  # table: 1,000
    assert rules.pair_tick == (Decimal(2_000_000), Decimal("Infinity"), Decimal(5000))
    assert rules.round_price(150_003_700.0, Side.BUY) == 150_000_000.0
    assert rules.round_price(150_003_700.0, Side.SELL) == 150_005_000.0
    # Below the band the table decides again (the price moved since it was read).
    assert rules.round_price(1_500_700.0, Side.BUY) == 1_500_000.0
    # USDT/KRW's listed exception: its band is the exception's, not the table's.
    assert upbit_band(Decimal(1400), "USDT/KRW") == (Decimal(1000), Decimal(10000))
    usdt = UpbitKrwRules("USDT/KRW", pair_tick=("0.5", "1400"))
    assert usdt.round_price(1400.74, Side.BUY) == 1400.5
    with pytest.raises(Exception, match="tick"):
        rules.check(Side.BUY, OrderType.LIMIT, 0.001, 150_001_000.0, None, 150_000_000.0)


async def test_orders_use_the_pairs_own_tick_and_fall_back_to_the_table() -> None:
    async with emulator(autostep=False) as emu:
        bid = emu.core.book("upbit", "BTC").best_bid  # type: ignore[union-attr]
        table = upbit_tick(Decimal(repr(bid)), "BTC/KRW")
        coarse = table * 5  # the venue lists BTC/KRW with a tick 5x the table's
        emu.core.venues["upbit"].tick_overrides["BTC/KRW"] = float(coarse)
        key, secret = emu.keys["upbit"]
        ex = CcxtExchange(Venue.UPBIT, emu.url, key, secret, fee_bps=5.0)
        blind = CcxtExchange(Venue.UPBIT, emu.url, key, secret, fee_bps=5.0)
        try:
            await ex.load_markets()
            rules = ex.rules("BTC/KRW")
            assert isinstance(rules, UpbitKrwRules) and rules.pair_tick is not None
            assert rules.pair_tick[2] == coarse
            # A table price that is not on the pair's tick: k x table, k not a multiple of 5.
            k = int(Decimal(repr(bid * 0.95)) / table)
            k -= 1 if k % 5 == 0 else 0
            off = float(k * table)
            amount = round(20_000 / off, 8)
            placed = await ex.create_order(OrderRequest(
                "BTC/KRW", Side.BUY, OrderType.LIMIT, amount, f"pt-{uuid.uuid4().hex[:12]}", off))
            assert placed.status is OrderStatus.OPEN
            assert placed.price is not None and Decimal(repr(placed.price)) % coarse == 0
            assert placed.price <= off  # rounded passively
            # Without the instruments (unreadable at load) the table applies: refused.
            emu.add_fault(venue="upbit", kind="maintenance", count=1,
                          path="/v1/orderbook/instruments")
            await blind.load_markets()
            assert blind.rules("BTC/KRW").pair_tick is None  # type: ignore[attr-defined]
            with pytest.raises(OrderRejected, match="invalid_price"):
                await blind.create_order(OrderRequest(
                    "BTC/KRW", Side.BUY, OrderType.LIMIT, amount,
                    f"pt-{uuid.uuid4().hex[:12]}", off))
            # Stale ticks are read again in the background, never on an order's path.
            emu.core.venues["upbit"].tick_overrides["BTC/KRW"] = float(table * 10)
            ex.pair_ticks.ttl_s = 0.0
            # On both the old and the new tick, whatever the sim's price: the order must
            # go through while the refresh happens beside it.
            await ex.create_order(OrderRequest(
                "BTC/KRW", Side.BUY, OrderType.LIMIT, amount, f"pt-{uuid.uuid4().hex[:12]}",
                float((k // 10 - 1) * 10 * table)))
            for _ in range(50):
                fresh = ex.rules("BTC/KRW")
                if isinstance(fresh, UpbitKrwRules) and fresh.pair_tick is not None and \
                        fresh.pair_tick[2] == table * 10:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the pair's tick was not refreshed")
        finally:
            await ex.close()
            await blind.close()


async def test_batch_cancel_is_an_acceptance_read_back_for_what_happened() -> None:
    """Upbit's batch DELETE accepts cancels; the venue does them at its next book,
    after matching. Each order is read back: one that filled first is reported
    filled, one not cancelled yet open - never a cancel the venue has not done."""
    async with emulator(autostep=False) as emu:
        ex = CcxtExchange(Venue.UPBIT, emu.url, *emu.keys["upbit"], fee_bps=5.0)
        try:
            await ex.load_markets()
            book = await ex.fetch_order_book("BTC/KRW")
            rules = ex.rules("BTC/KRW")
            low = rules.round_price(book.best_bid * 0.9, Side.BUY)
            high = rules.round_price(book.best_ask * 1.02, Side.BUY)
            resting = await ex.create_order(OrderRequest(
                "BTC/KRW", Side.BUY, OrderType.LIMIT, round(20_000 / low, 8), "bc-rest", low))
            filling = await ex.create_order(OrderRequest(
                "BTC/KRW", Side.BUY, OrderType.LIMIT, round(20_000 / high, 8), "bc-fill", high))
            got = {o.client_order_id: o for o in await ex.cancel_all_orders()}
            assert set(got) == {"bc-rest", "bc-fill"}
            assert all(o.status is OrderStatus.OPEN for o in got.values())  # accepted only
            emu.step()  # the venue's next book: the marketable one fills before its cancel
            done = await ex.fetch_order(filling.id, "BTC/KRW")
            assert done.status is OrderStatus.CLOSED and done.filled > 0
            gone = await ex.fetch_order(resting.id, "BTC/KRW")
            assert gone.status is OrderStatus.CANCELED and gone.filled == 0
            # With the venue running, the read-back sees the cancels done.
            emu.core.start_autostep()
            await ex.create_order(OrderRequest(
                "BTC/KRW", Side.BUY, OrderType.LIMIT, round(20_000 / low, 8), "bc-rest2", low))
            again = await ex.cancel_all_orders()
            assert [(o.client_order_id, o.status) for o in again] == [
                ("bc-rest2", OrderStatus.CANCELED)]
        finally:
            await ex.close()
