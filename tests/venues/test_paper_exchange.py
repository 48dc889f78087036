"""PaperExchange: fills that walk the book, venue rules and no look-ahead (R-M6, R-S6).

The books are hand-made and published by a tiny market stub, so every fill
below is checked against numbers worked out by hand from the book.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.domain.models import (
    FX_SYMBOL,
    MarketSnapshot,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Venue,
)
from core.errors import OrderNotFound, OrderRejected, VenueUnavailable
from core.journal.sqlite_store import SqliteStore
from core.venues.paper_exchange import PaperExchange, paper_journal_probe

Levels = list[tuple[float, float]]

# Binance TST/USDT around 100 USDT: step 0.01, tick 1e-4, minNotional 5.
BN_BIDS: Levels = [(99.5, 1.0), (99.0, 2.0), (98.5, 5.0)]
BN_ASKS: Levels = [(100.0, 1.0), (100.5, 2.0), (101.0, 5.0)]
# Upbit TST/KRW around 20,000 KRW: tick 10 KRW, minimum 5,000 KRW.
UP_BIDS: Levels = [(19_990.0, 1.0), (19_980.0, 2.0)]
UP_ASKS: Levels = [(20_000.0, 2.0), (20_010.0, 3.0), (20_020.0, 5.0)]


class StubMarket:
    """Publishes hand-made snapshots to its listeners, like SimMarket.step()."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.seq = 0
        self._latest: MarketSnapshot | None = None
        self._listeners: list[Callable[[MarketSnapshot], None]] = []

    def latest(self) -> MarketSnapshot | None:
        return self._latest

    def add_listener(self, listener: Callable[[MarketSnapshot], None]) -> None:
        self._listeners.append(listener)

    def publish(
        self,
        bn_bids: Levels = BN_BIDS,
        bn_asks: Levels = BN_ASKS,
        up_bids: Levels = UP_BIDS,
        up_asks: Levels = UP_ASKS,
        *,
        same_seq: bool = False,
    ) -> MarketSnapshot:
        if not same_seq:
            self.seq += 1
        ts = int(self.clock.time() * 1000)
        snap = MarketSnapshot(
            seq=self.seq,
            ts_ms=ts,
            fx=OrderBook(FX_SYMBOL, [(1379.5, 1e5)], [(1380.0, 1e5)], ts, self.seq),
            upbit={"TST": OrderBook("TST/KRW", list(up_bids), list(up_asks), ts, self.seq)},
            binance={"TST": OrderBook("TST/USDT", list(bn_bids), list(bn_asks), ts, self.seq)},
        )
        self._latest = snap
        for fn in list(self._listeners):
            fn(snap)
        return snap


def make(
    venue: Venue = Venue.BINANCE,
    *,
    fee_bps: float | None = None,
    fund: dict[str, float] | None = None,
    **kw: object,
) -> tuple[PaperExchange, StubMarket]:
    clock = ManualClock()
    market = StubMarket(clock)
    fee = fee_bps if fee_bps is not None else (10.0 if venue is Venue.BINANCE else 5.0)
    ex = PaperExchange(venue, market, clock, fee, **kw)  # type: ignore[arg-type]
    snap = market.publish()
    ex.list_markets(["TST"], snap)
    default = (
        {"USDT": 10_000.0, "TST": 50.0}
        if venue is Venue.BINANCE
        else {"KRW": 10_000_000.0, "TST": 50.0}
    )
    for asset, amount in (fund if fund is not None else default).items():
        ex.fund(asset, amount)
    return ex, market


_ids = iter(range(1, 10**9))


def req(
    side: Side,
    amount: float | None,
    price: float | None = None,
    *,
    venue: Venue = Venue.BINANCE,
    type: OrderType = OrderType.LIMIT,
    cost: float | None = None,
    cid: str | None = None,
) -> OrderRequest:
    symbol = "TST/USDT" if venue is Venue.BINANCE else "TST/KRW"
    return OrderRequest(symbol, side, type, amount, cid or f"c{next(_ids)}", price, cost)


async def balances(ex: PaperExchange) -> dict[str, tuple[float, float]]:
    return {a: (b.free, b.used) for a, b in (await ex.fetch_balance()).items()}


# --- walking the book ---------------------------------------------------------------


