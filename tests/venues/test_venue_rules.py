"""Venue rules against fixtures of the real Upbit KRW tick table and a BTCUSDT exchangeInfo entry."""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.models import Market, OrderType, Side, Venue
from core.errors import RuleViolation
from core.venues.rules import (
    UPBIT_KRW_TICK_EXCEPTIONS,
    UPBIT_KRW_TICKS,
    BinanceSymbolRules,
    UpbitKrwRules,
    VenueRules,
    rules_for_market,
    upbit_market_buy_cost,
    upbit_tick,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
UPBIT_FIXTURE = json.loads((FIXTURES / "upbit_krw_ticks.json").read_text())
BTCUSDT_INFO = json.loads((FIXTURES / "binance_exchange_info_btcusdt.json").read_text())
BANDS = [(Decimal(b["lower"]), Decimal(b["tick"])) for b in UPBIT_FIXTURE["bands"]]
# (lower bound, its tick, tick of the band just below) for every band edge above zero
EDGES = [(lo, tick, BANDS[i + 1][1]) for i, (lo, tick) in enumerate(BANDS) if lo > 0]

BUY, SELL = Side.BUY, Side.SELL
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET


def _on(x: float, step: Decimal, anchor: Decimal = Decimal(0)) -> bool:
    return (Decimal(repr(x)) - anchor) % step == 0


def _rule(exc: pytest.ExceptionInfo[RuleViolation]) -> str:
    return exc.value.rule


@pytest.fixture
def btc_krw() -> UpbitKrwRules:
    return UpbitKrwRules("BTC/KRW")


@pytest.fixture
def btcusdt() -> BinanceSymbolRules:
    return BinanceSymbolRules.from_exchange_info(BTCUSDT_INFO)


def _binance(**over: object) -> BinanceSymbolRules:
    kw: dict[str, object] = {
        "symbol": "X/USDT", "tick_size": "0.01", "min_price": "0.01", "max_price": "1000000",
        "step_size": "0.0001", "min_qty": "0.001", "max_qty": "1000", "market_step_size": "0",
        "market_min_qty": "0", "market_max_qty": "0", "min_notional": "5",
    }  # fmt: skip
    kw.update(over)
    return BinanceSymbolRules(**kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- Upbit table


def test_module_table_is_the_published_table() -> None:
    assert UPBIT_KRW_TICKS == BANDS
    for sym, bands in UPBIT_FIXTURE["exceptions"].items():
        want = [(Decimal(b["lower"]), Decimal(b["upper"]), Decimal(b["tick"])) for b in bands]
        assert UPBIT_KRW_TICK_EXCEPTIONS[sym] == want


@pytest.mark.parametrize(("lo", "tick", "below_tick"), EDGES, ids=[str(e[0]) for e in EDGES])
def test_every_band_edge(lo: Decimal, tick: Decimal, below_tick: Decimal) -> None:
    rules = UpbitKrwRules("BTC/KRW")
    at, below = float(lo), float(lo - below_tick)
    assert upbit_tick(lo) == tick  # the band includes its lower bound
    assert upbit_tick(lo - below_tick) == below_tick
    for side in (BUY, SELL):
        assert rules.round_price(at, side) == at
        assert rules.round_price(below, side) == below
    # off-tick just below the edge: buy stays in the lower band, sell climbs onto the edge
    half_below = float(lo - below_tick / 2)
    assert rules.round_price(half_below, BUY) == below
    assert rules.round_price(half_below, SELL) == at
    # off-tick just above the edge, on the coarser tick
    half_above = float(lo + tick / 2)
    assert rules.round_price(half_above, BUY) == at
    assert rules.round_price(half_above, SELL) == float(lo + tick)
    amount = float((Decimal(5000) / (lo - below_tick)).to_integral_value(ROUND_CEILING))
    rules.check(BUY, LIMIT, amount, at, None, at)
    rules.check(SELL, LIMIT, amount, below, None, below)
    with pytest.raises(RuleViolation) as exc:
        rules.check(BUY, LIMIT, amount, half_above, None, at)
    assert _rule(exc) == "price_filter"


def test_bottom_band_and_huge_prices() -> None:
    assert upbit_tick(Decimal("0.000005")) == Decimal("0.00000001")
    assert upbit_tick(Decimal(150000000)) == Decimal(1000)
    rules = UpbitKrwRules("KRW-BTC")  # Upbit's native market code
    assert rules.symbol == "BTC/KRW"
    assert rules.round_price(150_000_400.0, BUY) == 150_000_000.0
    assert rules.round_price(150_000_400.0, SELL) == 150_001_000.0


@pytest.mark.parametrize(
    ("price", "buy", "sell"),
    [
        (95_123_456.0, 95_123_000.0, 95_124_000.0),
        (751_234.0, 751_000.0, 751_500.0),
        (12_345.0, 12_340.0, 12_350.0),
        (7_777.0, 7_775.0, 7_780.0),
        (123.4, 123.0, 124.0),
        (5.555, 5.55, 5.56),
        (0.12345, 0.123, 0.124),
        (0.3, 0.3, 0.3),  # float 0.3 is not 3 * 0.1: Decimal keeps it on the tick
    ],
)
def test_off_tick_rounds_toward_passive(price: float, buy: float, sell: float) -> None:
    rules = UpbitKrwRules("XRP/KRW")
    assert rules.round_price(price, BUY) == buy
    assert rules.round_price(price, SELL) == sell


def test_min_total_edges(btc_krw: UpbitKrwRules) -> None:
    with pytest.raises(RuleViolation) as exc:
        btc_krw.check(BUY, LIMIT, 4.99999, 1000.0, None, 1000.0)  # 4,999.99 KRW
    assert _rule(exc) == "min_total"
    btc_krw.check(BUY, LIMIT, 5.0, 1000.0, None, 1000.0)
    with pytest.raises(RuleViolation) as exc:
        btc_krw.check(BUY, MARKET, None, None, 4999.99, 1000.0)
    assert _rule(exc) == "min_total"
    btc_krw.check(BUY, MARKET, None, None, 5000.0, 1000.0)
    with pytest.raises(RuleViolation) as exc:
        btc_krw.check(SELL, MARKET, 4.99999, None, None, 1000.0)
    assert _rule(exc) == "min_total"
    btc_krw.check(SELL, MARKET, 5.0, None, None, 1000.0)


def test_upbit_volume_precision(btc_krw: UpbitKrwRules) -> None:
    assert btc_krw.round_amount(0.123456789) == 0.12345678
    assert btc_krw.round_amount(0.12345678) == 0.12345678
    with pytest.raises(RuleViolation) as exc:
        btc_krw.check(SELL, LIMIT, 0.123456789, 95_000_000.0, None, 95_000_000.0)
    assert _rule(exc) == "lot_size"


def test_market_buy_is_sized_in_krw(btc_krw: UpbitKrwRules) -> None:
    btc_krw.check(BUY, MARKET, None, None, 10_000.0, 95_000_000.0)
    with pytest.raises(RuleViolation) as exc:
        btc_krw.check(BUY, MARKET, 0.001, None, None, 95_000_000.0)
    assert _rule(exc) == "market_buy_needs_cost"
    with pytest.raises(RuleViolation) as exc:
        btc_krw.prepare(BUY, MARKET, 0.001, None, None, 95_000_000.0)
    assert _rule(exc) == "market_buy_needs_cost"
    with pytest.raises(RuleViolation) as exc:  # a volume alongside the KRW is still refused
        btc_krw.check(BUY, MARKET, 0.001, None, 95_000.0, 95_000_000.0)
    assert _rule(exc) == "market_buy_needs_cost"
    # the KRW to spend is truncated to 8 decimals, never rounded up
    assert btc_krw.prepare(BUY, MARKET, None, None, 5000.123456789, 1.0) == (
        None,
        None,
        5000.12345678,
    )
    cost = upbit_market_buy_cost(0.001, 95_000_123.0)
    assert cost == 95_000.123
    assert btc_krw.prepare(BUY, MARKET, None, None, cost, 95_000_123.0) == (None, None, cost)
    assert upbit_market_buy_cost(0.123456789, 1.5) == 0.18518518  # truncated, never rounded up
    with pytest.raises(RuleViolation) as exc:
        btc_krw.check(BUY, MARKET, None, None, 5000.123456789, 95_000_000.0)
    assert _rule(exc) == "cost_precision"
    with pytest.raises(RuleViolation) as exc:
        btc_krw.check(SELL, MARKET, None, None, 10_000.0, 95_000_000.0)
    assert _rule(exc) == "params"


def test_prepare_limit_rounds_then_checks(btc_krw: UpbitKrwRules) -> None:
    assert btc_krw.prepare(BUY, LIMIT, 0.0012345678901, 95_123_456.0, None, 0.0) == (
        0.00123456,
        95_123_000.0,
        None,
    )
    assert btc_krw.prepare(SELL, LIMIT, 0.001, 95_123_456.0, None, 0.0) == (
        0.001,
        95_124_000.0,
        None,
    )
    # 5,000.05 KRW asked; rounding the buy down to 95,000,000 leaves 4,999.85: refused
    with pytest.raises(RuleViolation) as exc:
        btc_krw.prepare(BUY, LIMIT, 0.00005263, 95_000_900.0, None, 0.0)
    assert _rule(exc) == "min_total"


@pytest.mark.parametrize("symbol", ["USDT/KRW", "USDC/KRW", "KRW-USDT"])
def test_stablecoin_exception_tick(symbol: str) -> None:
    rules = UpbitKrwRules(symbol)
    assert upbit_tick(Decimal(1400), symbol) == Decimal("0.5")
    assert upbit_tick(Decimal(1000), symbol) == Decimal("0.5")
    assert upbit_tick(Decimal("999.5"), symbol) == Decimal(1)  # below the exception band
    assert upbit_tick(Decimal(10000), symbol) == Decimal(10)  # upper bound is exclusive
    assert rules.round_price(1400.3, BUY) == 1400.0
    assert rules.round_price(1400.3, SELL) == 1400.5
    rules.check(BUY, LIMIT, 10.0, 1400.5, None, 1400.5)


def test_half_tick_refused_outside_exception() -> None:
    assert upbit_tick(Decimal(1400), "BTC/KRW") == Decimal(1)
    assert upbit_tick(Decimal(1400)) == Decimal(1)
    with pytest.raises(RuleViolation) as exc:
        UpbitKrwRules("XRP/KRW").check(BUY, LIMIT, 10.0, 1400.5, None, 1400.5)
    assert _rule(exc) == "price_filter"


def test_upbit_refuses_non_krw_symbol() -> None:
    with pytest.raises(ValueError, match="KRW"):
        UpbitKrwRules("BTC/USDT")


# ------------------------------------------------------------ Binance filters


def test_from_exchange_info_parses_real_filters(btcusdt: BinanceSymbolRules) -> None:
    assert btcusdt.symbol == "BTCUSDT"
    assert (btcusdt.tick_size, btcusdt.min_price, btcusdt.max_price) == (
        Decimal("0.01"),
        Decimal("0.01"),
        Decimal(1000000),
    )
    assert (btcusdt.step_size, btcusdt.min_qty, btcusdt.max_qty) == (
        Decimal("0.00001"),
        Decimal("0.00001"),
        Decimal(9000),
    )
    assert btcusdt.market_max_qty == Decimal("107.46806124")
    assert btcusdt.market_step_size == 0
    assert btcusdt.min_notional == Decimal(5)
    assert btcusdt.apply_min_to_market is True
    assert btcusdt.max_notional == Decimal(9000000)
    assert btcusdt.apply_max_to_market is False
    assert isinstance(btcusdt, VenueRules)


def test_legacy_min_notional_filter() -> None:
    info = {
        "symbol": "OLDUSDT",
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": "0", "maxPrice": "0", "tickSize": "0.001"},
            {"filterType": "LOT_SIZE", "minQty": "1", "maxQty": "0", "stepSize": "1"},
            {"filterType": "MIN_NOTIONAL", "minNotional": "10.0", "applyToMarket": False},
        ],
    }
    rules = BinanceSymbolRules.from_exchange_info(info)
    assert rules.min_notional == Decimal(10)
    assert rules.apply_min_to_market is False
    with pytest.raises(RuleViolation) as exc:
        rules.check(BUY, LIMIT, 9.0, 1.0, None, 1.0)
    assert _rule(exc) == "min_notional"
    rules.check(BUY, MARKET, 9.0, None, None, 1.0)
    rules.check(BUY, LIMIT, 10_000_000.0, 1.0, None, 1.0)  # maxQty and maxPrice 0: no cap


def test_tick_size_rounding(btcusdt: BinanceSymbolRules) -> None:
    assert btcusdt.round_price(65000.123, BUY) == 65000.12
    assert btcusdt.round_price(65000.123, SELL) == 65000.13
    assert btcusdt.round_price(65000.12, BUY) == 65000.12
    assert btcusdt.round_price(65000.12, SELL) == 65000.12
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(BUY, LIMIT, 0.001, 65000.125, None, 65000.0)
    assert _rule(exc) == "price_filter"
    btcusdt.check(BUY, LIMIT, 0.001, 65000.13, None, 65000.0)


def test_min_max_price(btcusdt: BinanceSymbolRules) -> None:
    btcusdt.check(BUY, LIMIT, 1000.0, 0.01, None, 0.01)
    btcusdt.check(SELL, LIMIT, 0.00001, 1_000_000.0, None, 1_000_000.0)
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(SELL, LIMIT, 0.00001, 1_000_000.01, None, 1_000_000.0)
    assert _rule(exc) == "price_filter"
    rules = _binance(min_price="0.05")
    rules.check(BUY, LIMIT, 200.0, 0.05, None, 0.05)
    with pytest.raises(RuleViolation) as exc:
        rules.check(BUY, LIMIT, 200.0, 0.04, None, 0.05)  # on the tick, under minPrice
    assert _rule(exc) == "price_filter"


def test_min_qty_max_qty(btcusdt: BinanceSymbolRules) -> None:
    rules = _binance()
    rules.check(BUY, LIMIT, 0.001, 10_000.0, None, 10_000.0)
    with pytest.raises(RuleViolation) as exc:
        rules.check(BUY, LIMIT, 0.0009, 10_000.0, None, 10_000.0)  # on step, under minQty
    assert _rule(exc) == "lot_size"
    btcusdt.check(BUY, LIMIT, 9000.0, 100.0, None, 100.0)
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(BUY, LIMIT, 9000.00001, 100.0, None, 100.0)
    assert _rule(exc) == "max_qty"


def test_market_lot_size(btcusdt: BinanceSymbolRules) -> None:
    btcusdt.check(SELL, MARKET, 107.46806, None, None, 65000.0)
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(SELL, MARKET, 107.46807, None, None, 65000.0)
    assert _rule(exc) == "max_qty"
    # LOT_SIZE still binds a market order's step
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(SELL, MARKET, 0.000123, None, None, 65000.0)
    assert _rule(exc) == "lot_size"
    rules = _binance(market_step_size="0.01", market_min_qty="0.01")
    assert rules.round_amount(1.23456, MARKET) == 1.23
    assert rules.round_amount(1.23456) == 1.2345
    with pytest.raises(RuleViolation) as exc:
        rules.check(SELL, MARKET, 1.2345, None, None, 100.0)
    assert _rule(exc) == "lot_size"


def test_step_size_truncation(btcusdt: BinanceSymbolRules) -> None:
    assert btcusdt.round_amount(0.123456789) == 0.12345
    assert btcusdt.round_amount(0.12345) == 0.12345
    assert btcusdt.round_amount(0.000019) == 0.00001
    assert _binance(step_size="0.1", min_qty="0.1").round_amount(0.3) == 0.3
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(BUY, LIMIT, 0.123456, 65000.0, None, 65000.0)
    assert _rule(exc) == "lot_size"


def test_min_notional_limit(btcusdt: BinanceSymbolRules) -> None:
    btcusdt.check(BUY, LIMIT, 0.0001, 50000.0, None, 50000.0)  # exactly 5
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(BUY, LIMIT, 0.0001, 49999.99, None, 50000.0)  # 4.999999
    assert _rule(exc) == "min_notional"


def test_min_notional_market(btcusdt: BinanceSymbolRules) -> None:
    btcusdt.check(SELL, MARKET, 0.0001, None, None, 50000.0)
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(SELL, MARKET, 0.0001, None, None, 49999.99)
    assert _rule(exc) == "min_notional"
    btcusdt.check(BUY, MARKET, None, None, 5.0, 50000.0)  # quoteOrderQty
    assert btcusdt.prepare(BUY, MARKET, None, 65000.0, 12.345678919, 65000.0) == (
        None,
        None,
        12.34567891,
    )
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(BUY, MARKET, None, None, 4.99999999, 50000.0)
    assert _rule(exc) == "min_notional"
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(BUY, MARKET, 0.001, None, 65.0, 65000.0)
    assert _rule(exc) == "params"


def test_min_notional_not_applied_to_market() -> None:
    info = json.loads(json.dumps(BTCUSDT_INFO))
    for f in info["filters"]:
        if f["filterType"] == "NOTIONAL":
            f["applyMinToMarket"] = False
    rules = BinanceSymbolRules.from_exchange_info(info)
    rules.check(SELL, MARKET, 0.0001, None, None, 49999.99)
    rules.check(BUY, MARKET, None, None, 4.99999999, 50000.0)
    with pytest.raises(RuleViolation) as exc:
        rules.check(BUY, LIMIT, 0.0001, 49999.99, None, 50000.0)
    assert _rule(exc) == "min_notional"


def test_max_notional_limit_only(btcusdt: BinanceSymbolRules) -> None:
    with pytest.raises(RuleViolation) as exc:
        btcusdt.check(BUY, LIMIT, 100.0, 90000.01, None, 90000.0)
    assert _rule(exc) == "max_notional"
    btcusdt.check(BUY, MARKET, 100.0, None, None, 90000.01)  # applyMaxToMarket false


def test_tick_size_zero_disables_price_filter() -> None:
    rules = _binance(tick_size="0", min_price="0", max_price="0")
    assert rules.round_price(65000.123456, BUY) == 65000.123456
    assert rules.round_price(65000.123456, SELL) == 65000.123456
    rules.check(BUY, LIMIT, 0.001, 65000.123456, None, 65000.0)
    rules.check(BUY, LIMIT, 0.001, 1e12, None, 65000.0)


def test_rules_for_market() -> None:
    up = rules_for_market(
        Market("ETH/KRW", "ETH", "KRW", Venue.UPBIT, True, 1e-8, 0.0, 5000.0, None)
    )
    assert isinstance(up, UpbitKrwRules)
    assert up.round_price(4_567_890.0, BUY) == 4_567_000.0
    bn = rules_for_market(
        Market("ETH/USDT", "ETH", "USDT", Venue.BINANCE, True, 0.0001, 0.0001, 5.0, 0.01)
    )
    assert isinstance(bn, BinanceSymbolRules)
    assert bn.round_price(3456.789, SELL) == 3456.79
    assert bn.round_amount(0.123456) == 0.1234
    with pytest.raises(RuleViolation) as exc:
        bn.check(BUY, LIMIT, 0.0014, 3456.79, None, 3456.79)  # 4.84 USDT
    assert _rule(exc) == "min_notional"
    bn.check(BUY, LIMIT, 0.0015, 3456.79, None, 3456.79)


# ------------------------------------------------------------------ properties

upbit_prices = st.floats(min_value=1e-9, max_value=5e9, allow_nan=False, allow_infinity=False)
sides = st.sampled_from([BUY, SELL])
upbit_syms = st.sampled_from(["BTC/KRW", "USDT/KRW", "DOGE/KRW"])


@given(price=upbit_prices, side=sides, symbol=upbit_syms)
def test_upbit_rounded_price_on_tick_and_passive(price: float, side: Side, symbol: str) -> None:
    rounded = UpbitKrwRules(symbol).round_price(price, side)
    d = Decimal(repr(rounded))
    assert d % upbit_tick(d, symbol) == 0
    assert rounded <= price if side is BUY else rounded >= price


@given(price=st.floats(min_value=0.01, max_value=1e6), side=sides)
def test_binance_rounded_price_on_tick_and_passive(price: float, side: Side) -> None:
    rules = BinanceSymbolRules.from_exchange_info(BTCUSDT_INFO)
    rounded = rules.round_price(price, side)
    assert _on(rounded, rules.tick_size, rules.min_price)
    assert rounded <= price if side is BUY else rounded >= price


@given(amount=st.floats(min_value=0, max_value=1e5))
def test_rounded_amount_on_step_and_not_larger(amount: float) -> None:
    up = UpbitKrwRules("BTC/KRW").round_amount(amount)
    assert _on(up, Decimal("0.00000001")) and 0 <= up <= amount
    bn = BinanceSymbolRules.from_exchange_info(BTCUSDT_INFO).round_amount(amount)
    assert _on(bn, Decimal("0.00001")) and 0 <= bn <= amount


opt_float = st.none() | st.floats(min_value=-1.0, max_value=1e7, allow_nan=False)


@settings(max_examples=300)
@given(
    venue=st.sampled_from(["upbit", "upbit_usdt", "binance"]),
    side=sides,
    type=st.sampled_from([LIMIT, MARKET]),
    amount=opt_float,
    price=opt_float,
    cost=opt_float,
    ref_price=st.floats(min_value=0.0, max_value=1e8),
)
def test_prepare_raises_or_passes_check(
    venue: str,
    side: Side,
    type: OrderType,
    amount: float | None,
    price: float | None,
    cost: float | None,
    ref_price: float,
) -> None:
    rules: VenueRules = {
        "upbit": UpbitKrwRules("BTC/KRW"),
        "upbit_usdt": UpbitKrwRules("USDT/KRW"),
        "binance": BinanceSymbolRules.from_exchange_info(BTCUSDT_INFO),
    }[venue]
    try:
        a, p, c = rules.prepare(side, type, amount, price, cost, ref_price)
    except RuleViolation:
        return
    rules.check(side, type, a, p, c, ref_price)
    # prepare only ever shrinks size and only ever makes the price more passive
    if a is not None and amount is not None:
        assert a <= amount
    if c is not None and cost is not None:
        assert c <= cost
    if p is not None and price is not None:
        assert p <= price if side is BUY else p >= price
