"""ExchangePort contract (docs/architecture.md): one suite, every implementation.

Each behaviour runs against four venue harnesses:

- ``paper-upbit`` / ``paper-binance``: PaperExchange over a SimMarket on a
  ManualClock, markets listed and funded the way PhaseRun._fund does it;
  advancing publishes the next book (``market.step()``).
- ``ccxt-upbit`` / ``ccxt-binance``: CcxtExchange over ccxt against a real
  local emulator (``start_emulator(autostep=False)``); advancing steps the
  emulator's sim (``handle.step()``).

Orders are priced and sized the way the gateway does it, through the port's
``rules(symbol)`` (both implementations expose it), so the venue rules are the
venue's own. A second, ccxt-only part drives the emulator's fault injection
(429s, 5xx after execute, maintenance, insufficient funds) and checks what the
port turns each into.

Fees are charged in the asset each venue charges: Upbit in KRW; Binance
(the emulator, as the venue) a BUY's commission in the base asset received, a
SELL's in the quote. The paper exchange charges the quote on both venues (a
modelling choice, docs/architecture.md); `fee_asset` says which applies.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from bot.drill.emulator import EmulatorHandle, start_emulator
from bot.drill.emulator.state import FEE_BPS
from core.clock import ManualClock
from core.domain.models import (
    QUOTE,
    Order,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Venue,
)
from core.errors import ExchangeError, OrderNotFound, OrderRejected, RateLimited, VenueUnavailable
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.paper_exchange import PaperExchange
from core.venues.sim_market import SimMarket

SEED = 7
BASES = ["BTC", "ETH", "XRP"]
BASE = "BTC"
QUOTE_USD = 20_000.0  # quote funding per venue (KRW at the sim's FX on Upbit)
PER_BASE_USD = 1_000.0  # funding of every base
INTERVAL_S = 0.1
MIN_COST = {Venue.UPBIT: 5_000.0, Venue.BINANCE: 5.0}
NOTIONAL = {Venue.UPBIT: 20_000.0, Venue.BINANCE: 20.0}  # 4x the venue minimum
ORDER_PATH = {Venue.UPBIT: "/v1/orders", Venue.BINANCE: "/api/v3/order"}
BOOK_PATH = {Venue.UPBIT: "/v1/orderbook", Venue.BINANCE: "/api/v3/depth"}

IMPLS = ["paper-upbit", "paper-binance", "ccxt-upbit", "ccxt-binance"]
CCXT_IMPLS = ["ccxt-upbit", "ccxt-binance"]


# --- the venue harness -----------------------------------------------------------------
@dataclasses.dataclass
class VenueHarness:
    """One ExchangePort implementation plus what a test needs to drive it."""

    name: str
    venue: Venue
    port: Any  # ExchangePort (+ rules(symbol), which the gateway uses)
    symbol: str
    _advance: Callable[[], Any]
    emulator: EmulatorHandle | None = None

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote(self) -> str:
        return QUOTE[self.venue]

    @property
    def notional(self) -> float:
        return NOTIONAL[self.venue]

    def advance(self, n: int = 1) -> None:
        """Publish the next book(s): working orders match against them."""
        for _ in range(n):
            self._advance()

    async def top(self) -> tuple[float, float]:
        """The reference price: (best bid, best ask) from fetch_order_book."""
        book = await self.port.fetch_order_book(self.symbol)
        return book.best_bid, book.best_ask

    def price(self, price: float, side: Side) -> float:
        return float(self.port.rules(self.symbol).round_price(price, side))

    def amount(self, notional: float, price: float) -> float:
        return float(self.port.rules(self.symbol).round_amount(notional / price))

    def cid(self, tag: str) -> str:
        return f"ct-{tag}-{uuid.uuid4().hex[:16]}"  # <= 36 chars (Binance newClientOrderId)

    def fee_asset(self, side: Side) -> str:
        """The asset this implementation charges a fill's fee in."""
        if self.name == "ccxt-binance" and side is Side.BUY:
            return self.base
        return self.quote

    @property
    def cancel_all_is_acceptance(self) -> bool:
        """Upbit's batch cancel accepts the cancels and does them at its next book:
        the orders read back still open until then."""
        return self.name == "ccxt-upbit"

    def fee_split(self, order: Order) -> tuple[float, float]:
        """(fee taken from the base, fee taken from the quote) of a filled order."""
        in_base = order.fee_currency == self.base
        return (order.fee_cost, 0.0) if in_base else (0.0, order.fee_cost)

    def unknown_id(self) -> str:
        return str(uuid.uuid4()) if self.venue is Venue.UPBIT else "987654321"

    async def limit(
        self, side: Side, price: float, notional: float | None = None, tag: str = "lim"
    ) -> tuple[OrderRequest, Order]:
        px = self.price(price, side)
        req = OrderRequest(
            self.symbol, side, OrderType.LIMIT, self.amount(notional or self.notional, px),
            self.cid(tag), px,
        )  # fmt: skip
        return req, await self.port.create_order(req)

    async def marketable_buy(self, tag: str = "mkb") -> tuple[OrderRequest, Order]:
        """A limit buy 2 % through the best ask, sized at the ask."""
        _, ask = await self.top()
        px = self.price(ask * 1.02, Side.BUY)
        req = OrderRequest(
            self.symbol, Side.BUY, OrderType.LIMIT, self.amount(self.notional, ask),
            self.cid(tag), px,
        )  # fmt: skip
        return req, await self.port.create_order(req)

    async def resting_buy(self, tag: str = "rst") -> tuple[OrderRequest, Order]:
        """A limit buy 10 % under the best bid: never marketable in a test's lifetime."""
        bid, _ = await self.top()
        return await self.limit(Side.BUY, bid * 0.9, tag=tag)

    async def resting_sell(self, tag: str = "rss") -> tuple[OrderRequest, Order]:
        _, ask = await self.top()
        return await self.limit(Side.SELL, ask * 1.1, tag=tag)

    def partial_fills(self, ratio: float) -> None:
        """Let the next order fill only `ratio` of its amount per book."""
        if self.emulator is None:
            self.port.fill_ratio = ratio
        else:
            self.emulator.add_fault(venue=self.venue.value, kind="partial_fill", ratio=ratio)


