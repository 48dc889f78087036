"""Error classes (issue #15 item 6): what each venue answer means for an order.

A table over ccxt's own exceptions (as ccxt raises them for the venues' bodies),
then each class end to end: real ccxt against the emulator answering as the
venue does, through CcxtExchange.
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import ccxt
import pytest

from bot.drill.emulator import EmulatorHandle
from core.domain.models import OrderRequest, OrderType, Side, Venue
from core.errors import ExchangeError, OrderRejected, RateLimited, VenueUnavailable
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.profiles import BINANCE, UPBIT, VenueProfile
from core.venues.venue_errors import Problem, classify
from tests.venues.support import admin, emulator

UPBIT_AUTH = {
    "invalid_query_payload": "signed query does not match",
    "nonce_used": "nonce was used twice",
    "no_authorization_i_p": "IP is not on the API key's allowed list",
    "expired_access_key": "API key has expired",
}


class Banned(ccxt.RateLimitExceeded):
    """What core.venues.ccxt_client raises for a 429/418 status, whatever the body."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.retry_after_s, self.banned = 7.0, True


CASES: list[tuple[VenueProfile, BaseException, type[ExchangeError], Problem]] = [
    (BINANCE, ccxt.InvalidNonce('binance {"code":-1021,"msg":"Timestamp for this request '
                                'is outside of the recvWindow."}'), OrderRejected,
     Problem.TIME_SYNC),
    (BINANCE, ccxt.MarketClosed('binance {"code":-1013,"msg":"Market is closed."}'),
     OrderRejected, Problem.MARKET_INACTIVE),
    (BINANCE, ccxt.ExchangeError('binance {"code":-2010,"msg":"Symbol is in CANCEL_ONLY '
                                 'mode."}'), OrderRejected, Problem.MARKET_INACTIVE),
    (BINANCE, ccxt.AuthenticationError('binance {"code":-2015,"msg":"Invalid API-key, IP, '
                                       'or permissions for action."}'), OrderRejected,
     Problem.AUTH),
    # ccxt turns a -2015 after a successful call into DDoSProtection: still the key.
    (BINANCE, ccxt.DDoSProtection('binance {"code":-2015,"msg":"Invalid API-key, IP, or '
                                  'permissions for action."}'), OrderRejected, Problem.AUTH),
    (BINANCE, ccxt.RateLimitExceeded('binance {"code":-1003,"msg":"Too much request weight"}'),
     RateLimited, Problem.RATE_LIMIT),
    (BINANCE, ccxt.InsufficientFunds('binance {"code":-2010,"msg":"Account has insufficient '
                                     'balance for requested action."}'), OrderRejected,
     Problem.NONE),
    (BINANCE, ccxt.RequestTimeout("binance POST /api/v3/order"), VenueUnavailable, Problem.NONE),
    (BINANCE, ccxt.ExchangeError("binance 502 Bad Gateway"), VenueUnavailable, Problem.NONE),
    *[(UPBIT, ccxt.ExchangeError(f'upbit {{"error":{{"name":"{name}","message":"x"}}}}'),
       OrderRejected, Problem.AUTH) for name in UPBIT_AUTH],
    (UPBIT, ccxt.AuthenticationError('upbit {"error":{"name":"expired_access_key",'
                                     '"message":"This key has expired."}}'), OrderRejected,
     Problem.AUTH),
    (UPBIT, ccxt.ExchangeError('upbit {"error":{"name":"under_min_total_bid"}}'), OrderRejected,
     Problem.NONE),
    # A 429/418 is a rate limit whatever its body (ccxt would say ExchangeError).
    (UPBIT, Banned('upbit {"error":{"name":"too_many_requests"}}'), RateLimited,
     Problem.RATE_LIMIT),
    (UPBIT, ccxt.ExchangeError('upbit {"error":{"name":"server_error"}}'), VenueUnavailable,
     Problem.NONE),
]


@pytest.mark.parametrize(("profile", "exc", "expected", "problem"), CASES,
                         ids=[f"{p.venue}-{type(e).__name__}-{i}" for i, (p, e, _, _)
                              in enumerate(CASES)])
def test_classification_on_a_send(profile: VenueProfile, exc: BaseException,
                                  expected: type[ExchangeError], problem: Problem) -> None:
    c = classify(profile, exc, sending=True)
    assert type(c.error) is expected, c
    assert c.problem is problem
    if problem is Problem.AUTH:
        assert c.detail and c.detail in str(c.error)  # the key problem is named
    if expected is RateLimited:
        assert isinstance(c.error, RateLimited) and c.error.retry_after_s > 0


@pytest.mark.parametrize("name", sorted(UPBIT_AUTH))
def test_upbit_key_problems_on_a_read_name_the_problem_too(name: str) -> None:
    c = classify(UPBIT, ccxt.ExchangeError(f'upbit {{"error":{{"name":"{name}"}}}}'),
                 sending=False)
    assert type(c.error) is ExchangeError and c.problem is Problem.AUTH
    assert UPBIT_AUTH[name] in str(c.error)


# --- end to end against the emulator --------------------------------------------------------
@contextlib.asynccontextmanager
async def port(venue: Venue, **emu_kw: Any) -> AsyncIterator[tuple[Any, Any, list[str]]]:
    alerts: list[str] = []
    async with emulator(autostep=False, **emu_kw) as emu:
        key, secret = emu.keys[venue.value]
        ex = CcxtExchange(venue, emu.url, key, secret, fee_bps=10.0,
                          alert=lambda title, body: alerts.append(f"{title}: {body}"))
        try:
            await ex.load_markets()
            yield emu, ex, alerts
        finally:
            await ex.close()