async def test_buy_walks_levels_at_vwap() -> None:
    ex, market = make()
    order = await ex.create_order(req(Side.BUY, 2.5, 101.0))
    market.publish()
    o = await ex.fetch_order(order.id, "TST/USDT")
    assert o.status is OrderStatus.CLOSED
    assert [(t.price, t.amount) for t in o.trades] == [(100.0, 1.0), (100.5, pytest.approx(1.5))]
    assert o.filled == pytest.approx(2.5)
    assert o.cost == pytest.approx(100.0 + 150.75)  # 250.75
    assert o.average == pytest.approx(100.3)  # VWAP over two levels, not the touch
    assert o.fee_cost == pytest.approx(0.25075)  # 10 bps taker fee, in quote
    assert all(t.fee_currency == "USDT" for t in o.trades)
    assert all(t.fee_cost == pytest.approx(t.cost * 0.001) for t in o.trades)
    bal = await balances(ex)
    assert bal["USDT"][0] == pytest.approx(10_000.0 - 250.75 - 0.25075)
    assert bal["USDT"][1] == pytest.approx(0.0, abs=1e-9)
    assert bal["TST"] == (pytest.approx(52.5), pytest.approx(0.0, abs=1e-12))


async def test_sell_walks_bids_at_vwap() -> None:
    ex, market = make()
    order = await ex.create_order(req(Side.SELL, 4.0, 98.5))
    market.publish()
    o = await ex.fetch_order(order.id, "TST/USDT")
    # 1 @ 99.5 + 2 @ 99.0 + 1 @ 98.5 = 396.0
    assert [t.price for t in o.trades] == [99.5, 99.0, 98.5]
    assert o.cost == pytest.approx(396.0)
    assert o.average == pytest.approx(99.0)
    bal = await balances(ex)
    assert bal["USDT"][0] == pytest.approx(10_000.0 + 396.0 * (1 - 0.001))
    assert bal["TST"][0] == pytest.approx(46.0)
    assert bal["TST"][1] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("side", "limit", "expected_fill", "worst"),
    [
        (Side.BUY, 100.5, 3.0, 100.5),  # 1 @ 100 + 2 @ 100.5; 101 is beyond the limit
        (Side.BUY, 100.2, 1.0, 100.0),
        (Side.BUY, 99.9, 0.0, None),  # below the ask: rests
        (Side.SELL, 99.0, 3.0, 99.0),
        (Side.SELL, 99.6, 0.0, None),
    ],
)
async def test_limit_never_fills_beyond_its_price(
    side: Side, limit: float, expected_fill: float, worst: float | None
) -> None:
    ex, market = make()
    order = await ex.create_order(req(side, 5.0, limit))
    market.publish()
    o = await ex.fetch_order(order.id, "TST/USDT")
    assert o.filled == pytest.approx(expected_fill)
    assert o.status is OrderStatus.OPEN  # the rest keeps working
    market.publish(bn_bids=[(99.8, 0.5), *BN_BIDS], bn_asks=[(99.7, 0.5), *BN_ASKS])
    o = await ex.fetch_order(order.id, "TST/USDT")
    prices = [t.price for t in o.trades]
    if side is Side.BUY:
        assert all(p <= limit for p in prices)
    else:
        assert all(p >= limit for p in prices)
    if worst is not None:
        assert (max(prices) if side is Side.BUY else min(prices)) == worst


async def test_partial_fills_with_fill_ratio() -> None:
    ex, market = make(fill_ratio=0.25)
    order = await ex.create_order(req(Side.BUY, 2.0, 101.0))
    market.publish()
    o = await ex.fetch_order(order.id, "TST/USDT")
    assert o.filled == pytest.approx(0.5)
    assert o.status is OrderStatus.OPEN
    assert o.remaining == pytest.approx(1.5)
    market.publish()
    market.publish()
    assert (await ex.fetch_order(order.id, "TST/USDT")).filled == pytest.approx(1.5)
    market.publish()
    o = await ex.fetch_order(order.id, "TST/USDT")
    assert o.filled == pytest.approx(2.0)
    assert o.status is OrderStatus.CLOSED
    assert len(o.trades) == 4


async def test_two_orders_do_not_share_the_same_liquidity() -> None:
    ex, market = make()
    a = await ex.create_order(req(Side.BUY, 1.0, 100.5))
    b = await ex.create_order(req(Side.BUY, 1.0, 100.5))
    market.publish()
    fa = await ex.fetch_order(a.id, "TST/USDT")
    fb = await ex.fetch_order(b.id, "TST/USDT")
    assert fa.average == pytest.approx(100.0)
    assert fb.average == pytest.approx(100.5)  # the 100.0 level was used up by the first


# --- no look-ahead ------------------------------------------------------------------


async def test_nothing_fills_before_the_next_snapshot() -> None:
    ex, market = make()
    order = await ex.create_order(req(Side.BUY, 1.0, 101.0))
    assert order.filled == 0.0 and order.status is OrderStatus.OPEN
    o = await ex.fetch_order(order.id, "TST/USDT")
    assert o.filled == 0.0 and not o.trades
    market.publish(same_seq=True)  # the book the order was decided on, again
    assert (await ex.fetch_order(order.id, "TST/USDT")).filled == 0.0