def _paper(venue: Venue) -> VenueHarness:
    clock = ManualClock()
    market = SimMarket(SEED, interval_s=INTERVAL_S, clock=clock)
    market.subscribe(BASES)
    port = PaperExchange(venue, market, clock, FEE_BPS[venue.value])
    first = market.step()
    # As PhaseRun._fund: list the universe's markets, fund the quote and every base.
    port.list_markets(BASES, first)
    port.fund(port.quote, QUOTE_USD * (first.fx.mid if venue is Venue.UPBIT else 1.0))
    for base in BASES:
        port.fund(base, PER_BASE_USD / first.binance[base].mid)

    def advance() -> None:
        clock.advance(INTERVAL_S)
        market.step()

    return VenueHarness(f"paper-{venue}", venue, port, f"{BASE}/{QUOTE[venue]}", advance)


@contextlib.asynccontextmanager
async def _ccxt(venue: Venue) -> AsyncIterator[VenueHarness]:
    emu = await start_emulator(
        autostep=False, seed=SEED, bases=BASES, quote_usd=QUOTE_USD, per_base_usd=PER_BASE_USD
    )
    try:
        key, secret = emu.keys[venue.value]
        port = CcxtExchange(venue, emu.url, key, secret, fee_bps=FEE_BPS[venue.value])
        try:
            # ccxt's client-side throttle only slows tests down (the emulator's limits
            # are injected faults); everything else is the adapter as configured.
            port.ccxt.enableRateLimit = False
            yield VenueHarness(
                f"ccxt-{venue}", venue, port, f"{BASE}/{QUOTE[venue]}", emu.step, emu
            )
        finally:
            await port.close()
    finally:
        await emu.stop()


@pytest.fixture(params=IMPLS)
async def h(request: pytest.FixtureRequest) -> AsyncIterator[VenueHarness]:
    kind, venue_name = str(request.param).split("-")
    venue = Venue(venue_name)
    if kind == "paper":
        harness = _paper(venue)
        await harness.port.load_markets()
        yield harness
        await harness.port.close()
        return
    async with _ccxt(venue) as harness:
        await harness.port.load_markets()
        yield harness


