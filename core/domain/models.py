"""Domain value types shared by every layer below the surfaces.

Prices and quantities are floats on the hot path (a tick must stay well under a
millisecond); venue rounding is done in Decimal by core.venues.rules, and stored
rows keep the exact repr so audits can recompute in Decimal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Venue(StrEnum):
    UPBIT = "upbit"
    BINANCE = "binance"


QUOTE = {Venue.UPBIT: "KRW", Venue.BINANCE: "USDT"}
FX_SYMBOL = "USDT/KRW"  # Upbit's book is the FX rate (R-M1)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class OrderStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def done(self) -> bool:
        return self is not OrderStatus.OPEN


class Direction(StrEnum):
    """Which venue is rich: we sell where it is rich and buy where it is cheap."""

    SELL_UPBIT = "sell_upbit_buy_binance"
    BUY_UPBIT = "buy_upbit_sell_binance"

    def side_on(self, venue: Venue) -> Side:
        if self is Direction.SELL_UPBIT:
            return Side.SELL if venue is Venue.UPBIT else Side.BUY
        return Side.BUY if venue is Venue.UPBIT else Side.SELL


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"  # exits only
    HALTED = "HALTED"  # cancels and flattening only; survives restarts until reset


class ExitReason(StrEnum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    TIME_LIMIT = "time_limit"
    REVERSAL = "reversal"
    SHUTDOWN = "shutdown"
    KILL = "kill"
    UNWOUND = "unwound"  # one leg filled, the other did not: the filled leg was sold back


def pair_symbols(base: str) -> dict[Venue, str]:
    return {Venue.UPBIT: f"{base}/KRW", Venue.BINANCE: f"{base}/USDT"}


@dataclass(slots=True)
class OrderBook:
    symbol: str
    bids: list[tuple[float, float]]  # (price, qty), best first
    asks: list[tuple[float, float]]
    timestamp_ms: int
    seq: int = 0

    @property
    def best_bid(self) -> float:
        return self.bids[0][0]

    @property
    def best_ask(self) -> float:
        return self.asks[0][0]

    @property
    def mid(self) -> float:
        return (self.bids[0][0] + self.asks[0][0]) / 2.0


@dataclass(slots=True, frozen=True)
class MarketSnapshot:
    seq: int
    ts_ms: int
    fx: OrderBook  # USDT/KRW on Upbit
    upbit: dict[str, OrderBook]  # base -> BASE/KRW book
    binance: dict[str, OrderBook]  # base -> BASE/USDT book

    @property
    def fx_mid(self) -> float:
        return self.fx.mid


@dataclass(slots=True, frozen=True)
class SymbolStats:
    """What universe selection ranks on (R-M7)."""

    base: str
    upbit_quote_volume_krw: float
    binance_quote_volume_usdt: float
    spread_bps: float  # worse of the two venues
    depth_usd: float  # top-5-level depth, thinner of the two venues


@dataclass(slots=True, frozen=True)
class Market:
    """ccxt-like market description with the venue's own rules attached."""

    symbol: str
    base: str
    quote: str
    venue: Venue
    active: bool
    amount_step: float
    min_amount: float
    min_cost: float
    price_tick: float | None  # None: a price-band table applies (Upbit KRW)


@dataclass(slots=True, frozen=True)
class OrderRequest:
    symbol: str
    side: Side
    type: OrderType
    amount: float | None  # base quantity; None for an Upbit market buy sized in KRW
    client_order_id: str
    price: float | None = None
    cost: float | None = None  # quote amount to spend (market buy by cost)


@dataclass(slots=True)
class Trade:
    id: str
    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    price: float
    amount: float
    cost: float
    fee_cost: float
    fee_currency: str  # the asset the venue charged the fee in (quote, base, BNB...)
    timestamp_ms: int
    # The fee's value in the pair's quote at the fill (None: the fee is in the quote).
    fee_quote: float | None = None

    @property
    def fee_in_quote(self) -> float:
        """The fee valued in the pair's quote at the fill: as charged when the venue
        took quote, at the fill's price when it took the base, else as the venue
        adapter valued it (fee_quote)."""
        if self.fee_quote is not None:
            return self.fee_quote
        base, _, quote = self.symbol.partition("/")
        if self.fee_currency in ("", quote):
            return self.fee_cost
        if self.fee_currency == base:
            return self.fee_cost * self.price
        raise ValueError(f"a fee in {self.fee_currency} ({self.id}) has no value in {quote}")


@dataclass(slots=True)
class Order:
    id: str
    client_order_id: str
    symbol: str
    side: Side
    type: OrderType
    price: float | None
    amount: float | None
    filled: float
    cost: float
    status: OrderStatus
    timestamp_ms: int
    fee_cost: float = 0.0
    fee_currency: str = ""
    cost_budget: float | None = None  # market buy by cost
    trades: list[Trade] = field(default_factory=list)

    @property
    def remaining(self) -> float:
        if self.amount is None:
            return 0.0 if self.status.done else float("nan")
        return max(self.amount - self.filled, 0.0)

    @property
    def average(self) -> float | None:
        return self.cost / self.filled if self.filled > 0 else None


@dataclass(slots=True, frozen=True)
class Balance:
    free: float
    used: float

    @property
    def total(self) -> float:
        return self.free + self.used