async def test_fills_use_the_book_after_the_order_not_before() -> None:
    ex, market = make()
    order = await ex.create_order(req(Side.BUY, 1.0, 101.0))  # decided on ask 100.0
    market.publish(bn_asks=[(100.7, 0.4), (100.9, 3.0)])  # the market moved away
    o = await ex.fetch_order(order.id, "TST/USDT")
    assert [t.price for t in o.trades] == [100.7, 100.9]
    assert o.cost == pytest.approx(0.4 * 100.7 + 0.6 * 100.9)
    assert all(t.timestamp_ms >= order.timestamp_ms for t in o.trades)


# --- balances and funds ----------------------------------------------------------------


async def test_buy_reserves_quote_and_sell_reserves_base() -> None:
    ex, _ = make()
    await ex.create_order(req(Side.BUY, 2.0, 99.0))  # rests below the ask
    await ex.create_order(req(Side.SELL, 3.0, 101.0))  # rests above the bid
    bal = await balances(ex)
    reserved = 2.0 * 99.0 * 1.001  # price x amount plus the taker fee
    assert bal["USDT"] == (pytest.approx(10_000.0 - reserved), pytest.approx(reserved))
    assert bal["TST"] == (pytest.approx(47.0), pytest.approx(3.0))
    assert sum(bal["USDT"]) == pytest.approx(10_000.0)


async def test_insufficient_funds_are_rejected_and_nothing_is_locked() -> None:
    ex, _ = make(fund={"USDT": 50.0, "TST": 0.5})
    with pytest.raises(OrderRejected, match="insufficient USDT"):
        await ex.create_order(req(Side.BUY, 1.0, 100.0))  # 100.1 with the fee
    with pytest.raises(OrderRejected, match="insufficient TST"):
        await ex.create_order(req(Side.SELL, 1.0, 99.5))
    assert await balances(ex) == {"USDT": (50.0, 0.0), "TST": (0.5, 0.0)}
    assert await ex.fetch_open_orders() == []
    assert ex.orders_sent == 0


async def test_cancel_releases_the_reservation() -> None:
    ex, market = make()
    order = await ex.create_order(req(Side.BUY, 3.0, 100.0))  # only 1.0 is offered at 100
    market.publish()
    part = await ex.fetch_order(order.id, "TST/USDT")
    assert part.filled == pytest.approx(1.0)
    cancelled = await ex.cancel_order(order.id, "TST/USDT")
    assert cancelled.status is OrderStatus.CANCELED
    assert cancelled.filled == pytest.approx(1.0)
    bal = await balances(ex)
    assert bal["USDT"][1] == pytest.approx(0.0, abs=1e-9)
    assert bal["USDT"][0] == pytest.approx(10_000.0 - 100.0 * 1.001)
    assert await ex.fetch_open_orders() == []
    market.publish()  # a cancelled order never fills again
    assert (await ex.fetch_order(order.id, "TST/USDT")).filled == pytest.approx(1.0)


async def test_cancel_by_client_order_id_and_unknown_orders() -> None:
    ex, _ = make()
    order = await ex.create_order(req(Side.SELL, 1.0, 105.0, cid="mine-1"))
    cancelled = await ex.cancel_order(None, "TST/USDT", client_order_id="mine-1")
    assert cancelled.id == order.id and cancelled.status is OrderStatus.CANCELED
    assert (await balances(ex))["TST"] == (pytest.approx(50.0), pytest.approx(0.0))
    with pytest.raises(OrderNotFound):
        await ex.fetch_order("nope", "TST/USDT")


async def test_injected_cancel_failures_raise_n_times() -> None:
    ex, _ = make(cancel_failures=2)
    order = await ex.create_order(req(Side.BUY, 1.0, 90.0))
    for _ in range(2):
        with pytest.raises(VenueUnavailable):
            await ex.cancel_order(order.id, "TST/USDT")
    assert (await ex.fetch_order(order.id, "TST/USDT")).status is OrderStatus.OPEN
    assert (await balances(ex))["USDT"][1] == pytest.approx(90.0 * 1.001)
    done = await ex.cancel_order(order.id, "TST/USDT")
    assert done.status is OrderStatus.CANCELED
    assert (await balances(ex))["USDT"] == (pytest.approx(10_000.0), pytest.approx(0.0, abs=1e-9))


async def test_duplicate_client_order_id_is_rejected() -> None:
    ex, _ = make()
    await ex.create_order(req(Side.BUY, 1.0, 90.0, cid="dup"))
    with pytest.raises(OrderRejected, match="duplicate"):
        await ex.create_order(req(Side.BUY, 1.0, 90.0, cid="dup"))