@pytest.fixture(params=CCXT_IMPLS)
async def emu(request: pytest.FixtureRequest) -> AsyncIterator[VenueHarness]:
    async with _ccxt(Venue(str(request.param).split("-")[1])) as harness:
        await harness.port.load_markets()
        yield harness


def xfail_for(request: pytest.FixtureRequest, names: set[str], reason: str) -> None:
    """Mark this parametrization xfail(strict) when its harness is one of `names`."""
    params = request.node.callspec.params
    if params.get("h") in names or params.get("emu") in names:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


async def admin_orders(h: VenueHarness) -> list[dict[str, Any]]:
    assert h.emulator is not None
    url = f"{h.emulator.url}/admin/orders?venue={h.venue.value}"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200, await r.text()
        return list((await r.json())[h.venue.value])


async def emu_limits(h: VenueHarness) -> dict[str, Any]:
    assert h.emulator is not None
    async with aiohttp.ClientSession() as s, s.get(f"{h.emulator.url}/admin/limits") as r:
        assert r.status == 200, await r.text()
        return dict((await r.json())[h.venue.value])


async def fill(h: VenueHarness, order: Order) -> Order:
    h.advance()
    got = await h.port.fetch_order(order.id, h.symbol)
    assert got.status is OrderStatus.CLOSED, got
    return got


# --- markets, books, balances -------------------------------------------------------------
async def test_load_markets_lists_the_symbol_with_its_rules(h: VenueHarness) -> None:
    markets = await h.port.load_markets()
    m = markets[h.symbol]
    assert (m.symbol, m.base, m.quote, m.venue) == (h.symbol, h.base, h.quote, h.venue)
    assert m.active
    assert m.amount_step > 0 and m.min_amount > 0
    assert m.min_cost == MIN_COST[h.venue]  # Upbit 5,000 KRW; Binance minNotional 5 USDT
    if h.venue is Venue.UPBIT:
        assert m.price_tick is None  # the KRW tick table applies
    else:
        assert m.price_tick is not None and m.price_tick > 0


async def test_order_book_is_sorted_and_uncrossed(h: VenueHarness) -> None:
    for limit in (None, 5):
        book = await h.port.fetch_order_book(h.symbol, limit)
        assert book.symbol == h.symbol
        assert book.bids and book.asks
        if limit is not None:
            assert len(book.bids) <= limit and len(book.asks) <= limit
        bid_px = [p for p, _ in book.bids]
        ask_px = [p for p, _ in book.asks]
        assert bid_px == sorted(bid_px, reverse=True) and len(set(bid_px)) == len(bid_px)
        assert ask_px == sorted(ask_px) and len(set(ask_px)) == len(ask_px)
        assert all(q > 0 for _, q in book.bids + book.asks)
        assert 0 < book.best_bid < book.best_ask
        assert book.timestamp_ms > 0


async def test_balance_has_the_quote_and_the_base(h: VenueHarness) -> None:
    bal = await h.port.fetch_balance()
    assert bal[h.quote].free > 0 and bal[h.quote].used == 0
    assert bal[h.base].free > 0 and bal[h.base].used == 0


# --- orders ---------------------------------------------------------------------------------
async def test_marketable_limit_buy_fills_and_is_found_by_id_and_client_id(
    h: VenueHarness,
) -> None:
    req, ack = await h.marketable_buy()
    assert ack.status in (OrderStatus.OPEN, OrderStatus.CLOSED)
    assert ack.id and ack.client_order_id == req.client_order_id
    assert (ack.symbol, ack.side, ack.type) == (h.symbol, Side.BUY, OrderType.LIMIT)
    assert ack.amount == pytest.approx(req.amount)
    assert ack.price == pytest.approx(req.price)
    h.advance()
    by_id = await h.port.fetch_order(ack.id, h.symbol)
    by_cid = await h.port.fetch_order(None, h.symbol, req.client_order_id)
    for got in (by_id, by_cid):
        assert got.id == ack.id
        assert got.client_order_id == req.client_order_id
        assert got.status is OrderStatus.CLOSED
        assert got.filled == pytest.approx(req.amount)
        assert got.cost > 0 and got.fee_cost > 0
        assert got.average is not None and got.average <= req.price * (1 + 1e-9)