async def resting_buy(ex: CcxtExchange, symbol: str) -> OrderRequest:
    book = await ex.fetch_order_book(symbol)
    rules = ex.rules(symbol)
    price = rules.round_price(book.best_bid * 0.9, Side.BUY)
    amount = rules.round_amount((20.0 if ex.venue is Venue.BINANCE else 20_000.0) / price)
    return OrderRequest(symbol, Side.BUY, OrderType.LIMIT, amount,
                        f"ve-{uuid.uuid4().hex[:16]}", price)


async def requests_seen(emu: EmulatorHandle, venue: str) -> int:
    return int((await admin(emu, "GET", "/admin/limits"))[venue]["requests"])


async def test_binance_timestamp_refusal_resyncs_the_clock_and_alerts() -> None:
    async with port(Venue.BINANCE) as (emu, ex, alerts):
        req = await resting_buy(ex, "BTC/USDT")
        # The venue's clock runs 3 s behind ours: our timestamps are "ahead" (-1021).
        await admin(emu, "POST", "/admin/clock", {"venue": "binance", "offset_ms": -3000})
        with pytest.raises(OrderRejected, match="clock"):  # refused, not UNKNOWN
            await ex.create_order(req)
        assert ex.clock_resyncs == 1
        assert any("clock re-synced" in a for a in alerts), alerts
        assert 2500 <= ex.ccxt.options["timeDifference"] <= 3500
        order = await ex.create_order(req)  # the same client id: it never reached the book
        assert order.client_order_id == req.client_order_id


async def test_market_closed_is_refused_and_the_market_marked_inactive() -> None:
    async with port(Venue.BINANCE) as (emu, ex, alerts):
        req = await resting_buy(ex, "ETH/USDT")
        await admin(emu, "POST", "/admin/market",
                    {"venue": "binance", "symbol": "ETH/USDT", "status": "HALT"})
        with pytest.raises(OrderRejected, match="market closed"):
            await ex.create_order(req)
        assert ex.market("ETH/USDT").active is False
        assert any("market closed" in a for a in alerts), alerts
        before = await requests_seen(emu, "binance")
        with pytest.raises(OrderRejected, match="inactive"):  # refused here, not sent
            await ex.create_order(req)
        assert await requests_seen(emu, "binance") == before
        await admin(emu, "POST", "/admin/market",
                    {"venue": "binance", "symbol": "ETH/USDT", "status": "TRADING"})
        await ex.load_markets()  # the venue says TRADING again
        assert ex.market("ETH/USDT").active is True
        assert (await ex.create_order(req)).client_order_id == req.client_order_id


@pytest.mark.parametrize("name", sorted(UPBIT_AUTH))
async def test_upbit_key_problems_are_refusals_naming_the_problem(name: str) -> None:
    async with port(Venue.UPBIT) as (emu, ex, alerts):
        req = await resting_buy(ex, "BTC/KRW")
        emu.add_fault(venue="upbit", kind="auth_error", name=name, count=1, path="/v1/orders",
                      method="POST")
        with pytest.raises(OrderRejected) as info:
            await ex.create_order(req)
        assert UPBIT_AUTH[name] in str(info.value)
        assert any("API key problem" in a and UPBIT_AUTH[name] in a for a in alerts), alerts


async def test_binance_key_refusal_on_a_send_is_a_rejection() -> None:
    async with port(Venue.BINANCE) as (emu, ex, alerts):
        assert alerts == []
        req = await resting_buy(ex, "BTC/USDT")
        emu.add_fault(venue="binance", kind="auth_error", name="-2015", count=1,
                      path="/api/v3/order", method="POST")
        with pytest.raises(OrderRejected, match="API key problem"):
            await ex.create_order(req)


async def test_a_json_bodied_upbit_429_is_a_rate_limit() -> None:
    async with port(Venue.UPBIT) as (emu, ex, _):
        emu.add_fault(venue="upbit", kind="http_429", body="json", count=1,
                      path="/v1/orderbook")
        with pytest.raises(RateLimited):
            await ex.fetch_order_book("BTC/KRW")
        assert (await ex.fetch_order_book("BTC/KRW")).bids  # waited out its group's second
        assert (await admin(emu, "GET", "/admin/limits"))["upbit"]["in_window"] == 0


async def test_a_418_blocks_every_request_to_the_venue_without_sending() -> None:
    async with port(Venue.BINANCE) as (emu, ex, _):
        req = await resting_buy(ex, "BTC/USDT")
        emu.add_fault(venue="binance", kind="http_418", count=1, seconds=5,
                      path="/api/v3/depth")
        with pytest.raises(RateLimited) as info:
            await ex.fetch_order_book("BTC/USDT")
        assert info.value.retry_after_s == 5
        before = await requests_seen(emu, "binance")
        with pytest.raises(RateLimited, match="not sent"):
            await ex.create_order(req)  # the ban covers orders too
        with pytest.raises(RateLimited, match="not sent"):
            await ex.cancel_all_orders("BTC/USDT")
        assert await requests_seen(emu, "binance") == before
        assert (await admin(emu, "GET", "/admin/limits"))["binance"]["in_window"] == 0
