"""Venue order rules as data: Upbit KRW price bands and Binance symbol filters.

Pure and synchronous so the strategy, the adapters and the emulator share one
answer: an order the venue refuses after the other leg has filled is naked risk.
Arithmetic is Decimal because float multiples of a tick are not exact (0.1 * 3).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Protocol, runtime_checkable

from core.domain.models import Market, OrderType, Side, Venue
from core.errors import RuleViolation

Num = Decimal | float | int | str
Opt = float | None
Prepared = tuple[Opt, Opt, Opt]  # (amount, price, cost) exactly as they go on the wire
_ZERO = Decimal(0)

# Upbit's KRW tick table, in force since 2025-07-31. Descending; a band includes its lower bound.
UPBIT_KRW_TICKS: list[tuple[Decimal, Decimal]] = [
    (Decimal(lo), Decimal(tick))
    for lo, tick in (
        ("2000000", "1000"), ("1000000", "1000"), ("500000", "500"), ("100000", "100"),
        ("50000", "50"), ("10000", "10"), ("5000", "5"), ("1000", "1"), ("100", "1"),
        ("10", "0.1"), ("1", "0.01"), ("0.1", "0.001"), ("0.01", "0.0001"),
        ("0.001", "0.00001"), ("0.0001", "0.000001"), ("0.00001", "0.0000001"),
        ("0", "0.00000001"),
    )
]  # fmt: skip

# Per-market overrides as (lower bound inclusive, upper bound exclusive, tick).
# Stablecoins trade near 1,400 KRW, where a 1 KRW tick would be ~7 bps.
_STABLE_BAND = [(Decimal(1000), Decimal(10000), Decimal("0.5"))]
UPBIT_KRW_TICK_EXCEPTIONS: dict[str, list[tuple[Decimal, Decimal, Decimal]]] = dict.fromkeys(
    ("USDT/KRW", "USDC/KRW"), _STABLE_BAND
)

UPBIT_MIN_TOTAL_KRW = Decimal(5000)
UPBIT_DECIMALS = 8  # volume, and the KRW amount of a market buy
_UPBIT_QUANTUM = Decimal(1).scaleb(-UPBIT_DECIMALS)


def _dec(x: Num) -> Decimal:
    if isinstance(x, Decimal):
        d = x
    elif isinstance(x, float):
        if not math.isfinite(x):
            raise RuleViolation("params", f"non-finite number {x!r}")
        # repr is the shortest string that round-trips, so 0.1 stays 0.1, not 0.1000000000000000055
        d = Decimal(repr(x))
    else:
        d = Decimal(x)
    if not d.is_finite():
        raise RuleViolation("params", f"non-finite number {x!r}")
    return d


def _to_grid(x: Decimal, step: Decimal, anchor: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        return x
    n = ((x - anchor) / step).to_integral_value(rounding=rounding)
    return n * step + anchor


def _on_grid(x: Decimal, step: Decimal, anchor: Decimal = _ZERO) -> bool:
    return step <= 0 or (x - anchor) % step == 0


def _passive(side: Side) -> str:
    # A buy rounded up or a sell rounded down would pay more than the caller priced in.
    return ROUND_FLOOR if side is Side.BUY else ROUND_CEILING


def _upbit_symbol(symbol: str) -> str:
    if symbol.startswith("KRW-"):  # Upbit's native market code
        return f"{symbol[4:]}/KRW"
    return symbol


def upbit_tick(price: Decimal, symbol: str | None = None) -> Decimal:
    if symbol is not None:
        for lo, hi, tick in UPBIT_KRW_TICK_EXCEPTIONS.get(_upbit_symbol(symbol), ()):
            if lo <= price < hi:
                return tick
    for lo, tick in UPBIT_KRW_TICKS:
        if price >= lo:
            return tick
    return UPBIT_KRW_TICKS[-1][1]


def upbit_band(price: Decimal, symbol: str | None = None) -> tuple[Decimal, Decimal]:
    """The price band [low, high) whose tick applies at `price`."""
    if symbol is not None:
        for lo, hi, _tick in UPBIT_KRW_TICK_EXCEPTIONS.get(_upbit_symbol(symbol), ()):
            if lo <= price < hi:
                return lo, hi
    hi = Decimal("Infinity")
    for lo, _tick in UPBIT_KRW_TICKS:
        if price >= lo:
            return lo, hi
        hi = lo
    return UPBIT_KRW_TICKS[-1][0], hi


def upbit_market_buy_cost(amount: float, ref_price: float) -> float:
    """KRW to spend for about `amount` base at `ref_price`; truncated so we never overspend."""
    a, r = _dec(amount), _dec(ref_price)
    if a <= 0 or r <= 0:
        raise RuleViolation("params", f"amount {amount} and ref_price {ref_price} must be > 0")
    return float(_to_grid(a * r, _UPBIT_QUANTUM, _ZERO, ROUND_FLOOR))


@runtime_checkable
class VenueRules(Protocol):
    @property
    def symbol(self) -> str: ...

    def round_price(self, price: float, side: Side) -> float: ...

    def round_amount(self, amount: float) -> float: ...

    def check(
        self, side: Side, type: OrderType, amount: Opt, price: Opt, cost: Opt, ref_price: float
    ) -> None: ...

    def prepare(
        self, side: Side, type: OrderType, amount: Opt, price: Opt, cost: Opt, ref_price: float
    ) -> Prepared: ...


class _RulesBase(ABC):
    symbol: str

    @abstractmethod
    def round_price(self, price: float, side: Side) -> float: ...
    @abstractmethod
    def _round_amount(self, amount: Decimal, type: OrderType) -> Decimal: ...
    @abstractmethod
    def _round_cost(self, cost: Decimal) -> Decimal: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.symbol!r})"

    def round_amount(self, amount: float, type: OrderType = OrderType.LIMIT) -> float:
        return float(self._round_amount(_dec(amount), type))

    @abstractmethod
    def check(
        self, side: Side, type: OrderType, amount: Opt, price: Opt, cost: Opt, ref_price: float
    ) -> None: ...

    def prepare(
        self, side: Side, type: OrderType, amount: Opt, price: Opt, cost: Opt, ref_price: float
    ) -> Prepared:
        a = None if amount is None else float(self._round_amount(_dec(amount), type))
        # A market order carries no price; dropping it keeps check() and the wire in step.
        p = None if price is None or type is OrderType.MARKET else self.round_price(price, side)
        c = None if cost is None else float(self._round_cost(_dec(cost)))
        self.check(side, type, a, p, c, ref_price)
        return a, p, c


def _positive_ref(ref_price: float) -> Decimal:
    r = _dec(ref_price)
    if r <= 0:
        raise RuleViolation("params", f"market order needs a positive ref_price, got {ref_price}")
    return r


def _need(value: float | None, what: str, why: str) -> Decimal:
    if value is None:
        raise RuleViolation("params", f"{what} is required for {why}")
    return _dec(value)


def _limit_args(amount: Opt, price: Opt, cost: Opt) -> tuple[Decimal, Decimal]:
    if cost is not None:
        raise RuleViolation("params", "a limit order is sized by amount, not cost")
    return _need(amount, "amount", "a limit order"), _need(price, "price", "a limit order")


class UpbitKrwRules(_RulesBase):
    venue = Venue.UPBIT

    def __init__(
        self, symbol: str, *, tick_size: Num | None = None, min_total: Num = UPBIT_MIN_TOTAL_KRW,
        pair_tick: tuple[Num, Num] | None = None,
    ) -> None:
        self.symbol = _upbit_symbol(symbol)
        if not self.symbol.endswith("/KRW"):
            raise ValueError(f"UpbitKrwRules covers KRW markets only, got {symbol!r}")
        # A fixed tick (a simulated market's) beats the published table.
        self.tick_size = _dec(tick_size) if tick_size else None
        self.min_total = _dec(min_total)
        # The pair's own tick as /v1/orderbook/instruments gave it, (tick, price then):
        # it holds within the band of that price; outside it the table decides.
        self.pair_tick: tuple[Decimal, Decimal, Decimal] | None = None
        if pair_tick is not None:
            tick, ref = _dec(pair_tick[0]), _dec(pair_tick[1])
            if tick > 0 and ref > 0:
                lo, hi = upbit_band(ref, self.symbol)
                self.pair_tick = (lo, hi, tick)

    def tick(self, price: Decimal) -> Decimal:
        if self.tick_size is not None:
            return self.tick_size
        if self.pair_tick is not None and self.pair_tick[0] <= price < self.pair_tick[1]:
            return self.pair_tick[2]
        return upbit_tick(price, self.symbol)

    def round_price(self, price: float, side: Side) -> float:
        # Each band's lower bound is on every smaller tick, so rounding across a band edge is safe.
        p = _dec(price)
        return float(_to_grid(p, self.tick(p), _ZERO, _passive(side)))

    def _round_amount(self, amount: Decimal, type: OrderType) -> Decimal:
        return _to_grid(amount, _UPBIT_QUANTUM, _ZERO, ROUND_FLOOR)

    def _round_cost(self, cost: Decimal) -> Decimal:
        return _to_grid(cost, _UPBIT_QUANTUM, _ZERO, ROUND_FLOOR)

    def _check_volume(self, a: Decimal) -> None:
        if a <= 0 or not _on_grid(a, _UPBIT_QUANTUM):
            raise RuleViolation("lot_size", f"volume {a} must be > 0 with at most 8 decimals")

    def _check_total(self, total: Decimal) -> None:
        if total < self.min_total:
            raise RuleViolation(
                "min_total", f"order total {total} KRW is under the {self.min_total} KRW minimum"
            )

    def check(
        self, side: Side, type: OrderType, amount: Opt, price: Opt, cost: Opt, ref_price: float
    ) -> None:
        if type is OrderType.LIMIT:
            a, p = _limit_args(amount, price, cost)
            if p <= 0 or not _on_grid(p, self.tick(p)):
                raise RuleViolation(
                    "price_filter", f"price {p} is not on the {self.tick(p)} KRW tick"
                )
            self._check_volume(a)
            self._check_total(a * p)
        elif side is Side.BUY:
            # Upbit sizes a market buy in KRW (ord_type=price); a volume would be ignored.
            if amount is not None or cost is None:
                raise RuleViolation(
                    "market_buy_needs_cost",
                    "an Upbit market buy takes cost (KRW to spend) and no amount;"
                    " see upbit_market_buy_cost()",
                )
            c = _dec(cost)
            if not _on_grid(c, _UPBIT_QUANTUM):
                raise RuleViolation("cost_precision", f"cost {c} has more than 8 decimals")
            self._check_total(c)
        else:
            if cost is not None:
                raise RuleViolation("params", "an Upbit market sell is sized by amount, not cost")
            a = _need(amount, "amount", "a market sell")
            self._check_volume(a)
            self._check_total(a * _positive_ref(ref_price))


class BinanceSymbolRules(_RulesBase):
    """exchangeInfo filters; a zero bound or step switches that part of a filter off."""

    venue = Venue.BINANCE

    # fmt: off
    def __init__(
        self, symbol: str,
        tick_size: Num, min_price: Num, max_price: Num,  # PRICE_FILTER
        step_size: Num, min_qty: Num, max_qty: Num,  # LOT_SIZE
        market_step_size: Num, market_min_qty: Num, market_max_qty: Num,  # MARKET_LOT_SIZE
        min_notional: Num, apply_min_to_market: bool = True,  # NOTIONAL / MIN_NOTIONAL
        max_notional: Num | None = None, apply_max_to_market: bool = False,
        quote_precision: int = 8,  # quoteOrderQty decimals
    ) -> None:
        # fmt: on
        self.symbol = symbol
        self.tick_size = _dec(tick_size)
        self.min_price = _dec(min_price)
        self.max_price = _dec(max_price)
        self.step_size = _dec(step_size)
        self.min_qty = _dec(min_qty)
        self.max_qty = _dec(max_qty)
        self.market_step_size = _dec(market_step_size)
        self.market_min_qty = _dec(market_min_qty)
        self.market_max_qty = _dec(market_max_qty)
        self.min_notional = _dec(min_notional)
        self.apply_min_to_market = apply_min_to_market
        self.max_notional = _dec(max_notional) if max_notional is not None else _ZERO
        self.apply_max_to_market = apply_max_to_market
        self.quote_quantum = Decimal(1).scaleb(-quote_precision)

    @classmethod
    def from_exchange_info(cls, symbol_info: dict[str, Any]) -> BinanceSymbolRules:
        filters = {f["filterType"]: f for f in symbol_info.get("filters", [])}
        pf = filters.get("PRICE_FILTER", {})
        lot = filters.get("LOT_SIZE", {})
        mlot = filters.get("MARKET_LOT_SIZE", {})
        min_notional: str = "0"
        apply_min, apply_max = True, False
        max_notional: str | None = None
        if "NOTIONAL" in filters:
            nf = filters["NOTIONAL"]
            min_notional = nf.get("minNotional", "0")
            apply_min = bool(nf.get("applyMinToMarket", True))
            max_notional = nf.get("maxNotional")
            apply_max = bool(nf.get("applyMaxToMarket", False))
        elif "MIN_NOTIONAL" in filters:
            nf = filters["MIN_NOTIONAL"]
            min_notional = nf.get("minNotional", "0")
            apply_min = bool(nf.get("applyToMarket", True))
        precision = symbol_info.get("quoteAssetPrecision", symbol_info.get("quotePrecision", 8))
        return cls(
            symbol=symbol_info.get("symbol", ""),
            tick_size=pf.get("tickSize", "0"),
            min_price=pf.get("minPrice", "0"),
            max_price=pf.get("maxPrice", "0"),
            step_size=lot.get("stepSize", "0"),
            min_qty=lot.get("minQty", "0"),
            max_qty=lot.get("maxQty", "0"),
            market_step_size=mlot.get("stepSize", "0"),
            market_min_qty=mlot.get("minQty", "0"),
            market_max_qty=mlot.get("maxQty", "0"),
            min_notional=min_notional,
            apply_min_to_market=apply_min,
            max_notional=max_notional,
            apply_max_to_market=apply_max,
            quote_precision=int(precision),
        )

    def round_price(self, price: float, side: Side) -> float:
        # Binance validates (price - minPrice) % tickSize, so the grid is anchored at minPrice.
        return float(_to_grid(_dec(price), self.tick_size, self.min_price, _passive(side)))

    def _round_amount(self, amount: Decimal, type: OrderType) -> Decimal:
        a = _to_grid(amount, self.step_size, self.min_qty, ROUND_FLOOR)
        if type is OrderType.MARKET:
            a = _to_grid(a, self.market_step_size, self.market_min_qty, ROUND_FLOOR)
        return max(a, _ZERO)

    def _round_cost(self, cost: Decimal) -> Decimal:
        return _to_grid(cost, self.quote_quantum, _ZERO, ROUND_FLOOR)

    def _check_price(self, p: Decimal) -> None:
        if p <= 0:
            raise RuleViolation("price_filter", f"price {p} must be > 0")
        if self.min_price > 0 and p < self.min_price:
            raise RuleViolation("price_filter", f"price {p} is under minPrice {self.min_price}")
        if self.max_price > 0 and p > self.max_price:
            raise RuleViolation("price_filter", f"price {p} is over maxPrice {self.max_price}")
        if not _on_grid(p, self.tick_size, self.min_price):
            raise RuleViolation("price_filter", f"price {p} is not on tickSize {self.tick_size}")

    @staticmethod
    def _check_lot(a: Decimal, lo: Decimal, hi: Decimal, step: Decimal, name: str) -> None:
        if a <= 0 or a < lo:
            raise RuleViolation("lot_size", f"quantity {a} is under {name} minQty {lo}")
        if hi > 0 and a > hi:
            raise RuleViolation("max_qty", f"quantity {a} is over {name} maxQty {hi}")
        if not _on_grid(a, step, lo):
            raise RuleViolation("lot_size", f"quantity {a} is not on {name} stepSize {step}")

    def _check_notional(self, n: Decimal, market: bool) -> None:
        if (not market or self.apply_min_to_market) and n < self.min_notional:
            raise RuleViolation(
                "min_notional", f"notional {n} is under minNotional {self.min_notional}"
            )
        max_applies = self.max_notional > 0 and (not market or self.apply_max_to_market)
        if max_applies and n > self.max_notional:
            raise RuleViolation(
                "max_notional", f"notional {n} is over maxNotional {self.max_notional}"
            )

    def check(
        self, side: Side, type: OrderType, amount: Opt, price: Opt, cost: Opt, ref_price: float
    ) -> None:
        if type is OrderType.LIMIT:
            a, p = _limit_args(amount, price, cost)
            self._check_price(p)
            self._check_lot(a, self.min_qty, self.max_qty, self.step_size, "LOT_SIZE")
            self._check_notional(a * p, market=False)
            return
        if (amount is None) == (cost is None):
            raise RuleViolation("params", "a market order takes exactly one of amount / cost")
        if cost is not None:  # quoteOrderQty: the venue derives the quantity itself
            c = _dec(cost)
            if c <= 0 or not _on_grid(c, self.quote_quantum):
                raise RuleViolation("cost_precision", f"quoteOrderQty {c} is not a valid amount")
            self._check_notional(c, market=True)
            return
        a = _dec(amount)  # type: ignore[arg-type]
        # LOT_SIZE binds market orders too; MARKET_LOT_SIZE only narrows it.
        self._check_lot(a, self.min_qty, self.max_qty, self.step_size, "LOT_SIZE")
        self._check_lot(
            a, self.market_min_qty, self.market_max_qty, self.market_step_size, "MARKET_LOT_SIZE"
        )
        self._check_notional(a * _positive_ref(ref_price), market=True)


def rules_for_market(market: Market) -> VenueRules:
    if market.venue is Venue.UPBIT:
        return UpbitKrwRules(
            market.symbol,
            tick_size=market.price_tick,
            min_total=_dec(market.min_cost) if market.min_cost > 0 else UPBIT_MIN_TOTAL_KRW,
        )
    # A Market carries no price bounds, max quantity or market-lot filter: zero switches them off.
    return BinanceSymbolRules(
        market.symbol, market.price_tick or 0, 0, 0,
        market.amount_step, market.min_amount, 0,
        0, 0, 0,
        market.min_cost,
    )  # fmt: skip