async def test_trades_sum_to_filled_with_fees_in_the_asset_charged(h: VenueHarness) -> None:
    req, ack = await h.marketable_buy()
    got = await fill(h, ack)
    again = await h.port.fetch_order(None, h.symbol, req.client_order_id)  # re-read: no doubles
    for o in (got, again):
        assert o.trades, o
        assert sum(t.amount for t in o.trades) == pytest.approx(o.filled, rel=1e-9)
        assert sum(t.cost for t in o.trades) == pytest.approx(o.cost, rel=1e-9)
        assert sum(t.fee_cost for t in o.trades) == pytest.approx(o.fee_cost, rel=1e-6)
        assert len({t.id for t in o.trades}) == len(o.trades)
        for t in o.trades:
            assert t.fee_currency == h.fee_asset(Side.BUY) and t.fee_cost > 0
            assert t.fee_in_quote == pytest.approx(
                t.cost * FEE_BPS[h.venue.value] / 1e4, rel=1e-6)  # valued at the fill
            assert (t.order_id, t.client_order_id) == (ack.id, req.client_order_id)
            assert (t.symbol, t.side) == (h.symbol, Side.BUY)
            assert t.amount > 0 and t.price > 0
        assert o.fee_currency == h.fee_asset(Side.BUY)


async def test_resting_limit_is_open_then_cancelled(h: VenueHarness) -> None:
    req, ack = await h.resting_buy()
    assert ack.status is OrderStatus.OPEN
    h.advance()
    assert (await h.port.fetch_order(ack.id, h.symbol)).status is OrderStatus.OPEN
    open_ = await h.port.fetch_open_orders(h.symbol)
    assert [(o.id, o.client_order_id) for o in open_] == [(ack.id, req.client_order_id)]
    assert open_[0].status is OrderStatus.OPEN and open_[0].filled == 0
    canceled = await h.port.cancel_order(ack.id, h.symbol)
    assert canceled.id == ack.id and canceled.status is OrderStatus.CANCELED
    assert canceled.client_order_id == req.client_order_id
    assert await h.port.fetch_open_orders(h.symbol) == []
    assert await h.port.fetch_open_orders() == []
    got = await h.port.fetch_order(None, h.symbol, req.client_order_id)
    assert got.status is OrderStatus.CANCELED and got.filled == 0


async def test_cancel_by_client_order_id(h: VenueHarness) -> None:
    req, ack = await h.resting_buy()
    canceled = await h.port.cancel_order(None, h.symbol, req.client_order_id)
    assert canceled.id == ack.id and canceled.status is OrderStatus.CANCELED
    assert canceled.client_order_id == req.client_order_id
    assert await h.port.fetch_open_orders() == []


async def test_resting_order_reserves_the_quote(h: VenueHarness) -> None:
    before = (await h.port.fetch_balance())[h.quote]
    req, _ = await h.resting_buy()
    after = (await h.port.fetch_balance())[h.quote]
    notional = (req.amount or 0.0) * (req.price or 0.0)
    assert after.used >= notional * (1 - 1e-9)
    assert after.total == pytest.approx(before.total, rel=1e-9)


async def test_cancel_all_orders_cancels_every_open_order(h: VenueHarness) -> None:
    _, a = await h.resting_buy("ca1")
    _, b = await h.resting_sell("ca2")
    assert {o.id for o in await h.port.fetch_open_orders()} == {a.id, b.id}
    canceled = await h.port.cancel_all_orders()
    assert {o.id for o in canceled} == {a.id, b.id}
    # Each is reported as read back: cancelled, or (an acceptance) still open.
    want = OrderStatus.OPEN if h.cancel_all_is_acceptance else OrderStatus.CANCELED
    assert all(o.status is want for o in canceled)
    h.advance()
    assert await h.port.fetch_open_orders() == []
    for o in (a, b):
        assert (await h.port.fetch_order(o.id, h.symbol)).status is OrderStatus.CANCELED


