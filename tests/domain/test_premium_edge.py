"""Premium, baseline, slippage, break-even, exits and the ledger (R-M1..R-M5)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.domain.edge import evaluate_entry, four_leg_fees_bps, vwap_slippage_bps
from core.domain.ledger import Ledger
from core.domain.models import Direction, ExitReason, OrderBook, Side, Venue
from core.domain.premium import Premiums, RollingBaseline, premiums
from core.trading.strategy import Signal, Strategy, StrategyParams


def book(
    bids: list[tuple[float, float]], asks: list[tuple[float, float]], symbol: str = "X"
) -> OrderBook:
    return OrderBook(symbol, bids, asks, 0)


def top(bid: float, ask: float, symbol: str = "X") -> OrderBook:
    # deeper levels are deliberately absurd: the premium reads the touch only
    return book([(bid, 1.0), (bid * 0.5, 100.0)], [(ask, 1.0), (ask * 2.0, 100.0)], symbol)


# --- premiums (R-M2) ------------------------------------------------------------

PREMIUM_TABLE = [
    # upbit bid, upbit ask (KRW), binance bid, binance ask (USDT), fx, sell_upbit, buy_upbit, mid
    pytest.param(
        141_450,
        141_726,
        99.9,
        100.0,
        1380.0,
        250.0,
        280.2802802802803,
        265.13256628314156,
        id="kimchi-premium",
    ),
    pytest.param(
        136_620,
        136_896,
        99.9,
        100.0,
        1380.0,
        -100.0,
        -70.07007007007007,
        -85.04252126063031,
        id="discount",
    ),
    pytest.param(
        140_000,
        140_140,
        100.0,
        100.05,
        1400.0,
        -4.997501249375312,
        10.0,
        2.4993751562109474,
        id="flat-level-spread-only",
    ),
]


@pytest.mark.parametrize(("ub", "ua", "bb", "ba", "fx", "sell", "buy", "mid"), PREMIUM_TABLE)
def test_premiums_from_executable_prices(
    ub: float, ua: float, bb: float, ba: float, fx: float, sell: float, buy: float, mid: float
) -> None:
    p = premiums(top(ub, ua, "BTC/KRW"), top(bb, ba, "BTC/USDT"), fx)
    assert p.sell_upbit_bps == pytest.approx(sell, abs=1e-9)
    assert p.buy_upbit_bps == pytest.approx(buy, abs=1e-9)
    assert p.mid_bps == pytest.approx(mid, abs=1e-9)
    assert p.sell_upbit_bps <= p.mid_bps <= p.buy_upbit_bps


def test_premium_uses_the_fx_rate_never_raw_krw() -> None:
    up, bn = top(141_450, 141_726), top(99.9, 100.0)
    a = premiums(up, bn, 1380.0)
    b = premiums(up, bn, 1380.0 * 1.01)  # KRW 1 % weaker: the premium falls by ~1 %
    assert a.sell_upbit_bps - b.sell_upbit_bps == pytest.approx(
        ((141_450 / 1380.0) / 100.0 - (141_450 / 1393.8) / 100.0) * 1e4
    )
    assert abs(a.sell_upbit_bps) < 1e3  # a KRW price read as USD would be ~1e7 bps


@pytest.mark.parametrize(
    ("direction", "entering", "expected"),
    [
        (Direction.SELL_UPBIT, True, "sell_upbit_bps"),
        (Direction.SELL_UPBIT, False, "buy_upbit_bps"),
        (Direction.BUY_UPBIT, True, "buy_upbit_bps"),
        (Direction.BUY_UPBIT, False, "sell_upbit_bps"),
    ],
)
def test_executable_premium_per_direction(
    direction: Direction, entering: bool, expected: str
) -> None:
    p = Premiums(sell_upbit_bps=1.0, buy_upbit_bps=2.0, mid_bps=1.5)
    assert p.executable(direction, entering) == getattr(p, expected)


def test_direction_sides() -> None:
    assert Direction.SELL_UPBIT.side_on(Venue.UPBIT) is Side.SELL
    assert Direction.SELL_UPBIT.side_on(Venue.BINANCE) is Side.BUY
    assert Direction.BUY_UPBIT.side_on(Venue.UPBIT) is Side.BUY
    assert Direction.BUY_UPBIT.side_on(Venue.BINANCE) is Side.SELL


_price = st.floats(min_value=1e-4, max_value=1e6, allow_nan=False, allow_infinity=False)
_spread = st.floats(min_value=0.0, max_value=0.05)


@given(
    ub=_price,
    us=_spread,
    bb=_price,
    bs=_spread,
    fx=st.floats(100.0, 3000.0),
    k=st.floats(0.01, 100.0),
)
def test_premiums_invariant_to_rescaling_upbit_and_fx(
    ub: float, us: float, bb: float, bs: float, fx: float, k: float
) -> None:
    up, bn = top(ub, ub * (1 + us)), top(bb, bb * (1 + bs))
    scaled = top(ub * k, ub * (1 + us) * k)
    a, b = premiums(up, bn, fx), premiums(scaled, bn, fx * k)
    for field in ("sell_upbit_bps", "buy_upbit_bps", "mid_bps"):
        x, y = getattr(a, field), getattr(b, field)
        assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6), (field, x, y)


@given(ub=_price, us=_spread, bb=_price, bs=_spread, fx=st.floats(100.0, 3000.0))
def test_selling_upbit_never_beats_buying_it_on_uncrossed_books(
    ub: float, us: float, bb: float, bs: float, fx: float
) -> None:
    p = premiums(top(ub, ub * (1 + us)), top(bb, bb * (1 + bs)), fx)
    assert p.sell_upbit_bps <= p.buy_upbit_bps


# --- rolling baseline -------------------------------------------------------------


def test_baseline_starts_at_the_first_sample() -> None:
    bl = RollingBaseline(30.0)
    assert bl.value is None
    assert bl.update(250.0, 100.0) == 250.0
    assert bl.samples_s == 0.0


@pytest.mark.parametrize(
    ("dt", "expected"),
    [(30.0, 50.0), (60.0, 75.0), (90.0, 87.5), (0.0, 0.0), (15.0, 100.0 * (1 - 2**-0.5))],
)
def test_baseline_half_life(dt: float, expected: float) -> None:
    bl = RollingBaseline(30.0)
    bl.update(0.0, 1000.0)
    assert bl.update(100.0, 1000.0 + dt) == pytest.approx(expected)
    assert bl.samples_s == pytest.approx(dt)


def test_baseline_is_time_weighted_not_tick_weighted() -> None:
    slow, fast = RollingBaseline(30.0), RollingBaseline(30.0)
    slow.update(0.0, 0.0)
    fast.update(0.0, 0.0)
    slow.update(100.0, 30.0)  # one tick of 30 s
    for i in range(1, 301):  # 300 ticks of 0.1 s
        fast.update(100.0, i * 0.1)
    assert slow.value == pytest.approx(50.0)
    assert fast.value == pytest.approx(50.0, abs=1e-6)
    assert fast.samples_s == pytest.approx(30.0)


def test_baseline_ignores_time_going_backwards() -> None:
    bl = RollingBaseline(10.0)
    bl.update(10.0, 100.0)
    assert bl.update(1000.0, 90.0) == 10.0  # no elapsed time, no weight
    assert bl.samples_s == 0.0


def test_baseline_follows_a_level_shift() -> None:
    bl = RollingBaseline(5.0)
    bl.update(300.0, 0.0)
    for i in range(1, 1001):
        bl.update(400.0, i * 0.1)  # 100 s = 20 half-lives
    assert bl.value == pytest.approx(400.0, abs=1e-3)


@pytest.mark.parametrize(("gap", "forgets"), [(29.0, False), (30.0, False), (31.0, True),
                                              (3 * 86400.0, True)])
def test_baseline_forgets_after_a_gap_longer_than_its_half_life(gap: float,
                                                                forgets: bool) -> None:
    bl = RollingBaseline(30.0)
    bl.update(100.0, 0.0)
    bl.update(100.0, 20.0)
    assert bl.expire(20.0 + gap) is forgets
    if forgets:
        assert bl.value is None and bl.samples_s == 0.0
        assert bl.update(40.0, 20.0 + gap) == 40.0  # starts over at the new sample
    else:
        assert bl.value == 100.0 and bl.samples_s == 20.0


# --- slippage from depth --------------------------------------------------------

DEPTH = book(
    bids=[(100.0, 1.0), (99.0, 1.0), (98.0, 2.0)], asks=[(100.0, 1.0), (101.0, 1.0), (102.0, 2.0)]
)


@pytest.mark.parametrize(
    ("side", "qty", "expected"),
    [
        (Side.BUY, 1.0, 0.0),
        (Side.BUY, 0.5, 0.0),
        (Side.BUY, 2.0, 50.0),  # (100 + 101) / 2 = 100.5
        (Side.BUY, 2.5, 80.0),  # (100 + 101 + 51) / 2.5 = 100.8
        (Side.BUY, 3.0, 100.0),  # (100 + 101 + 102) / 3 = 101
        (Side.BUY, 4.0, 125.0),  # (100 + 101 + 204) / 4 = 101.25
        (Side.SELL, 2.0, 50.0),  # (100 + 99) / 2 = 99.5
        (Side.SELL, 4.0, 125.0),  # (100 + 99 + 196) / 4 = 98.75
        (Side.BUY, 4.01, math.inf),
        (Side.SELL, 100.0, math.inf),
    ],
)
def test_vwap_slippage_walks_the_levels(side: Side, qty: float, expected: float) -> None:
    assert vwap_slippage_bps(DEPTH, side, qty) == pytest.approx(expected)


# --- entry: edge against break-even (R-M3) -----------------------------------------

# Slippage of 5 bps a side for qty 2: (10000 + 9990)/2 = 9995 and (100 + 100.1)/2 = 100.05.
UPBIT = book(bids=[(10_000.0, 1.0), (9_990.0, 1.0)], asks=[(10_020.0, 1.0), (10_030.0, 1.0)])
BINANCE = book(bids=[(99.9, 1.0), (99.8, 1.0)], asks=[(100.0, 1.0), (100.1, 1.0)])
PREM = Premiums(sell_upbit_bps=300.0, buy_upbit_bps=320.0, mid_bps=310.0)


def test_four_leg_fees() -> None:
    assert four_leg_fees_bps(5.0, 10.0) == 30.0
    assert four_leg_fees_bps(0.0, 0.0) == 0.0


def test_break_even_is_fees_plus_twice_slippage_plus_buffer() -> None:
    d = evaluate_entry(Direction.SELL_UPBIT, PREM, 200.0, UPBIT, BINANCE, 2.0, 30.0, 5.0)
    # upbit sell 2: (10000 + 9990)/2 -> 5 bps; binance buy 2: (100 + 100.1)/2 -> 5 bps
    assert d.slippage_bps == pytest.approx(10.0)
    assert d.break_even_bps == pytest.approx(30.0 + 2 * 10.0 + 5.0)
    assert d.entry_premium_bps == 300.0
    # the exit pays the far side: baseline + (buy - mid) = 210; edge = 300 - 210
    assert d.expected_edge_bps == pytest.approx(90.0)
    assert d.passes


@pytest.mark.parametrize(
    ("baseline", "qty", "passes"),
    [
        (200.0, 2.0, True),  # edge 90 > 55
        (250.0, 2.0, False),  # edge 40 < 55
        (255.0, 1.0, False),  # edge 35 == break-even 35 (no slippage): not enough
        (254.0, 1.0, True),  # edge 36 > 35
        (100.0, 3.0, False),  # book too thin: infinite slippage, never passes
    ],
)
def test_entry_passes_only_when_edge_beats_break_even(
    baseline: float, qty: float, passes: bool
) -> None:
    d = evaluate_entry(Direction.SELL_UPBIT, PREM, baseline, UPBIT, BINANCE, qty, 30.0, 5.0)
    assert d.passes is passes
    assert d.passes is (d.expected_edge_bps > d.break_even_bps)


def test_buy_upbit_entry_uses_upbit_asks_and_binance_bids() -> None:
    prem = Premiums(sell_upbit_bps=100.0, buy_upbit_bps=120.0, mid_bps=110.0)
    d = evaluate_entry(Direction.BUY_UPBIT, prem, 250.0, UPBIT, BINANCE, 2.0, 30.0, 5.0)
    # exit at baseline - (mid - sell) = 240; edge = 240 - 120
    assert d.expected_edge_bps == pytest.approx(120.0)
    assert d.entry_premium_bps == 120.0
    # upbit buy 2: (10020 + 10030)/2 = 10025 -> 4.99 bps; binance sell 2: 99.85 -> 5.005 bps
    expected_slip = (10_025.0 / 10_020.0 - 1) * 1e4 + (1 - 99.85 / 99.9) * 1e4
    assert d.slippage_bps == pytest.approx(expected_slip)
    assert d.passes
    thin_asks = book(bids=UPBIT.bids, asks=[(10_020.0, 0.5)])
    assert not evaluate_entry(
        Direction.BUY_UPBIT, prem, 250.0, thin_asks, BINANCE, 2.0, 30.0, 5.0
    ).passes
    thin_bids = book(bids=[(10_000.0, 0.5)], asks=UPBIT.asks)  # irrelevant for buying Upbit
    assert evaluate_entry(
        Direction.BUY_UPBIT, prem, 250.0, thin_bids, BINANCE, 2.0, 30.0, 5.0
    ).passes


# --- strategy: entries and exits -----------------------------------------------------

PARAMS = StrategyParams(
    upbit_fee_bps=5.0,
    binance_fee_bps=10.0,
    entry_buffer_bps=5.0,
    baseline_halflife_s=30.0,
    baseline_warmup_s=3.0,
    take_profit_bps=10.0,
    stop_loss_bps=60.0,
    max_hold_s=45.0,
    reversal_bps=5.0,
)


def sig(sell: float, buy: float, mid: float, baseline: float) -> Signal:
    return Signal(Premiums(sell, buy, mid), baseline, True)


EXIT_TABLE = [
    # SELL_UPBIT entered at 300: unrealized = 300 - buy_upbit - 30 fees
    pytest.param(
        Direction.SELL_UPBIT, sig(250, 260, 255, 250), 1.0, ExitReason.TAKE_PROFIT, id="s-tp"
    ),
    pytest.param(Direction.SELL_UPBIT, sig(255, 260.01, 257, 250), 1.0, None, id="s-tp-just-short"),
    pytest.param(
        Direction.SELL_UPBIT, sig(380, 390, 385, 250), 1.0, ExitReason.STOP_LOSS, id="s-sl"
    ),
    pytest.param(
        Direction.SELL_UPBIT, sig(325, 330, 327, 320), 1.0, ExitReason.STOP_LOSS, id="s-sl-edge"
    ),
    pytest.param(
        Direction.SELL_UPBIT, sig(280, 290, 285, 280), 45.0, ExitReason.TIME_LIMIT, id="s-time"
    ),
    pytest.param(Direction.SELL_UPBIT, sig(280, 290, 285, 280), 44.9, None, id="s-hold"),
    pytest.param(
        Direction.SELL_UPBIT, sig(280, 290, 275, 280), 1.0, ExitReason.REVERSAL, id="s-rev"
    ),
    pytest.param(Direction.SELL_UPBIT, sig(280, 290, 285, 280), 1.0, None, id="s-no-rev-wrong-way"),
    # BUY_UPBIT entered at 100: unrealized = sell_upbit - 100 - 30 fees
    pytest.param(
        Direction.BUY_UPBIT, sig(140, 150, 145, 200), 1.0, ExitReason.TAKE_PROFIT, id="b-tp"
    ),
    pytest.param(Direction.BUY_UPBIT, sig(10, 20, 15, 200), 1.0, ExitReason.STOP_LOSS, id="b-sl"),
    pytest.param(
        Direction.BUY_UPBIT, sig(110, 120, 115, 115), 60.0, ExitReason.TIME_LIMIT, id="b-time"
    ),
    pytest.param(
        Direction.BUY_UPBIT, sig(110, 120, 120, 115), 1.0, ExitReason.REVERSAL, id="b-rev"
    ),
    pytest.param(Direction.BUY_UPBIT, sig(110, 120, 110, 115), 1.0, None, id="b-no-rev-wrong-way"),
]


@pytest.mark.parametrize(("direction", "signal", "held", "expected"), EXIT_TABLE)
def test_exit_reason(
    direction: Direction, signal: Signal, held: float, expected: ExitReason | None
) -> None:
    entry = 300.0 if direction is Direction.SELL_UPBIT else 100.0
    assert Strategy(PARAMS).exit_reason(direction, entry, signal, held) is expected


def test_take_profit_wins_over_time_limit_and_unrealized_is_net_of_fees() -> None:
    s = Strategy(PARAMS)
    signal = sig(250, 260, 255, 250)
    assert s.unrealized_bps(Direction.SELL_UPBIT, 300.0, signal.prem) == pytest.approx(10.0)
    assert s.exit_reason(Direction.SELL_UPBIT, 300.0, signal, 1000.0) is ExitReason.TAKE_PROFIT


def test_strategy_waits_for_warmup_and_trades_deviation_not_level() -> None:
    s = Strategy(PARAMS)
    up, bn = top(141_450, 141_726), top(99.9, 100.0)  # a persistent +2.5 % premium
    qty = 0.1
    for i in range(40):  # 4 s of a constant premium: warm, but no deviation
        signal = s.observe("BTC", up, bn, 1380.0, i * 0.1)
        if i * 0.1 < PARAMS.baseline_warmup_s:
            assert not signal.warm
        assert s.entry(signal, up, bn, qty) is None
    assert signal.warm
    # a jump of the Upbit price by 2 %: sell Upbit, buy Binance
    up_hi = top(141_450 * 1.02, 141_726 * 1.02)
    decision = s.entry(s.observe("BTC", up_hi, bn, 1380.0, 4.0), up_hi, bn, qty)
    assert decision is not None and decision.direction is Direction.SELL_UPBIT
    assert decision.expected_edge_bps > decision.break_even_bps >= PARAMS.fees_bps
    # a drop of the Upbit price by 2 % from the level: buy Upbit, sell Binance
    s2 = Strategy(PARAMS)
    for i in range(40):
        s2.observe("BTC", up, bn, 1380.0, i * 0.1)
    up_lo = top(141_450 * 0.98, 141_726 * 0.98)
    decision = s2.entry(s2.observe("BTC", up_lo, bn, 1380.0, 4.0), up_lo, bn, qty)
    assert decision is not None and decision.direction is Direction.BUY_UPBIT


def test_the_deviation_is_measured_against_the_baseline_before_the_sample() -> None:
    """A 1-hour baseline fed a constant premium for 2 h, then a sample 40 bps higher
    after 5 minutes: the signal's baseline is the old level exactly (the sample is
    folded in afterwards, moving the next baseline by alpha x the deviation)."""
    hourly = StrategyParams(5.0, 10.0, 5.0, 3600.0, 3600.0, 10.0, 60.0, 3600.0, 1000.0)
    s = Strategy(hourly)
    up, bn = top(141_450, 141_726), top(99.9, 100.0)
    for i in range(25):  # every 5 minutes for 2 hours
        level = s.observe("BTC", up, bn, 1380.0, i * 300.0)
    assert level.warm
    up_hi = top(141_450 * 1.004, 141_726 * 1.004)
    sig_hi = s.observe("BTC", up_hi, bn, 1380.0, 25 * 300.0)
    assert sig_hi.baseline == pytest.approx(level.prem.mid_bps)
    # Upbit +0.4 % moves a +2.65 % premium by 40 x 1.0265 bps.
    dev = ((1 + level.prem.mid_bps / 1e4) * 1.004 - 1) * 1e4 - level.prem.mid_bps
    assert sig_hi.prem.mid_bps - sig_hi.baseline == pytest.approx(dev) and 41 < dev < 41.1
    alpha = 1.0 - 2.0 ** (-300.0 / 3600.0)
    after = s.observe("BTC", up_hi, bn, 1380.0, 25 * 300.0)  # same instant: no decay
    assert after.baseline == pytest.approx(level.prem.mid_bps + alpha * dev)


def test_a_gap_in_the_data_is_not_a_deviation() -> None:
    """Recordings days apart (or an outage): the premium 2 % lower after the gap is
    measured against nothing stale - the baseline starts over and warms up again."""
    hourly = StrategyParams(5.0, 10.0, 5.0, 3600.0, 3600.0, 10.0, 60.0, 3600.0, 1000.0)
    s = Strategy(hourly)
    up, bn = top(141_450, 141_726), top(99.9, 100.0)
    for i in range(25):
        assert s.observe("BTC", up, bn, 1380.0, i * 300.0).warm is (i * 300.0 > 3600.0)
    up_lo = top(141_450 * 0.98, 141_726 * 0.98)
    after_gap = 24 * 300.0 + 3 * 86400.0
    sig = s.observe("BTC", up_lo, bn, 1380.0, after_gap)
    assert not sig.warm and sig.baseline == pytest.approx(sig.prem.mid_bps)
    assert s.entry(sig, up_lo, bn, 0.1) is None
    # without the gap the same move is an entry: the test above is not vacuous
    s2 = Strategy(hourly)
    for i in range(25):
        s2.observe("BTC", up, bn, 1380.0, i * 300.0)
    sig2 = s2.observe("BTC", up_lo, bn, 1380.0, 25 * 300.0)
    assert s2.entry(sig2, up_lo, bn, 0.1) is not None


def test_strategy_refuses_a_deviation_smaller_than_the_break_even() -> None:
    s = Strategy(PARAMS)
    up, bn = top(141_450, 141_726), top(99.9, 100.0)
    for i in range(40):
        s.observe("BTC", up, bn, 1380.0, i * 0.1)
    up_small = top(141_450 * 1.004, 141_726 * 1.004)  # +40 bps: less than fees+spread+buffer
    assert s.entry(s.observe("BTC", up_small, bn, 1380.0, 4.0), up_small, bn, 0.1) is None


# --- ledger: USD marked to market (R-M5, R-M1) --------------------------------------


def round_trip_ledger() -> Ledger:
    led = Ledger()
    # entry: sell 1 BTC on Upbit at 141,450 KRW (fee 5 bps), buy 1 on Binance at 100 USDT (10 bps)
    led.apply_fill(Venue.UPBIT, "BTC", "KRW", Side.SELL, 1.0, 141_450.0, 70.725, 1380.0)
    led.apply_fill(Venue.BINANCE, "BTC", "USDT", Side.BUY, 1.0, 100.0, 0.1, 1380.0)
    return led


def test_ledger_inventory_change_per_venue_and_asset() -> None:
    led = round_trip_ledger()
    inv = led.inventory_change()
    assert inv["upbit"] == {"BTC": -1.0, "KRW": pytest.approx(141_450.0 - 70.725)}
    assert inv["binance"] == {"BTC": 1.0, "USDT": pytest.approx(-100.1)}
    assert "USDT" not in inv["upbit"] and "KRW" not in inv["binance"]


def test_ledger_fees_in_usd_convert_krw_at_fx() -> None:
    led = round_trip_ledger()
    assert led.fees_usd == pytest.approx(70.725 / 1380.0 + 0.1)


def test_ledger_pnl_converts_krw_via_fx_never_raw() -> None:
    led = round_trip_ledger()
    # Upbit's coin at the Upbit mid / FX, Binance's at the Binance mid: here both 100 USD.
    marks = {Venue.UPBIT: {"BTC": 141_450.0 / 1380.0}, Venue.BINANCE: {"BTC": 100.0}}
    expected = (141_450.0 - 70.725) / 1380.0 - 100.1 + (-141_450.0 / 1380.0 + 100.0)
    assert led.pnl_usd(1380.0, marks) == pytest.approx(expected)
    # KRW weakening by 10 % shrinks the KRW leg's USD value by 10 %, and Upbit's coin too
    weak = {Venue.UPBIT: {"BTC": 141_450.0 / 1518.0}, Venue.BINANCE: {"BTC": 100.0}}
    assert led.pnl_usd(1518.0, weak) == pytest.approx(
        (141_450.0 - 70.725) / 1518.0 - 100.1 - 141_450.0 / 1518.0 + 100.0)
    # raw KRW added to USDT would be ~141,000 "dollars"
    assert abs(led.pnl_usd(1380.0, marks)) < 10.0


def test_ledger_marks_net_base_at_its_price() -> None:
    led = Ledger()
    led.apply_fill(Venue.BINANCE, "ETH", "USDT", Side.BUY, 2.0, 200.0, 0.2, 1380.0)
    assert led.pnl_usd(1380.0, {Venue.BINANCE: {"ETH": 110.0}}) == pytest.approx(2 * 110.0 - 200.2)
    assert led.pnl_usd(1380.0, {Venue.BINANCE: {"ETH": 90.0}}) == pytest.approx(2 * 90.0 - 200.2)


# Hand-computed: an open hedged position at a +200 bps premium. Entry sells 0.01 BTC on
# Upbit at 1,428,000 KRW... scaled: BTC 100,000 USDT on Binance, FX 1,400 KRW/USDT,
# Upbit 142,800,000 KRW = 102,000 USD (premium +200 bps). No fees, to see the marks alone.
FX = 1400.0
QTY = 0.01


def open_hedged(upbit_fee: float = 0.0, binance_fee: float = 0.0) -> Ledger:
    led = Ledger()
    led.apply_fill(Venue.UPBIT, "BTC", "KRW", Side.SELL, QTY, QTY * 142_800_000.0, upbit_fee, FX)
    led.apply_fill(Venue.BINANCE, "BTC", "USDT", Side.BUY, QTY, QTY * 100_000.0, binance_fee, FX)
    return led


def venue_marks(upbit_krw: float, binance_usdt: float, fx: float = FX) -> dict[Venue, dict[str, float]]:
    return {Venue.UPBIT: {"BTC": upbit_krw / fx}, Venue.BINANCE: {"BTC": binance_usdt}}


def test_an_open_hedged_position_shows_the_premium_change_not_its_level() -> None:
    led = open_hedged()
    # Nothing moved: the position is worth what it cost, although the premium is +200 bps
    # (marking both coins at the Binance mid would show +$20 = 200 bps x $1,000).
    assert led.pnl_usd(FX, venue_marks(142_800_000.0, 100_000.0)) == pytest.approx(0.0, abs=1e-9)
    # The premium falls to +150 bps with Binance unchanged: Upbit 142,100,000 KRW
    # = 101,500 USD. Short Upbit gains 0.01 x 500 = $5 = 50 bps of $1,000.
    assert led.pnl_usd(FX, venue_marks(142_100_000.0, 100_000.0)) == pytest.approx(5.0)
    # Both venues rise 10 % together (premium unchanged). The legs hold equal base, so
    # the short Upbit leg (worth 2 % more) loses $102 while Binance gains $100: -$2,
    # the premium times the move, never the premium level ($20).
    assert led.pnl_usd(FX, venue_marks(157_080_000.0, 110_000.0)) == pytest.approx(-2.0)
    # Fees come straight off: 5 bps of 1,428,000 KRW and 10 bps of 1,000 USDT.
    paid = open_hedged(upbit_fee=714.0, binance_fee=1.0)
    assert paid.pnl_usd(FX, venue_marks(142_800_000.0, 100_000.0)) == pytest.approx(-1.51)


def test_inventory_revaluation_is_the_prefunded_coins_price_change() -> None:
    led = open_hedged()
    start = venue_marks(142_800_000.0, 100_000.0)
    led.fund({(Venue.UPBIT, "BTC"): 0.2, (Venue.UPBIT, "KRW"): 28_000_000.0,
              (Venue.BINANCE, "BTC"): 0.2, (Venue.BINANCE, "USDT"): 20_000.0}, FX, start)
    assert led.inventory_pnl_usd(FX, start) == pytest.approx(0.0, abs=1e-9)
    # BTC +1 % on both venues: 0.2 x 1,020 + 0.2 x 1,000 = $404 of revaluation; the
    # position moves by the premium x the move only: -0.01 x 1,020 + 0.01 x 1,000.
    up = venue_marks(142_800_000.0 * 1.01, 101_000.0)
    assert led.inventory_pnl_usd(FX, up) == pytest.approx(404.0)
    assert led.pnl_usd(FX, up) == pytest.approx(-0.2)
    # KRW weakens to 1,470: the KRW and Upbit's coin lose 1 - 1400/1470 of their USD value.
    weak = venue_marks(142_800_000.0, 100_000.0, fx=1470.0)
    loss = (28_000_000.0 + 0.2 * 142_800_000.0) * (1 / 1470.0 - 1 / 1400.0)
    assert led.inventory_pnl_usd(1470.0, weak) == pytest.approx(loss)


@pytest.mark.parametrize(
    ("curve", "peak", "drawdown"),
    [
        ([0.0, 5.0, 2.0, 8.0, 1.0, 3.0], 8.0, 7.0),
        ([1.0, 2.0, 3.0], 3.0, 0.0),
        ([-3.0, -1.0, -4.0], 0.0, 4.0),  # a curve that never rose above zero
        ([4.0, 1.0, 10.0, 9.0], 10.0, 3.0),
    ],
)
def test_ledger_max_drawdown(curve: list[float], peak: float, drawdown: float) -> None:
    led = Ledger()
    for v in curve:
        led.observe(v)
    assert led.peak == peak
    assert led.max_drawdown == pytest.approx(drawdown)
