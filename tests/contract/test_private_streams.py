"""Contract of the private websocket streams (own orders, fills, balances): the
emulator speaks the venues' documented protocol and message shapes, ccxt.pro's
watch_orders / watch_my_trades / watch_balance read them, and what the streams
say about an order is what REST says about it (filled, cost, fees).

Real ccxt.pro clients against the real emulator, stepped by hand (autostep off),
so an order fills only when a test steps the market.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import ccxt.pro as pro
import pytest
from ccxt.base.errors import (
    AuthenticationError,
    ExchangeNotAvailable,
    InvalidNonce,
    NetworkError,
)

from bot.drill.emulator import EmulatorHandle
from bot.drill.emulator.auth import jwt_hs256
from tests.drill.emu_support import admin, running

BINANCE_REPORT_KEYS = {
    "e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g", "C", "x", "X", "r", "i",
    "l", "z", "L", "n", "N", "T", "t", "I", "w", "m", "M", "O", "Z", "Y", "Q", "V",
}
UPBIT_ORDER_KEYS = {
    "type", "code", "uuid", "ask_bid", "order_type", "state", "trade_uuid", "price",
    "avg_price", "volume", "remaining_volume", "executed_volume", "trades_count",
    "reserved_fee", "remaining_fee", "paid_fee", "locked", "executed_funds", "time_in_force",
    "trade_fee", "is_maker", "identifier", "smp_type", "prevented_volume", "prevented_locked",
    "trade_timestamp", "order_timestamp", "timestamp", "stream_type",
}


@contextlib.asynccontextmanager
async def pro_client(emu: EmulatorHandle, venue: str, **overrides: Any) -> AsyncIterator[Any]:
    cfg = emu.ccxt_config(venue)
    cfg["enableRateLimit"] = False
    cfg.update(overrides)
    ex = getattr(pro, venue)(cfg)
    try:
        await ex.load_markets()
        yield ex
    finally:
        await ex.close()


async def eventually(check: Callable[[], Any], watch: Callable[[], Awaitable[Any]],
                     timeout: float = 5.0) -> Any:
    """Watch until check() (on ccxt's caches) holds: an update that arrived before
    the watch was called is in the cache already, a later one wakes the watch."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = check()
        if got:
            return got
        left = deadline - loop.time()
        assert left > 0, "the stream did not say it in time"
        try:
            await asyncio.wait_for(watch(), min(left, 0.5))
        except TimeoutError:
            pass


async def subscribed(emu: EmulatorHandle, venue: str, *types: str) -> None:
    """Until the emulator holds the subscription a watch just asked for (Binance:
    acknowledged; Upbit: the request with these types received)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while True:
        now = emu.core.private.state()["subscribed"][venue]
        if (now >= 1) if venue == "binance" else set(types or ["myOrder"]) <= set(now):
            return
        assert loop.time() < deadline, f"{venue}: not subscribed ({now})"
        await asyncio.sleep(0.01)


def cached(ex: Any, order_id: str) -> dict[str, Any] | None:
    for o in ex.orders or []:
        if o["id"] == order_id:
            return dict(o)
    return None


def ws_url(emu: EmulatorHandle, path: str) -> str:
    return "ws" + emu.url.removeprefix("http") + path


def signed(params: dict[str, Any], secret: str) -> dict[str, Any]:
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return {**params, "signature": hmac.new(secret.encode(), payload.encode(),
                                            hashlib.sha256).hexdigest()}


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
    return json.loads(msg.data)


# --------------------------------------------------------------------------- Binance
@pytest.mark.parametrize(("side", "bnb", "fee_asset"), [
    ("buy", False, "BTC"),   # a BUY pays commission in what it receives: the base
    ("sell", False, "USDT"),  # a SELL in the quote
    ("buy", True, "BNB"),    # with the BNB discount on, in BNB either way
    ("sell", True, "BNB"),
])
async def test_binance_order_fill_and_balance_as_rest_says(
        side: str, bnb: bool, fee_asset: str) -> None:
    async with running(bnb_discount=bnb) as emu, pro_client(emu, "binance") as b:
        sym = "BTC/USDT"
        watch_task = asyncio.create_task(b.watch_orders(sym))
        await subscribed(emu, "binance")  # (the watch authenticates first)
        assert emu.core.private.state()["connections"]["binance"] == 1
        ob = await b.fetch_order_book(sym)
        px = ob["asks"][0][0] * 1.01 if side == "buy" else ob["bids"][0][0] * 0.99
        cid = f"bn-{side}-{int(bnb)}"
        o = await b.create_order(sym, "limit", side, 0.01, float(b.price_to_precision(sym, px)),
                                 {"clientOrderId": cid})
        first = await asyncio.wait_for(watch_task, 5)
        new = next(x for x in first if x["id"] == o["id"])
        assert new["status"] == "open" and new["filled"] == 0 and new["clientOrderId"] == cid
        assert new["info"]["x"] == "NEW" and set(new["info"]) == BINANCE_REPORT_KEYS | {"W"}
        emu.step()
        done = await eventually(lambda: (x := cached(b, o["id"])) and x["status"] == "closed"
                                and x, lambda: b.watch_orders(sym))
        trades = await eventually(lambda: [t for t in b.myTrades or [] if t["order"] == o["id"]],
                                  lambda: b.watch_my_trades(sym))
        rest = await b.fetch_order(o["id"], sym)
        rest_trades = await b.fetch_my_trades(sym, params={"orderId": o["id"]})
        assert done["filled"] == rest["filled"] == 0.01
        assert done["cost"] == pytest.approx(rest["cost"], abs=1e-8)
        assert done["clientOrderId"] == rest["clientOrderId"] == cid
        assert [t["id"] for t in trades] == [t["id"] for t in rest_trades]
        for s, r in zip(trades, rest_trades, strict=True):
            assert s["fee"]["currency"] == r["fee"]["currency"] == fee_asset
            assert s["fee"]["cost"] == pytest.approx(r["fee"]["cost"], abs=1e-12)
            assert (s["price"], s["amount"], s["side"]) == (r["price"], r["amount"], side)
            assert s["cost"] == pytest.approx(r["cost"], abs=1e-8)
        # The account's position after the fill is what REST reads.
        balance = await eventually(
            lambda: b.balance.get("spot", {}).get(fee_asset) and b.balance["spot"],
            b.watch_balance)
        rest_bal = await b.fetch_balance()
        for asset in ("BTC", "USDT", fee_asset):
            if asset in balance:
                assert balance[asset]["free"] == pytest.approx(rest_bal[asset]["free"], abs=1e-8)
                assert balance[asset]["used"] == pytest.approx(rest_bal[asset]["used"], abs=1e-8)


async def test_binance_cancel_keeps_the_original_client_order_id() -> None:
    async with running() as emu, pro_client(emu, "binance") as b:
        sym = "ETH/USDT"
        watch_task = asyncio.create_task(b.watch_orders(sym))
        await subscribed(emu, "binance")
        low = float(b.price_to_precision(sym, (await b.fetch_order_book(sym))["bids"][-1][0] * 0.9))
        o = await b.create_order(sym, "limit", "buy", 0.01, low, {"clientOrderId": "bn-keep"})
        await asyncio.wait_for(watch_task, 5)
        await b.cancel_order(o["id"], sym, {"newClientOrderId": "bn-cancel-req"})
        got = await eventually(lambda: (x := cached(b, o["id"])) and x["status"] == "canceled"
                               and x, lambda: b.watch_orders(sym))
        # Binance: c is the cancel request's id, C the order's own; ccxt reads C.
        assert got["info"]["x"] == got["info"]["X"] == "CANCELED"
        assert got["info"]["c"] == "bn-cancel-req" and got["info"]["C"] == "bn-keep"
        assert got["clientOrderId"] == "bn-keep"
        assert (await b.fetch_order(o["id"], sym))["status"] == "canceled"


async def test_binance_market_remainder_expires() -> None:
    async with running() as emu, pro_client(emu, "binance") as b:
        sym = "XRP/USDT"
        watch_task = asyncio.create_task(b.watch_orders(sym))
        await subscribed(emu, "binance")
        emu.add_fault(venue="binance", kind="partial_fill", ratio=0.5)
        o = await b.create_order(sym, "market", "sell", 20, None, {"clientOrderId": "bn-ioc"})
        await asyncio.wait_for(watch_task, 5)
        got = await eventually(lambda: (x := cached(b, o["id"])) and x["status"] == "expired"
                               and x, lambda: b.watch_orders(sym))
        rest = await b.fetch_order(o["id"], sym)
        assert rest["status"] == "expired" and 0 < got["filled"] == rest["filled"] < 20
        assert got["info"]["x"] == "EXPIRED" and got["info"]["C"] == ""
        assert got["clientOrderId"] == "bn-ioc"


async def test_binance_events_in_the_venues_order_and_shape() -> None:
    """Raw: subscribe by signature, then NEW and TRADE reports before the account
    position, each wrapped {"subscriptionId", "event"}."""
    async with running() as emu, pro_client(emu, "binance") as b:
        key, secret = emu.keys["binance"]
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(emu, "/ws-api/v3")) as ws:
            params = signed({"apiKey": key, "timestamp": emu.core.now_ms("binance")}, secret)
            await ws.send_json({"id": "sub-1", "method": "userDataStream.subscribe.signature",
                                "params": params})
            ack = await next_json(ws)
            assert ack["id"] == "sub-1" and ack["status"] == 200
            assert ack["result"] == {"subscriptionId": 0}
            assert ack["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
            o = await b.create_order("BTC/USDT", "market", "buy", 0.001, None,
                                     {"clientOrderId": "bn-raw"})
            events = []
            while not events or events[-1]["e"] != "outboundAccountPosition":
                msg = await next_json(ws)
                assert msg["subscriptionId"] == 0
                events.append(msg["event"])
            kinds = [(e["e"], e.get("x"), e.get("X")) for e in events]
            assert kinds[0] == ("executionReport", "NEW", "NEW")
            assert kinds[-2] == ("executionReport", "TRADE", "FILLED")
            assert all(k[1] == "TRADE" for k in kinds[1:-1])
            trade = events[-2]
            assert set(trade) == BINANCE_REPORT_KEYS and trade["i"] == int(o["id"])
            assert trade["c"] == "bn-raw" and trade["C"] == "" and trade["t"] > 0
            assert trade["N"] == "BTC" and float(trade["n"]) > 0
            assert float(trade["z"]) == 0.001
            pos = events[-1]
            assert {"e", "E", "u", "B"} == set(pos)
            assets = {x["a"]: x for x in pos["B"]}
            assert {"BTC", "USDT"} <= set(assets) and set(assets["BTC"]) == {"a", "f", "l"}
            await ws.send_json({"id": 9, "method": "userDataStream.unsubscribe", "params": {}})
            assert (await next_json(ws))["status"] == 200
            await ws.send_json({"id": 10, "method": "session.subscriptions"})
            assert (await next_json(ws))["result"] == []


def _stale(p: dict[str, Any]) -> dict[str, Any]:
    return {**p, "timestamp": p["timestamp"] - 60_000}


async def test_binance_ws_api_spends_the_request_weight_rest_spends() -> None:
    async with running(limits={"binance_weight_per_min": 5}) as emu:
        key, secret = emu.keys["binance"]
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(emu, "/ws-api/v3")) as ws:
            await ws.send_json({"id": 1, "method": "ping"})
            assert (await next_json(ws))["rateLimits"][0]["count"] == 1
            params = signed({"apiKey": key, "timestamp": emu.core.now_ms("binance")}, secret)
            await ws.send_json({"id": 2, "method": "userDataStream.subscribe.signature",
                                "params": params})
            assert (await next_json(ws))["rateLimits"][0]["count"] == 3
            async with s.get(emu.url + "/api/v3/time") as r:  # REST spends the same weight
                assert r.headers["X-MBX-USED-WEIGHT-1M"] == "4"
            await ws.send_json({"id": 3, "method": "time"})
            assert (await next_json(ws))["status"] == 200
            await ws.send_json({"id": 4, "method": "time"})
            over = await next_json(ws)
            assert over["id"] == 4 and over["status"] == 429 and over["error"]["code"] == -1003


@pytest.mark.parametrize(("change", "status", "code"), [
    (lambda p, s: signed(p, "wrong-secret"), 400, -1022),
    (lambda p, s: signed({**p, "apiKey": "nobody"}, s), 401, -2015),
    (lambda p, s: signed(_stale(p), s), 400, -1021),
    (lambda p, s: {**signed(p, s), "recvWindow": 1}, 400, -1022),  # not what was signed
    (lambda p, s: {k: v for k, v in signed(p, s).items() if k != "apiKey"}, 401, -2014),
], ids=["bad-signature", "unknown-key", "stale-timestamp", "param-not-signed", "no-key"])
async def test_binance_subscribe_refused_as_the_venue_does(
        change: Callable[[dict[str, Any], str], dict[str, Any]], status: int, code: int) -> None:
    async with running() as emu:
        key, secret = emu.keys["binance"]
        async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(emu, "/ws-api/v3")) as ws:
            params = change({"apiKey": key, "timestamp": emu.core.now_ms("binance")}, secret)
            await ws.send_json({"id": 1, "method": "userDataStream.subscribe.signature",
                                "params": params})
            err = await next_json(ws)
            assert err["id"] == 1 and err["status"] == status and err["error"]["code"] == code
            assert isinstance(err["error"]["msg"], str) and "result" not in err


def _time_ahead(ex: Any) -> None:
    ex.options["timeDifference"] = 70_000  # our clock 70 s behind: outside recvWindow


@pytest.mark.parametrize(("overrides", "setup", "error"), [
    ({"secret": "wrong-secret"}, None, AuthenticationError),
    ({"apiKey": "nobody"}, None, AuthenticationError),
    ({}, _time_ahead, InvalidNonce),
], ids=["bad-signature", "unknown-key", "stale-timestamp"])
async def test_ccxt_pro_binance_refused(overrides: dict[str, Any],
                                        setup: Callable[[Any], None] | None,
                                        error: type) -> None:
    async with running() as emu, pro_client(emu, "binance", **overrides) as b:
        if setup is not None:
            setup(b)
        with pytest.raises((error, KeyError)) as info:
            await asyncio.wait_for(b.watch_orders("BTC/USDT"), 5)
        # ccxt 4.5.90 maps the venue's code (handle_ws_error), then its own clean-up
        # deletes the 'spot' subscription a second time: KeyError, the mapped error
        # as its context. Either way the refusal is the venue's code.
        exc = info.value
        mapped = exc.__context__ if isinstance(exc, KeyError) else exc
        assert isinstance(mapped, error), repr(exc)


# --------------------------------------------------------------------------- Upbit
async def _up_limit_buy(u: Any) -> dict[str, Any]:
    ask = (await u.fetch_order_book("BTC/KRW"))["asks"][0][0]
    return dict(await u.create_order("BTC/KRW", "limit", "buy", 0.001, ask * 1.01 // 1000 * 1000,
                                     {"clientOrderId": "up-order"}))


async def _up_limit_sell(u: Any) -> dict[str, Any]:
    bid = (await u.fetch_order_book("XRP/KRW"))["bids"][0][0]
    return dict(await u.create_order("XRP/KRW", "limit", "sell", 10, bid,
                                     {"clientOrderId": "up-order"}))


async def _up_market_sell(u: Any) -> dict[str, Any]:
    return dict(await u.create_order("XRP/KRW", "market", "sell", 5, None,
                                     {"clientOrderId": "up-order"}))


async def _up_market_buy_cost(u: Any) -> dict[str, Any]:
    return dict(await u.create_market_buy_order_with_cost("BTC/KRW", 10_000,
                                                          {"clientOrderId": "up-order"}))


@pytest.mark.parametrize(("place", "base"), [
    (_up_limit_buy, "BTC"), (_up_limit_sell, "XRP"), (_up_market_sell, "XRP"),
    (_up_market_buy_cost, "BTC"),
], ids=["limit-buy", "limit-sell", "market-sell", "market-buy-by-cost"])
async def test_upbit_order_fill_and_balance_as_rest_says(
        place: Callable[[Any], Awaitable[dict[str, Any]]], base: str) -> None:
    async with running() as emu, pro_client(emu, "upbit") as u:
        watch_task = asyncio.create_task(u.watch_orders())
        await subscribed(emu, "upbit")
        trades_task = asyncio.create_task(u.watch_my_trades())
        balance_task = asyncio.create_task(u.watch_balance())
        await subscribed(emu, "upbit", "myOrder", "myAsset")
        assert emu.core.private.state()["connections"]["upbit"] == 1
        o = await place(u)
        first = await asyncio.wait_for(watch_task, 5)
        new = next(x for x in first if x["id"] == o["id"])
        assert new["clientOrderId"] == "up-order" and set(new["info"]) == UPBIT_ORDER_KEYS
        if o["type"] == "limit":  # (a market order's wait, fills and end come at once)
            assert new["status"] == "open" and new["info"]["state"] == "wait"
        emu.step()  # a limit order fills at the next book; a market one has already
        rest = await u.fetch_order(o["id"])
        assert rest["status"] in ("closed", "canceled") and rest["filled"] > 0
        done = await eventually(lambda: (x := cached(u, o["id"])) and x["status"] == rest["status"]
                                and x, u.watch_orders)
        await asyncio.wait_for(trades_task, 5)
        trades = [t for t in u.myTrades if t["order"] == o["id"]]
        assert done["filled"] == pytest.approx(rest["filled"], abs=1e-12)
        assert done["cost"] == pytest.approx(rest["cost"], abs=1e-6)
        assert done["fee"]["currency"] == rest["fee"]["currency"] == "KRW"
        # (ccxt leaves Upbit's fee costs as strings, on both paths)
        assert float(done["fee"]["cost"]) == pytest.approx(float(rest["fee"]["cost"]), abs=1e-6)
        assert done["clientOrderId"] == rest["clientOrderId"] == "up-order"
        assert done["info"]["state"] in ("done", "cancel") and done["info"]["trade_uuid"] is None
        assert [t["id"] for t in trades] == [t["id"] for t in rest["trades"]]
        assert all(t["fee"]["currency"] == "KRW" and float(t["fee"]["cost"]) > 0 for t in trades)
        assert sum(float(t["fee"]["cost"]) for t in trades) == \
            pytest.approx(float(rest["fee"]["cost"]), abs=1e-6)
        assert sum(t["amount"] for t in trades) == pytest.approx(rest["filled"], abs=1e-12)
        await asyncio.wait_for(balance_task, 5)
        rest_bal = await u.fetch_balance()

        def balances_agree() -> bool:
            return all(u.balance.get(a, {}).get(k) == pytest.approx(rest_bal[a][k], abs=1e-6)
                       for a in (base, "KRW") for k in ("free", "used"))

        assert await eventually(balances_agree, u.watch_balance)


async def test_upbit_cancel_keeps_the_identifier() -> None:
    async with running() as emu, pro_client(emu, "upbit") as u:
        watch_task = asyncio.create_task(u.watch_orders("ETH/KRW"))
        await subscribed(emu, "upbit")
        o = await u.create_order("ETH/KRW", "limit", "buy", 0.01, 1_000_000,
                                 {"clientOrderId": "up-keep"})
        await asyncio.wait_for(watch_task, 5)
        await u.cancel_order(o["id"])
        got = await eventually(lambda: (x := cached(u, o["id"])) and x["status"] == "canceled"
                               and x, lambda: u.watch_orders("ETH/KRW"))
        assert got["clientOrderId"] == "up-keep" and got["info"]["state"] == "cancel"
        assert (await u.fetch_order(o["id"]))["status"] == "canceled"


async def test_upbit_codes_filter_and_binary_frames() -> None:
    async with running() as emu, pro_client(emu, "upbit") as u:
        key, secret = emu.keys["upbit"]
        token = jwt_hs256({"access_key": key, "nonce": str(uuid.uuid4())}, secret)
        async with aiohttp.ClientSession() as s, s.ws_connect(
                ws_url(emu, "/websocket/v1/private"),
                headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send_json([{"ticket": "t"}, {"type": "myOrder", "codes": ["KRW-ETH"]}])
            await subscribed(emu, "upbit")
            await u.create_order("BTC/KRW", "limit", "buy", 0.0001, 90_000_000,
                                 {"clientOrderId": "up-other"})
            await u.create_order("ETH/KRW", "limit", "buy", 0.01, 1_000_000,
                                 {"clientOrderId": "up-mine"})
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY  # as Upbit sends them
            ev = json.loads(msg.data)
            assert ev["code"] == "KRW-ETH" and ev["identifier"] == "up-mine"
            assert ev["ask_bid"] == "BID" and ev["state"] == "wait"
            assert ev["stream_type"] == "REALTIME" and ev["trade_fee"] is None


def _bad_token(kind: str, key: str, secret: str) -> dict[str, str]:
    nonce = str(uuid.uuid4())
    if kind == "missing":
        return {}
    if kind == "bad-signature":
        return {"Authorization": "Bearer " + jwt_hs256({"access_key": key, "nonce": nonce},
                                                       "wrong")}
    if kind == "unknown-key":
        return {"Authorization": "Bearer " + jwt_hs256({"access_key": "nobody", "nonce": nonce},
                                                       secret)}
    return {"Authorization": jwt_hs256({"access_key": key, "nonce": nonce}, secret)}  # no Bearer


@pytest.mark.parametrize("kind", ["missing", "bad-signature", "unknown-key", "not-bearer"])
async def test_upbit_private_refused_without_a_valid_jwt(kind: str) -> None:
    async with running() as emu:
        key, secret = emu.keys["upbit"]
        async with aiohttp.ClientSession() as s, s.ws_connect(
                ws_url(emu, "/websocket/v1/private"), headers=_bad_token(kind, key, secret)) as ws:
            await ws.send_json([{"ticket": "t"}, {"type": "myOrder"}])
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY
            assert json.loads(msg.data)["error"]["name"] == "INVALID_AUTH"
            assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE,
                                                         aiohttp.WSMsgType.CLOSED)
        assert emu.core.private.state()["connections"]["upbit"] == 0


async def test_ccxt_pro_upbit_with_a_bad_secret_gets_nothing() -> None:
    async with running() as emu, pro_client(emu, "upbit", secret="wrong") as u:
        # Upbit answers INVALID_AUTH (ccxt ignores a message without a type) and
        # hangs up: the watch fails at once instead of waiting for ever.
        with pytest.raises(NetworkError):
            await asyncio.wait_for(u.watch_orders(), 5)


# --------------------------------------------------------------------------- faults
@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_disconnect_and_silence_faults(venue: str) -> None:
    async with running() as emu, pro_client(emu, venue) as ex:
        sym = "ETH/USDT" if venue == "binance" else "ETH/KRW"
        px = 1000.0 if venue == "binance" else 1_000_000
        watch_task = asyncio.create_task(ex.watch_orders(sym))
        await subscribed(emu, venue)
        state = await admin(emu, "POST", "/admin/streams",
                            {"venue": venue, "action": "silence", "seconds": 30,
                             "streams": "private"})
        assert state["private"]["connections"][venue] == 1
        o = await ex.create_order(sym, "limit", "buy", 0.01, px, {"clientOrderId": f"{venue}-s"})
        done, _ = await asyncio.wait({watch_task}, timeout=0.5)
        assert not done  # silence: nothing arrives (REST still says the order is open)
        assert (await ex.fetch_order(o["id"], sym))["status"] == "open"
        await admin(emu, "POST", "/admin/streams",
                    {"venue": venue, "action": "disconnect", "streams": "private"})
        with pytest.raises(NetworkError):  # ccxt: the connection closed
            await asyncio.wait_for(watch_task, 5)
        assert emu.core.private.state()["connections"][venue] == 0
        assert emu.core.streams.state()["connections"] == {"binance": 0, "upbit": 0}
        # The client reconnects (ccxt.pro: the next watch; at Upbit with the token it
        # signed once) and hears what happens next, not what the silence swallowed.
        await admin(emu, "POST", "/admin/streams",
                    {"venue": venue, "action": "silence", "seconds": 0.001,
                     "streams": "private"})
        watch_task = asyncio.create_task(ex.watch_orders(sym))
        await subscribed(emu, venue)
        assert emu.core.private.state()["connections"][venue] == 1
        await ex.cancel_order(o["id"], sym)
        got = await asyncio.wait_for(watch_task, 5)
        assert [x["status"] for x in got if x["id"] == o["id"]] == ["canceled"]


async def test_events_are_stamped_now() -> None:
    async with running() as emu, pro_client(emu, "binance") as b:
        watch_task = asyncio.create_task(b.watch_orders("BTC/USDT"))
        await subscribed(emu, "binance")
        before = int(time.time() * 1000)
        await b.create_order("BTC/USDT", "limit", "buy", 0.01, 1000.0)
        got = (await asyncio.wait_for(watch_task, 5))[-1]
        assert before - 1000 <= got["info"]["E"] <= int(time.time() * 1000) + 1000


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_all_three_watches_at_once_on_one_subscription(venue: str) -> None:
    """As an engine starts them: orders, fills and balances together, no symbol,
    before any acknowledgement - one connection, every update reaching each."""
    async with running() as emu, pro_client(emu, venue) as ex:
        sym = "ETH/USDT" if venue == "binance" else "ETH/KRW"
        tasks = [asyncio.create_task(w()) for w in (ex.watch_orders, ex.watch_my_trades,
                                                    ex.watch_balance)]
        await subscribed(emu, venue, "myOrder", "myAsset")
        assert emu.core.private.state()["connections"][venue] == 1
        o = await ex.create_order(sym, "market", "sell", 0.05, None, {"clientOrderId": "all3"})
        orders, trades, balance = await asyncio.wait_for(asyncio.gather(*tasks), 5)
        assert any(x["id"] == o["id"] for x in orders)
        assert trades and all(t["order"] == o["id"] for t in trades)
        assert "ETH" in (balance if venue == "upbit" else ex.balance["spot"])
        got = await eventually(lambda: (x := cached(ex, o["id"])) and x["status"] == "closed"
                               and x, ex.watch_orders)
        assert got["filled"] == (await ex.fetch_order(o["id"], sym))["filled"] == 0.05


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_an_order_whose_answer_was_lost_is_on_the_stream(venue: str) -> None:
    """A 5xx after the venue took the order: REST gave no id, the stream has it
    (by client order id), as the venue would have sent it."""
    async with running() as emu, pro_client(emu, venue) as ex:
        sym = "ETH/USDT" if venue == "binance" else "ETH/KRW"
        px = 1000.0 if venue == "binance" else 1_000_000
        watch_task = asyncio.create_task(ex.watch_orders())
        await subscribed(emu, venue)
        emu.add_fault(venue=venue, kind="http_5xx_after_execute")
        with pytest.raises(ExchangeNotAvailable):
            await ex.create_order(sym, "limit", "buy", 0.01, px, {"clientOrderId": "lost-1"})
        got = await asyncio.wait_for(watch_task, 5)
        mine = [x for x in got if x["clientOrderId"] == "lost-1"]
        assert len(mine) == 1 and mine[0]["status"] == "open" and mine[0]["id"]
        rest = await ex.fetch_order(mine[0]["id"], sym)
        assert rest["clientOrderId"] == "lost-1" and rest["status"] == "open"


async def test_upbit_batch_cancel_arrives_when_the_venue_does_it() -> None:
    async with running() as emu, pro_client(emu, "upbit") as u:
        watch_task = asyncio.create_task(u.watch_orders())
        await subscribed(emu, "upbit")
        o = await u.create_order("ETH/KRW", "limit", "buy", 0.01, 1_000_000,
                                 {"clientOrderId": "up-batch"})
        await asyncio.wait_for(watch_task, 5)
        await u.private_delete_orders_open({"pairs": "KRW-ETH"})  # an acceptance only
        await asyncio.sleep(0.2)
        assert (cached(u, o["id"]) or {})["status"] == "open"
        emu.step()  # the venue cancels at its next book
        got = await eventually(lambda: (x := cached(u, o["id"])) and x["status"] == "canceled"
                               and x, u.watch_orders)
        assert got["clientOrderId"] == "up-batch"