async def test_cancel_all_orders_with_a_symbol(h: VenueHarness) -> None:
    _, a = await h.resting_buy("cs1")
    _, b = await h.resting_buy("cs2")
    canceled = await h.port.cancel_all_orders(h.symbol)
    assert {o.id for o in canceled} == {a.id, b.id}
    h.advance()
    assert await h.port.fetch_open_orders(h.symbol) == []


async def test_cancel_all_orders_with_nothing_open(h: VenueHarness) -> None:
    assert await h.port.cancel_all_orders(h.symbol) == []
    assert await h.port.cancel_all_orders() == []


async def test_order_below_the_venue_minimum_is_rejected(h: VenueHarness) -> None:
    bid, _ = await h.top()
    with pytest.raises(OrderRejected):
        await h.limit(Side.BUY, bid * 0.9, notional=MIN_COST[h.venue] * 0.8, tag="min")
    assert await h.port.fetch_open_orders() == []


async def test_duplicate_client_order_id_is_rejected(h: VenueHarness) -> None:
    req, first = await h.resting_buy("dup")
    bid, _ = await h.top()
    px = h.price(bid * 0.85, Side.BUY)
    again = dataclasses.replace(req, price=px, amount=h.amount(h.notional, px))
    with pytest.raises(OrderRejected):
        await h.port.create_order(again)
    open_ = await h.port.fetch_open_orders()
    assert [o.id for o in open_] == [first.id]


async def test_insufficient_funds_is_rejected(h: VenueHarness) -> None:
    quote = (await h.port.fetch_balance())[h.quote].total
    bid, _ = await h.top()
    with pytest.raises(OrderRejected):
        await h.limit(Side.BUY, bid * 0.9, notional=quote * 3, tag="nsf")
    assert await h.port.fetch_open_orders() == []


async def test_market_buy_sized_in_quote(h: VenueHarness) -> None:
    # Upbit: ord_type=price in KRW; Binance: quoteOrderQty in USDT.
    budget = 10_000.0 if h.venue is Venue.UPBIT else 20.0
    before = await h.port.fetch_balance()
    req = OrderRequest(h.symbol, Side.BUY, OrderType.MARKET, None, h.cid("krw"), cost=budget)
    ack = await h.port.create_order(req)
    assert ack.client_order_id == req.client_order_id and ack.side is Side.BUY
    assert ack.type is OrderType.MARKET and ack.status in (OrderStatus.OPEN, OrderStatus.CLOSED)
    h.advance()
    got = await h.port.fetch_order(ack.id, h.symbol)
    # Upbit may end a KRW-sized market buy `cancel` with a fill (the unspent KRW released).
    assert got.status in (OrderStatus.CLOSED, OrderStatus.CANCELED) and got.status.done
    assert got.filled > 0 and 0 < got.cost <= budget * (1 + 1e-9)
    # The book is deep: all the budget is spent but for one amount step.
    step_cost = h.port.market(h.symbol).amount_step * (got.cost / got.filled)
    assert got.cost >= budget * 0.99 - step_cost
    after = await h.port.fetch_balance()
    base_fee, quote_fee = h.fee_split(got)
    assert after[h.base].total - before[h.base].total == pytest.approx(
        got.filled - base_fee, rel=1e-6)
    spent = before[h.quote].total - after[h.quote].total
    assert spent == pytest.approx(got.cost + quote_fee, rel=1e-6)
    assert after[h.quote].used == pytest.approx(0.0, abs=1e-6)


async def _market_buy_by_cost(h: VenueHarness) -> tuple[float, Order]:
    budget = 2 * MIN_COST[h.venue]
    req = OrderRequest(h.symbol, Side.BUY, OrderType.MARKET, None, h.cid("mbc"), cost=budget)
    return budget, await h.port.create_order(req)


