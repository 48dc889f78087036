"""Request budgets per venue (issue #15 item 4): pure logic on a manual clock.

The budget is the one thing between the process and a 418 ban, so its promises
are checked as properties over random request sequences: whatever arrives, in
every venue window the process spends at most its share, market data at most
half of every limit, and nothing goes out inside a Retry-After window.
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.clock import ManualClock
from core.errors import RateLimited
from core.venues.rate_budget import ALL, Role, VenueBudget, retry_after_s
from core.venues.rate_models import (
    BINANCE_RATES,
    UPBIT_RATES,
    parse_remaining_req,
    upbit_group,
)

MD, TR = Role.MARKET_DATA, Role.TRADING
DEPTH = (("weight", 5.0),)  # GET /api/v3/depth, limit <= 100
ORDER = (("weight", 1.0), ("orders_10s", 1.0), ("orders_1d", 1.0))


def budget(model: object = BINANCE_RATES) -> tuple[VenueBudget, ManualClock, list[float]]:
    clock = ManualClock()
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        clock.advance(s)

    sleeper: Callable[[float], Awaitable[None]] = sleep
    return VenueBudget("binance", model, clock.monotonic, sleeper), clock, slept  # type: ignore[arg-type]


# --- the models: what ccxt's requests spend --------------------------------------------
def test_binance_weights_come_from_ccxt_costs() -> None:
    classify = BINANCE_RATES.classify
    assert classify("public", "GET", "depth", 1.0) == (("weight", 5.0),)  # limit <= 100
    assert classify("public", "GET", "exchangeInfo", 4.0) == (("weight", 20.0),)
    assert classify("private", "GET", "openOrders", 16.0) == (("weight", 80.0),)
    assert classify("private", "POST", "order", 0.2) == ORDER  # an order counts twice more
    assert classify("private", "DELETE", "order", 0.2) == (("weight", 1.0),)
    assert classify("sapi", "GET", "account/apiRestrictions", 0.1) == (("weight", 1.0),)


@pytest.mark.parametrize(("method", "path", "group"), [
    ("GET", "orderbook", "orderbook"), ("GET", "orderbook/instruments", "orderbook"),
    ("GET", "market/all", "market"), ("GET", "ticker/all", "ticker"),
    ("GET", "ticker", "ticker"), ("POST", "orders", "order"), ("GET", "orders/open", "default"),
    ("DELETE", "orders/open", "order-cancel-all"), ("DELETE", "order", "default"),
    ("GET", "accounts", "default"), ("GET", "/v1/candles/minutes/1", "candle"),
])
def test_upbit_groups(method: str, path: str, group: str) -> None:
    assert upbit_group("public", method, path) == group


def test_headers_are_read() -> None:
    assert parse_remaining_req("group=default; min=1800; sec=29") == ("default", 29)
    assert parse_remaining_req("garbage") is None
    assert UPBIT_RATES.usage({"remaining-req": "group=order; min=0; sec=3"}) == [("order", 5.0)]
    assert BINANCE_RATES.usage({"x-mbx-used-weight-1m": "123", "X-MBX-ORDER-COUNT-10S": "4"}) \
        == [("weight", 123.0), ("orders_10s", 4.0)]
    assert retry_after_s({"Retry-After": "30"}, 1.0) == 30.0
    assert retry_after_s({"retry-after": "soon"}, 1.0) == 1.0
    assert retry_after_s({}, 2.5) == 2.5


def test_what_a_rate_limit_answer_blocks() -> None:
    # Binance weight is per IP: everything waits; too many orders: orders only; 418: all.
    assert BINANCE_RATES.block(429, {"Retry-After": "30"}, '{"code":-1003}', DEPTH).scopes == (ALL,)
    b = BINANCE_RATES.block(429, {}, '{"code":-1015,"msg":"Too many new orders"}', ORDER)
    assert b.scopes == ("orders_10s",) and b.seconds == 10.0
    ban = BINANCE_RATES.block(418, {"Retry-After": "120"}, "", DEPTH)
    assert ban.scopes == (ALL,) and ban.seconds == 120.0
    # Upbit counts per group: a 429 blocks its group, a 418 everything.
    up = UPBIT_RATES.block(429, {"Remaining-Req": "group=orderbook; min=0; sec=0"}, "",
                           (("orderbook", 1.0),))
    assert up.scopes == ("orderbook",) and up.seconds == 1.0
    assert UPBIT_RATES.block(418, {"Retry-After": "60"}, "", (("order", 1.0),)).scopes == (ALL,)


# --- shares: market data never delays an order --------------------------------------------
async def test_market_data_spends_at_most_half_and_orders_still_go_at_once() -> None:
    b, _, _ = budget()
    sent = 0
    with pytest.raises(RateLimited):
        while True:  # market data until its share is spent
            await b.acquire(MD, DEPTH, max_wait_s=0.0)
            sent += 1
    # Half of 6,000 a minute, no more (its pace over each quarter-minute binds first).
    assert 0 < sent * 5 <= 6000 * 0.5 / 4 + 5
    assert b.stats.refused == 1
    for _ in range(50):  # an order, now, is never queued behind the poller
        assert await b.acquire(TR, ORDER, max_wait_s=0.0) == 0.0
    assert b.used("weight", MD) == sent * 5


async def test_market_data_paces_evenly_over_the_minute() -> None:
    b, clock, slept = budget()
    for _ in range(1200):  # 6,000 weight of book requests, waited for as needed
        await b.acquire(MD, DEPTH, max_wait_s=120.0)
    # 3,000 a minute at most: 6,000 take at least a minute more than the first burst.
    assert clock.monotonic() >= 60.0
    assert max(slept) <= 16.0  # paced in quarter-minute slices, never a full-minute stall


async def test_the_process_stops_at_90_percent_and_counts_what_the_venue_reports() -> None:
    b, clock, _ = budget()
    # Another process on this IP: the venue says 5,000 used, we have spent nothing.
    b.observe(200, {"X-MBX-USED-WEIGHT-1M": "5000"}, "")
    assert await b.acquire(TR, (("weight", 400.0),), max_wait_s=0.0) == 0.0  # 5,400: the cap
    with pytest.raises(RateLimited) as info:
        await b.acquire(TR, ORDER, max_wait_s=0.0)
    assert 59.0 < info.value.retry_after_s <= 60.25  # until the report is a window old
    clock.advance(60.0)
    assert await b.acquire(TR, ORDER, max_wait_s=0.0) == 0.0


# --- Retry-After and bans ----------------------------------------------------------------
async def test_a_429_blocks_every_request_for_its_retry_after() -> None:
    b, clock, slept = budget()
    b.observe(429, {"Retry-After": "30"}, '{"code":-1003}', DEPTH)
    for role, units in ((MD, DEPTH), (TR, ORDER)):
        with pytest.raises(RateLimited) as info:
            await b.acquire(role, units, max_wait_s=1.0)
        assert info.value.retry_after_s == pytest.approx(30.0)
    assert b.stats.sent == 0  # nothing went out
    clock.advance(29.5)
    assert await b.acquire(TR, ORDER, max_wait_s=1.0) == pytest.approx(0.5)  # waited it out
    assert slept == [pytest.approx(0.5)]


async def test_an_upbit_429_blocks_its_group_only_and_a_418_everything() -> None:
    b, clock, _ = budget(UPBIT_RATES)
    b.observe(429, {"Remaining-Req": "group=orderbook; min=0; sec=0"}, "Too many API requests.",
              (("orderbook", 1.0),))
    with pytest.raises(RateLimited):
        await b.acquire(MD, (("orderbook", 1.0),), max_wait_s=0.0)
    assert await b.acquire(TR, (("order", 1.0),), max_wait_s=0.0) == 0.0  # orders still go
    b.observe(418, {"Retry-After": "60"}, "IP blocked", (("order", 1.0),))
    for units in ((("order", 1.0),), (("default", 1.0),), (("order-cancel-all", 1.0),)):
        with pytest.raises(RateLimited):
            await b.acquire(TR, units, max_wait_s=0.0)
    clock.advance(60.0)
    assert await b.acquire(TR, (("order-cancel-all", 1.0),), max_wait_s=0.0) == 0.0


# --- properties over random traffic ---------------------------------------------------------
requests = st.lists(
    st.tuples(st.sampled_from([MD, TR]), st.sampled_from([1.0, 5.0, 20.0, 80.0]),
              st.floats(min_value=0.0, max_value=3.0), st.booleans()),
    min_size=1, max_size=250)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reqs=requests, block_at=st.integers(min_value=0, max_value=250),
       retry=st.integers(min_value=1, max_value=40))
async def test_never_over_a_share_and_never_inside_a_block(
    reqs: list[tuple[Role, float, float, bool]], block_at: int, retry: int
) -> None:
    b, clock, _ = budget()
    sent: list[tuple[float, Role, float, int]] = []
    block: tuple[float, float] | None = None
    for i, (role, weight, gap, patient) in enumerate(reqs):
        clock.advance(gap)
        if i == block_at:
            b.observe(429, {"Retry-After": str(retry)}, "", DEPTH)
            block = (clock.monotonic(), clock.monotonic() + retry)
        try:
            await b.acquire(role, (("weight", weight),), max_wait_s=30.0 if patient else 0.0)
        except RateLimited:
            continue
        sent.append((clock.monotonic(), role, weight, i))
    for t, _, _, i in sent:
        window = [(r, w) for u, r, w, _ in sent if t - 60.0 < u <= t]
        assert sum(w for _, w in window) <= 6000 * 0.9 + 1e-6
        assert sum(w for r, w in window if r is MD) <= 6000 * 0.5 + 1e-6
        if block is not None and i >= block_at:  # sent after the 429 was seen
            assert not block[0] <= t < block[1], "sent inside a Retry-After window"