# --- venue rules (R-M6) -------------------------------------------------------------------


async def test_upbit_market_buy_is_sized_in_krw() -> None:
    ex, market = make(Venue.UPBIT)
    budget = 100_000.0
    order = await ex.create_order(
        req(Side.BUY, None, venue=Venue.UPBIT, type=OrderType.MARKET, cost=budget)
    )
    assert order.amount is None and order.cost_budget == budget
    market.publish()
    o = await ex.fetch_order(order.id, "TST/KRW")
    assert o.status is OrderStatus.CLOSED
    # 2 @ 20,000 = 40,000 KRW, then 60,000 KRW buys 2.9985007... @ 20,010 (8 decimals)
    assert [t.price for t in o.trades] == [20_000.0, 20_010.0]
    assert o.trades[0].amount == pytest.approx(2.0)
    assert o.trades[1].amount == pytest.approx(2.99850074, abs=1e-8)
    assert o.cost <= budget
    assert o.cost == pytest.approx(budget, abs=0.01)
    assert o.fee_cost == pytest.approx(o.cost * 0.0005)
    assert all(t.fee_currency == "KRW" for t in o.trades)
    bal = await balances(ex)
    assert bal["KRW"][0] == pytest.approx(10_000_000.0 - o.cost - o.fee_cost)
    assert bal["KRW"][1] == pytest.approx(0.0, abs=1e-6)
    assert bal["TST"][0] == pytest.approx(50.0 + o.filled)


async def test_upbit_market_buy_with_an_amount_is_rejected() -> None:
    ex, _ = make(Venue.UPBIT)
    with pytest.raises(OrderRejected, match="market_buy_needs_cost"):
        await ex.create_order(req(Side.BUY, 1.0, venue=Venue.UPBIT, type=OrderType.MARKET))


@pytest.mark.parametrize(
    ("amount", "ok"),
    [(0.2, False), (0.24999999, False), (0.25, True), (1.0, True)],  # x 20,000 KRW
)
async def test_upbit_minimum_order_is_5000_krw(amount: float, ok: bool) -> None:
    ex, _ = make(Venue.UPBIT)
    request = req(Side.SELL, amount, 20_000.0, venue=Venue.UPBIT)
    if ok:
        assert (await ex.create_order(request)).status is OrderStatus.OPEN
    else:
        with pytest.raises(OrderRejected, match="min_total"):
            await ex.create_order(request)


@pytest.mark.parametrize(("amount", "ok"), [(0.04, False), (0.05, True)])  # x 100 USDT
async def test_binance_min_notional(amount: float, ok: bool) -> None:
    ex, _ = make()
    request = req(Side.BUY, amount, 100.0)
    if ok:
        assert (await ex.create_order(request)).status is OrderStatus.OPEN
    else:
        with pytest.raises(OrderRejected, match="min_notional"):
            await ex.create_order(request)


async def test_orders_are_rounded_to_venue_precision() -> None:
    ex, _ = make()
    order = await ex.create_order(req(Side.BUY, 1.23456, 99.123456))
    assert order.amount == pytest.approx(1.23)  # stepSize 0.01, floored
    assert order.price == pytest.approx(99.123)  # tickSize 1e-3 at ~100 USDT, a buy rounds down
    up, _ = make(Venue.UPBIT)
    o = await up.create_order(req(Side.SELL, 1.0, 20_004.0, venue=Venue.UPBIT))
    assert o.price == 20_010.0  # 10 KRW tick, a sell rounds up


# --- journal-before-send probe (R-S6) --------------------------------------------------------


async def test_intent_probe_rejects_an_unjournaled_client_id() -> None:
    journaled = {"known"}
    ex, _ = make(intent_probe=lambda cid: cid in journaled)
    with pytest.raises(OrderRejected, match="not journaled"):
        await ex.create_order(req(Side.BUY, 1.0, 90.0, cid="stranger"))
    assert (await balances(ex))["USDT"] == (10_000.0, 0.0)
    assert (await ex.create_order(req(Side.BUY, 1.0, 90.0, cid="known"))).status is OrderStatus.OPEN


async def test_paper_journal_probe_reads_committed_intents(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite3"
    store = await SqliteStore.open(db)
    try:
        probe = paper_journal_probe(db)
        assert probe("c-1") is False
        await store.record_intent(
            client_order_id="c-1",
            run_id="r",
            venue="binance",
            symbol="TST/USDT",
            side="buy",
            type="limit",
            amount=1.0,
            price=90.0,
            cost=None,
            purpose="entry",
            position_id="p",
            created_at=0.0,
        )
        assert probe("c-1") is True
        assert probe("c-2") is False
    finally:
        await store.close()