async def test_market_buy_by_cost_ack_reports_executed_cost(
    h: VenueHarness, request: pytest.FixtureRequest
) -> None:
    """Order.cost is the quote executed so far, never the budget: a venue fills a
    market order on arrival (the ack carries its fills), paper on the next book."""
    budget, ack = await _market_buy_by_cost(h)
    assert ack.cost == pytest.approx(sum(t.cost for t in ack.trades), abs=1e-9)
    assert ack.filled == pytest.approx(sum(t.amount for t in ack.trades), abs=1e-12)
    assert ack.cost <= budget * (1 + 1e-9)
    h.advance()
    got = await h.port.fetch_order(ack.id, h.symbol)
    assert got.filled > 0 and got.status.done
    assert 0 < got.cost <= budget * (1 + 1e-9)


async def test_market_buy_by_cost_reports_its_budget(
    h: VenueHarness, request: pytest.FixtureRequest
) -> None:
    budget, ack = await _market_buy_by_cost(h)
    assert ack.cost_budget == pytest.approx(budget)
    h.advance()
    got = await h.port.fetch_order(ack.id, h.symbol)
    assert got.cost_budget == pytest.approx(budget)


async def test_off_grid_limit_is_put_on_the_grid_passively(
    h: VenueHarness, request: pytest.FixtureRequest
) -> None:
    """An off-tick price / off-step amount is rounded (as PaperExchange does through
    core.venues.rules), never more aggressive than asked."""
    bid, _ = await h.top()
    on_tick = h.price(bid * 0.9, Side.BUY)
    tick = on_tick - h.price(on_tick * (1 - 1e-9), Side.BUY)
    price = on_tick + 0.7 * tick  # off the tick, nearer the tick above
    amount = h.amount(h.notional, on_tick) * 1.0000001 + 1e-12  # off the step
    req = OrderRequest(h.symbol, Side.BUY, OrderType.LIMIT, amount, h.cid("grid"), price)
    ack = await h.port.create_order(req)
    assert ack.status is OrderStatus.OPEN
    assert ack.price is not None and ack.price == pytest.approx(on_tick, rel=1e-12)
    assert ack.amount is not None and ack.amount <= amount
    assert ack.amount == pytest.approx(h.amount(ack.amount, 1.0), rel=1e-12)


async def test_market_sell_by_amount_fills_at_the_bid(h: VenueHarness) -> None:
    bid, _ = await h.top()
    amount = h.amount(h.notional, bid)
    req = OrderRequest(h.symbol, Side.SELL, OrderType.MARKET, amount, h.cid("ms"))
    ack = await h.port.create_order(req)
    assert ack.type is OrderType.MARKET and ack.side is Side.SELL
    assert ack.status in (OrderStatus.OPEN, OrderStatus.CLOSED)
    got = await fill(h, ack)
    assert got.filled == pytest.approx(amount)
    assert got.average is not None and got.average == pytest.approx(bid, rel=0.01)
    assert sum(t.amount for t in got.trades) == pytest.approx(amount)
    assert all(t.fee_currency == h.quote and t.side is Side.SELL for t in got.trades)


async def test_partial_fills_accumulate_stable_trades(h: VenueHarness) -> None:
    h.partial_fills(0.5)
    req, ack = await h.marketable_buy("pf")
    seen: list[str] = []
    got = ack
    for _ in range(5):
        h.advance()
        got = await h.port.fetch_order(ack.id, h.symbol)
        ids = [t.id for t in got.trades]
        assert ids[: len(seen)] == seen  # cumulative: earlier trades never change or vanish
        assert sum(t.amount for t in got.trades) == pytest.approx(got.filled, rel=1e-9)
        assert sum(t.fee_cost for t in got.trades) == pytest.approx(got.fee_cost, rel=1e-6)
        if len(seen) == 0:
            assert got.status is OrderStatus.OPEN and 0 < got.filled < (req.amount or 0)
        seen = ids
        if got.status.done:
            break
    assert got.status is OrderStatus.CLOSED and got.filled == pytest.approx(req.amount)
    assert len(seen) >= 2


