"""PaperExchange: an ExchangePort that fills against the simulated books.

Fills walk the book levels (VWAP), may be partial, respect each venue's rules
(R-M6) and happen against the first book published *after* the order was
placed, never the one the decision saw (no look-ahead). Fees are taker fees
charged in the quote currency (Upbit charges KRW; for Binance we model the
quote-asset deduction so both legs keep equal base quantities).
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import secrets
from collections.abc import Callable
from pathlib import Path

from core.clock import Clock
from core.domain.models import (
    QUOTE,
    Balance,
    Market,
    MarketSnapshot,
    Order,
    OrderBook,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    Trade,
    Venue,
)
from core.errors import OrderNotFound, OrderRejected, RuleViolation, VenueUnavailable
from core.ports import MarketData
from core.venues.rules import VenueRules, rules_for_market
from core.venues.sim_venue_markets import sim_market

IntentProbe = Callable[[str], bool]
# (order, fill qty, fill cost, fee in quote at the configured rate) -> (asset, amount):
# the asset a venue built on this matching charges the fee in (the emulator's Binance
# takes a buy's fee from the base received, or BNB). None: the quote, as paper does.
FeeRule = Callable[[Order, float, float, float], tuple[str, float]]


@dataclasses.dataclass(slots=True)
class _Working:
    order: Order
    placed_seq: int
    reserved: float  # quote (buys) or base (sells) still locked


class PaperExchange:
    def __init__(
        self,
        venue: Venue,
        market: MarketData,
        clock: Clock,
        fee_bps: float,
        latency_ms: float = 0.0,
        fill_ratio: float = 1.0,
        cancel_failures: int = 0,
        intent_probe: IntentProbe | None = None,
        fee_rule: FeeRule | None = None,
    ) -> None:
        self.venue = venue
        self.quote = QUOTE[venue]
        self._market = market
        self._clock = clock
        self._fee = fee_bps / 1e4
        self.latency_s = latency_ms / 1000.0
        self.fill_ratio = fill_ratio
        self.cancel_failures_left = cancel_failures
        self.fail_after_execute = 0
        self._intent_probe = intent_probe
        self.fee_rule = fee_rule
        self._markets: dict[str, Market] = {}
        self._rules: dict[str, VenueRules] = {}
        self._balances: dict[str, list[float]] = {}  # asset -> [free, used]
        self._orders: dict[str, Order] = {}
        self._by_client: dict[str, str] = {}
        self._working: dict[str, _Working] = {}
        self._fill_ratio_of: dict[str, float] = {}  # per-order override of fill_ratio
        self._immediate_or_cancel: set[str] = set()
        self._ids = itertools.count(1)
        # Ids unique across runs and processes: the journal keys fills on them.
        self._id_prefix = f"{venue}-{secrets.token_hex(4)}"
        self._consumed: dict[tuple[str, float], float] = {}
        self._consumed_seq = -1
        self.orders_sent = 0
        market.add_listener(self._on_snapshot)

    # --- set-up -------------------------------------------------------------
    def fund(self, asset: str, amount: float) -> None:
        bal = self._balances.setdefault(asset, [0.0, 0.0])
        bal[0] += amount

    def list_markets(self, bases: list[str], snapshot: MarketSnapshot) -> None:
        """Create this venue's markets for the universe (rules derive from the price scale)."""
        books = snapshot.upbit if self.venue is Venue.UPBIT else snapshot.binance
        for base in bases:
            m = sim_market(self.venue, base, books[base].mid)
            self._markets[m.symbol] = m
            self._rules[m.symbol] = rules_for_market(m)

    # --- ExchangePort -----------------------------------------------------------
    async def load_markets(self) -> dict[str, Market]:
        await self._delay()
        return dict(self._markets)

    def market(self, symbol: str) -> Market:
        return self._markets[symbol]

    def rules(self, symbol: str) -> VenueRules:
        return self._rules[symbol]

    async def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook:
        await self._delay()
        book = self._book(symbol)
        if book is None:
            raise OrderRejected(f"{self.venue}: no book for {symbol}")
        if limit:
            return OrderBook(symbol, book.bids[:limit], book.asks[:limit], book.timestamp_ms, book.seq)
        return book

    async def fetch_balance(self) -> dict[str, Balance]:
        await self._delay()
        return {a: Balance(free=v[0], used=v[1]) for a, v in self._balances.items()}

    async def create_order(self, request: OrderRequest) -> Order:
        await self._delay()
        if self._intent_probe is not None and not self._intent_probe(request.client_order_id):
            raise OrderRejected(f"intent {request.client_order_id} was not journaled before send")
        if request.client_order_id in self._by_client:
            raise OrderRejected(f"duplicate client order id {request.client_order_id}")
        market = self._markets.get(request.symbol)
        snap = self._market.latest()
        book = self._book(request.symbol)
        if market is None or snap is None or book is None:
            raise OrderRejected(f"{self.venue}: unknown market {request.symbol}")
        ref = book.best_ask if request.side is Side.BUY else book.best_bid
        try:
            amount, price, cost = self._rules[request.symbol].prepare(
                request.side, request.type, request.amount, request.price, request.cost, ref
            )
        except RuleViolation as exc:
            raise OrderRejected(f"{self.venue} {request.symbol}: {exc}") from None
        reserve_asset, reserve = self._reservation(market, request, amount, price, cost, ref)
        bal = self._balances.setdefault(reserve_asset, [0.0, 0.0])
        if bal[0] + 1e-9 < reserve:
            raise OrderRejected(f"{self.venue}: insufficient {reserve_asset} for {request.symbol}")
        bal[0] -= reserve
        bal[1] += reserve
        order = Order(
            id=f"{self._id_prefix}-o{next(self._ids)}",
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            side=request.side,
            type=request.type,
            price=price,
            amount=amount,
            filled=0.0,
            cost=0.0,
            status=OrderStatus.OPEN,
            timestamp_ms=int(self._clock.time() * 1000),
            fee_currency=self.quote,
            cost_budget=cost,
        )
        self._orders[order.id] = order
        self._by_client[order.client_order_id] = order.id
        self._working[order.id] = _Working(order, snap.seq, reserve)
        self.orders_sent += 1
        if self.fail_after_execute > 0:
            # Fault injection: the order exists, the answer is lost (a 5xx after execute).
            self.fail_after_execute -= 1
            raise VenueUnavailable(f"{self.venue}: 502 after the order was accepted (injected)")
        return _copy(order)

    async def cancel_order(
        self, order_id: str | None, symbol: str, client_order_id: str | None = None
    ) -> Order:
        await self._delay()
        if self.cancel_failures_left > 0:
            self.cancel_failures_left -= 1
            raise VenueUnavailable(f"{self.venue}: cancel failed (injected outage)")
        order = self._lookup(order_id, client_order_id)
        self.cancel_now(order.id)
        return _copy(order)

    def cancel_now(self, order_id: str) -> None:
        """Cancel a working order at once (no-op when it is done), without a delay:
        for a venue built on this matching that applies cancels on its own schedule."""
        order = self._orders[order_id]
        work = self._working.pop(order_id, None)
        if work is not None:
            self._fill_ratio_of.pop(order_id, None)
            self._immediate_or_cancel.discard(order_id)
            self._release(order, work)
            order.status = OrderStatus.CANCELED

    async def cancel_all_orders(self, symbol: str | None = None) -> list[Order]:
        out = []
        for oid in [o for o, w in self._working.items() if symbol in (None, w.order.symbol)]:
            out.append(await self.cancel_order(oid, self._orders[oid].symbol))
        return out

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        await self._delay()
        return [
            _copy(w.order) for w in self._working.values() if symbol in (None, w.order.symbol)
        ]

    async def fetch_order(
        self, order_id: str | None, symbol: str, client_order_id: str | None = None
    ) -> Order:
        await self._delay()
        return _copy(self._lookup(order_id, client_order_id))

    async def close(self) -> None:
        return None

    # --- per-order behaviour, for a venue built on this matching (the emulator) ----
    def free(self, asset: str) -> float:
        return self._balances.get(asset, [0.0, 0.0])[0]

    def trades_of(self, symbol: str) -> list[Trade]:
        """Every fill on this symbol, oldest first (a venue's trade list)."""
        return [t for o in self._orders.values() if o.symbol == symbol for t in o.trades]

    def reserved(self, order_id: str) -> float:
        """Quote (buy) or base (sell) a working order still locks; 0 once it is done."""
        work = self._working.get(order_id)
        return work.reserved if work is not None else 0.0

    def is_working(self, order_id: str) -> bool:
        return order_id in self._working

    def set_fill_ratio(self, order_id: str, ratio: float) -> None:
        """Fill at most this share of what the book offers this order, each match."""
        self._fill_ratio_of[order_id] = ratio

    def match_now(self, order_id: str) -> None:
        """Match a working order against the current book at once, the way a venue
        fills a market order on arrival (paper orders wait for the next book)."""
        work = self._working.get(order_id)
        snap = self._market.latest()
        if work is None or snap is None:
            return
        if snap.seq != self._consumed_seq:
            self._consumed.clear()
            self._consumed_seq = snap.seq
        book = self._book(work.order.symbol)
        if book is not None:
            self._match(work, book, snap)

    def make_immediate_or_cancel(self, order_id: str) -> None:
        """A limit order that is cancelled after its first match (IOC/FOK), the way
        market orders always are."""
        self._immediate_or_cancel.add(order_id)

    # --- matching ---------------------------------------------------------------
    def _on_snapshot(self, snap: MarketSnapshot) -> None:
        if not self._working:
            return
        if snap.seq != self._consumed_seq:
            self._consumed.clear()
            self._consumed_seq = snap.seq
        books = snap.upbit if self.venue is Venue.UPBIT else snap.binance
        for oid in list(self._working):
            work = self._working[oid]
            if work.placed_seq >= snap.seq:
                continue  # decided on this book: fill only against the next one
            base = work.order.symbol.split("/")[0]
            book = books.get(base)
            if book is not None:
                self._match(work, book, snap)

    def _match(self, work: _Working, book: OrderBook, snap: MarketSnapshot) -> None:
        order = work.order
        market = self._markets[order.symbol]
        levels = book.asks if order.side is Side.BUY else book.bids
        limit = order.price if order.type is OrderType.LIMIT else None
        by_cost = order.amount is None
        ratio = self._fill_ratio_of.get(order.id, self.fill_ratio)
        if by_cost:
            want = ((order.cost_budget or 0.0) - order.cost) * ratio
        else:
            want = (order.amount or 0.0) * ratio
            want = min(want, order.remaining)
        step = market.amount_step
        ts = int(self._clock.time() * 1000)
        for price, size in levels:
            if want <= 1e-12:
                break
            if limit is not None and (
                (order.side is Side.BUY and price > limit) or (order.side is Side.SELL and price < limit)
            ):
                break
            key = (order.symbol + order.side, price)
            avail = size - self._consumed.get(key, 0.0)
            if avail <= 0:
                continue
            qty = min(avail, want / price if by_cost else want)
            qty = _floor_step(qty, step)
            if qty <= 0:
                break
            self._consumed[key] = self._consumed.get(key, 0.0) + qty
            self._fill(work, price, qty, ts)
            want -= qty * price if by_cost else qty
        tol = step / 2 if step > 0 else 1e-12
        if by_cost:
            finished, complete = True, order.filled > 0
        else:
            complete = order.remaining <= tol
            finished = (complete or order.type is OrderType.MARKET
                        or order.id in self._immediate_or_cancel)
        if finished:
            # Market orders are immediate-or-cancel: what the book could not
            # fill is released (Upbit reports such a market buy as cancelled).
            order.status = OrderStatus.CLOSED if complete else OrderStatus.CANCELED
            self._working.pop(order.id, None)
            self._fill_ratio_of.pop(order.id, None)
            self._immediate_or_cancel.discard(order.id)
            self._release(order, work)

    def _fill(self, work: _Working, price: float, qty: float, ts: int) -> None:
        order = work.order
        base = order.symbol.split("/")[0]
        cost = price * qty
        fee_asset, fee = self.quote, cost * self._fee
        if self.fee_rule is not None:
            fee_asset, fee = self.fee_rule(order, qty, cost, fee)
        quote_fee = fee if fee_asset == self.quote else 0.0
        quote_bal = self._balances.setdefault(self.quote, [0.0, 0.0])
        base_bal = self._balances.setdefault(base, [0.0, 0.0])
        if order.side is Side.BUY:
            spend = cost + quote_fee
            used = min(spend, work.reserved)
            quote_bal[1] -= used
            quote_bal[0] -= spend - used
            work.reserved -= used
            base_bal[0] += qty
        else:
            base_bal[1] -= qty
            work.reserved -= qty
            quote_bal[0] += cost - quote_fee
        if fee_asset != self.quote:
            self._balances.setdefault(fee_asset, [0.0, 0.0])[0] -= fee
        if not order.trades:
            order.fee_currency = fee_asset
        order.filled += qty
        order.cost += cost
        order.fee_cost += fee
        order.trades.append(
            Trade(
                id=f"{self._id_prefix}-t{next(self._ids)}",
                order_id=order.id,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side,
                price=price,
                amount=qty,
                cost=cost,
                fee_cost=fee,
                fee_currency=fee_asset,
                timestamp_ms=ts,
            )
        )

    # --- helpers ------------------------------------------------------------------
    def _reservation(
        self,
        market: Market,
        req: OrderRequest,
        amount: float | None,
        price: float | None,
        cost: float | None,
        ref: float,
    ) -> tuple[str, float]:
        if req.side is Side.SELL:
            return market.base, amount or 0.0
        if cost is not None:
            spend = cost
        else:
            px = price if price is not None else ref * 1.05
            spend = px * (amount or 0.0)
        return market.quote, spend * (1.0 + self._fee)

    def _release(self, order: Order, work: _Working) -> None:
        if work.reserved <= 0:
            return
        asset = order.symbol.split("/")[1] if order.side is Side.BUY else order.symbol.split("/")[0]
        bal = self._balances[asset]
        bal[1] -= work.reserved
        bal[0] += work.reserved
        work.reserved = 0.0

    def _lookup(self, order_id: str | None, client_order_id: str | None) -> Order:
        oid = order_id or self._by_client.get(client_order_id or "")
        if oid is None or oid not in self._orders:
            raise OrderNotFound(f"{self.venue}: order {order_id or client_order_id} not found")
        return self._orders[oid]

    def _book(self, symbol: str) -> OrderBook | None:
        snap = self._market.latest()
        if snap is None:
            return None
        base = symbol.split("/")[0]
        return (snap.upbit if self.venue is Venue.UPBIT else snap.binance).get(base)

    async def _delay(self) -> None:
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)


def _floor_step(qty: float, step: float) -> float:
    # The tolerance absorbs float error (9.99999e-9 of a 1e-8 step is one step),
    # so a remainder never gets stuck a hair under the step.
    if step <= 0:
        return qty
    return int(qty / step + 1e-6) * step


def _copy(order: Order) -> Order:
    return dataclasses.replace(order, trades=list(order.trades))


def paper_journal_probe(db_path: Path) -> IntentProbe:
    """Checks, on a second connection, that an intent is committed before the send.

    The read-only connection is opened once (opening one per order was most of an
    order tick's cost). In autocommit mode each SELECT is its own read transaction,
    so it sees exactly what the journal has committed by then, nothing uncommitted."""
    import sqlite3

    con: sqlite3.Connection | None = None

    def probe(client_order_id: str) -> bool:
        nonlocal con
        if con is None:
            con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5,
                                  isolation_level=None, check_same_thread=False)
        row = con.execute(
            "SELECT 1 FROM order_intents WHERE client_order_id = ?", (client_order_id,)
        ).fetchone()
        return row is not None

    return probe