async def test_cancel_of_a_done_order_returns_it(
    h: VenueHarness, request: pytest.FixtureRequest
) -> None:
    """Cancel racing a fill (or a second cancel) reports the order's final state."""
    _, filled = await h.marketable_buy("cdf")
    await fill(h, filled)
    got = await h.port.cancel_order(filled.id, h.symbol)
    assert got.id == filled.id and got.status is OrderStatus.CLOSED and got.filled > 0
    _, resting = await h.resting_buy("cdc")
    await h.port.cancel_order(resting.id, h.symbol)
    again = await h.port.cancel_order(resting.id, h.symbol)
    assert again.id == resting.id and again.status is OrderStatus.CANCELED


async def test_fetch_order_of_an_unknown_order_raises_order_not_found(h: VenueHarness) -> None:
    with pytest.raises(OrderNotFound):
        await h.port.fetch_order(h.unknown_id(), h.symbol)
    with pytest.raises(OrderNotFound):
        await h.port.fetch_order(None, h.symbol, "ct-never-sent")


async def test_cancel_of_an_unknown_order_raises_order_not_found(h: VenueHarness) -> None:
    with pytest.raises(OrderNotFound):
        await h.port.cancel_order(h.unknown_id(), h.symbol)


async def test_balances_move_consistently_after_a_fill(h: VenueHarness) -> None:
    before = await h.port.fetch_balance()
    _, ack = await h.marketable_buy("bal")
    got = await fill(h, ack)
    after = await h.port.fetch_balance()
    base_fee, quote_fee = h.fee_split(got)
    assert after[h.base].total - before[h.base].total == pytest.approx(
        got.filled - base_fee, rel=1e-6)
    spent = before[h.quote].total - after[h.quote].total
    assert spent == pytest.approx(got.cost + quote_fee, rel=1e-6)
    assert after[h.quote].used == pytest.approx(0.0, abs=1e-6)  # the reservation is released
    rate = FEE_BPS[h.venue.value] / 1e4
    assert got.fee_cost == pytest.approx(got.filled * rate if base_fee else got.cost * rate,
                                         rel=1e-6)


# --- ccxt only: emulator faults -----------------------------------------------------------
@pytest.mark.parametrize("kind", ["http_429", "http_418"])
async def test_429_on_create_order_is_rate_limited_then_waited_out(
    emu: VenueHarness, kind: str
) -> None:
    """The venue's answer binds every client of the venue: the next order waits out
    the window (or is refused without being sent) and never reaches the venue inside it."""
    bid, _ = await emu.top()
    px = emu.price(bid * 0.9, Side.BUY)
    reqs = [OrderRequest(emu.symbol, Side.BUY, OrderType.LIMIT,
                         emu.amount(emu.notional, px), emu.cid(f"429{i}"), px) for i in (0, 1)]
    emu.emulator.add_fault(  # type: ignore[union-attr]
        venue=emu.venue.value, kind=kind, count=1, seconds=1,
        path=ORDER_PATH[emu.venue], method="POST",
    )  # fmt: skip
    with pytest.raises(RateLimited) as info:
        await emu.port.create_order(reqs[0])
    assert info.value.retry_after_s > 0
    if emu.venue is Venue.BINANCE or kind == "http_418":
        assert info.value.retry_after_s == 1  # the venue's Retry-After
    assert await admin_orders(emu) == []  # refused at the door: nothing reached the book
    t0 = time.monotonic()
    ack = await emu.port.create_order(reqs[1])  # waits the window out, then goes
    assert ack.status is OrderStatus.OPEN
    assert time.monotonic() - t0 >= 0.5
    assert (await emu_limits(emu))["in_window"] == 0  # nothing was sent inside it


async def test_5xx_after_execute_is_unknown_then_found_by_client_id(emu: VenueHarness) -> None:
    emu.emulator.add_fault(  # type: ignore[union-attr]
        venue=emu.venue.value, kind="http_5xx_after_execute", count=1
    )
    bid, _ = await emu.top()
    px = emu.price(bid * 0.9, Side.BUY)
    req = OrderRequest(
        emu.symbol, Side.BUY, OrderType.LIMIT, emu.amount(emu.notional, px), emu.cid("x5"), px
    )
    with pytest.raises(VenueUnavailable):  # the outcome is UNKNOWN
        await emu.port.create_order(req)
    got = await emu.port.fetch_order(None, emu.symbol, req.client_order_id)
    assert got.client_order_id == req.client_order_id and got.status is OrderStatus.OPEN
    assert got.amount == pytest.approx(req.amount) and got.price == pytest.approx(req.price)
    log = await admin_orders(emu)
    assert [(r["client_order_id"], r["outcome"]) for r in log] == [
        (req.client_order_id, "accepted")
    ]  # sent exactly once, never resent
    assert log[0]["order_id"] == got.id and log[0]["fault"] == "http_5xx_after_execute"


async def test_timeout_after_execute_is_unknown_then_found_by_client_id(
    emu: VenueHarness,
) -> None:
    emu.port.ccxt.timeout = 300  # ms; the adapter's default is 10 s
    emu.emulator.add_fault(  # type: ignore[union-attr]
        venue=emu.venue.value, kind="timeout", execute=True, seconds=1,
        path=ORDER_PATH[emu.venue], method="POST",
    )  # fmt: skip
    bid, _ = await emu.top()
    px = emu.price(bid * 0.9, Side.BUY)
    req = OrderRequest(
        emu.symbol, Side.BUY, OrderType.LIMIT, emu.amount(emu.notional, px), emu.cid("to"), px
    )
    with pytest.raises(VenueUnavailable):
        await emu.port.create_order(req)
    got = await emu.port.fetch_order(None, emu.symbol, req.client_order_id)
    assert got.client_order_id == req.client_order_id and got.status is OrderStatus.OPEN
    assert [r["client_order_id"] for r in await admin_orders(emu)] == [req.client_order_id]


async def test_maintenance_on_the_order_book_is_venue_unavailable(emu: VenueHarness) -> None:
    emu.emulator.add_fault(  # type: ignore[union-attr]
        venue=emu.venue.value, kind="maintenance", count=1, path=BOOK_PATH[emu.venue]
    )
    with pytest.raises(VenueUnavailable):
        await emu.port.fetch_order_book(emu.symbol)
    assert (await emu.port.fetch_order_book(emu.symbol)).bids


async def test_insufficient_funds_fault_is_rejected(emu: VenueHarness) -> None:
    emu.emulator.add_fault(  # type: ignore[union-attr]
        venue=emu.venue.value, kind="insufficient_funds", count=1
    )
    with pytest.raises(OrderRejected):
        await emu.resting_buy("nsf")
    assert [r["outcome"] for r in await admin_orders(emu)] == ["rejected"]
    _, ack = await emu.resting_buy("nsf-ok")
    assert ack.status is OrderStatus.OPEN


async def test_cancel_all_orders_under_a_429_storm_on_everything_but_cancels(
    emu: VenueHarness, request: pytest.FixtureRequest
) -> None:
    placed = [(await emu.resting_buy(f"st{i}"))[1] for i in range(2)]
    placed.append((await emu.resting_sell("st2"))[1])
    assert emu.emulator is not None
    for method in ("GET", "POST"):  # every request except the DELETEs (the cancels)
        emu.emulator.add_fault(venue=emu.venue.value, kind="http_429", count=None, method=method)
    try:
        await emu.port.cancel_all_orders()
        await emu.port.cancel_all_orders(emu.symbol)
    finally:
        emu.emulator.clear_faults()
    emu.advance()
    assert await emu.port.fetch_open_orders() == []
    for o in placed:
        assert (await emu.port.fetch_order(o.id, emu.symbol)).status is OrderStatus.CANCELED


async def test_errors_on_reads_are_exchange_errors(emu: VenueHarness) -> None:
    """A 429 on a read is RateLimited; an unknown symbol is some ExchangeError, not ccxt's."""
    emu.emulator.add_fault(  # type: ignore[union-attr]
        venue=emu.venue.value, kind="http_429", count=1, seconds=2, method="GET"
    )
    with pytest.raises(RateLimited):
        await emu.port.fetch_balance()
    with pytest.raises(ExchangeError):
        await emu.port.fetch_order_book(f"NOPE/{emu.quote}")
