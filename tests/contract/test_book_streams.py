"""Contract of the order-book websocket streams: the emulator speaks the venues'
documented protocol and message shapes, and ccxt.pro (the client arbops uses)
builds from them exactly the books the emulator holds.

The emulator is stepped by hand (autostep off), so a book only changes when a
test says so and can be compared level by level.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.drill.emulator import EmulatorHandle
from core.venues.ccxt_client import Gate, make_client
from core.venues.ccxt_config import ccxt_config
from core.venues.profiles import profile_of
from core.venues.rate_budget import Role, VenueBudget
from tests.venues.support import emulator

BASES = ["BTC", "ETH", "XRP"]


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorHandle]:
    async with emulator(bases=BASES, autostep=False) as handle:
        yield handle


def ws_url(emu: EmulatorHandle, path: str) -> str:
    return "ws" + emu.url.removeprefix("http") + path


async def next_json(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
    return json.loads(msg.data)


async def test_binance_diff_depth_follows_the_documented_update_ids(emu: EmulatorHandle) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(emu, "/ws")) as ws:
        await ws.send_json({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 7})
        assert await next_json(ws) == {"result": None, "id": 7}
        async with s.get(emu.url + "/api/v3/depth", params={"symbol": "BTCUSDT",
                                                             "limit": "100"}) as r:
            snapshot = await r.json()
        last = snapshot["lastUpdateId"]
        events = []
        for _ in range(3):
            emu.step()
            events.append(await next_json(ws))
        first = events[0]
        assert set(first) == {"e", "E", "s", "U", "u", "b", "a"}
        assert first["e"] == "depthUpdate" and first["s"] == "BTCUSDT"
        # The first event after the snapshot straddles lastUpdateId + 1; each next
        # one starts right after the previous one ended.
        assert first["U"] <= last + 1 <= first["u"]
        for prev, ev in itertools.pairwise(events):
            assert ev["U"] == prev["u"] + 1
            assert ev["u"] - ev["U"] + 1 == len(ev["b"]) + len(ev["a"])
        assert all(isinstance(p, str) and isinstance(q, str) for p, q in first["b"] + first["a"])
        await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 8})
        assert await next_json(ws) == {"result": ["btcusdt@depth@100ms"], "id": 8}


async def test_binance_drops_a_connection_that_sends_too_much(emu: EmulatorHandle) -> None:
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(emu, "/ws")) as ws:
        for i in range(7):
            await ws.send_json({"method": "LIST_SUBSCRIPTIONS", "id": i})
        kinds = []
        for _ in range(8):
            msg = await ws.receive(timeout=5)
            kinds.append(msg.type)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
        assert kinds[-1] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), kinds
        assert kinds.count(aiohttp.WSMsgType.TEXT) == 5


async def test_upbit_orderbook_many_codes_in_one_request_snapshot_then_realtime(
        emu: EmulatorHandle) -> None:
    codes = ["KRW-BTC", "KRW-ETH", "KRW-USDT"]
    async with aiohttp.ClientSession() as s, s.ws_connect(ws_url(emu, "/websocket/v1")) as ws:
        await ws.send_json([{"ticket": "t1"}, {"type": "orderbook", "codes": codes}])
        first = []
        for _ in codes:
            msg = await ws.receive(timeout=5)
            assert msg.type is aiohttp.WSMsgType.BINARY  # Upbit sends binary frames
            first.append(json.loads(msg.data))
        assert [m["code"] for m in first] == codes
        assert {m["stream_type"] for m in first} == {"SNAPSHOT"}
        m = first[0]
        assert {"type", "code", "timestamp", "total_ask_size", "total_bid_size",
                "orderbook_units", "stream_type"} <= set(m)
        assert m["type"] == "orderbook" and len(m["orderbook_units"]) == 15
        assert set(m["orderbook_units"][0]) == {"ask_price", "bid_price", "ask_size", "bid_size"}
        emu.step()
        later = [await next_json(ws) for _ in codes]
        assert {x["stream_type"] for x in later} == {"REALTIME"}
        book = emu.core.book("upbit", "BTC")
        assert book is not None
        btc = next(x for x in later if x["code"] == "KRW-BTC")
        assert btc["orderbook_units"][0]["bid_price"] == book.best_bid
        assert btc["timestamp"] == book.timestamp_ms


def rounded(levels: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(p, round(q, 8)) for p, q in levels]


def pro_client(emu: EmulatorHandle, venue: str) -> Any:
    profile = profile_of(venue)
    key, secret = emu.keys[venue]
    budget = VenueBudget(venue, profile.rate, time.monotonic)
    return make_client(profile.ccxt_id, ccxt_config(venue, emu.url, key, secret),
                       Gate(budget, Role.MARKET_DATA, 5.0), streams=True,
                       whole_books=profile.streams.book_resync == "full_snapshot")


async def test_ccxt_pro_builds_the_emulators_binance_books(emu: EmulatorHandle) -> None:
    client = pro_client(emu, "binance")
    symbols = [f"{b}/USDT" for b in BASES]
    try:
        await client.load_markets()
        # Subscribes, reads each symbol's REST snapshot, then applies the diffs
        # (watching many books returns whichever changed; all of them are kept).
        ids = emu.core.streams.last_id

        def behind() -> list[str]:
            return [b for b in BASES
                    if (client.orderbooks.get(f"{b}/USDT") or {}).get("nonce") != ids[b]]

        for _ in range(3):
            emu.step()
            while behind():
                await asyncio.wait_for(client.watch_order_book_for_symbols(symbols, 100), 5)
        for base in BASES:
            ob = client.orderbooks[f"{base}/USDT"]
            book = emu.core.book("binance", base)
            assert book is not None
            # Quantities travel with 8 decimals, as Binance sends them.
            assert [tuple(x) for x in ob["bids"][:10]] == rounded(book.bids[:10])
            assert [tuple(x) for x in ob["asks"][:10]] == rounded(book.asks[:10])
            assert ob["timestamp"] > 0  # the event time of the last diff applied
    finally:
        await client.close()


async def test_ccxt_pro_reads_upbit_books_from_one_subscription(emu: EmulatorHandle) -> None:
    from core.venues.book_streams import _orderbook_codes

    client = pro_client(emu, "upbit")
    symbols = [f"{b}/KRW" for b in BASES] + ["USDT/KRW"]
    try:
        await client.load_markets()
        # One request with every code: the SNAPSHOT of each book arrives at once.
        await asyncio.wait_for(_orderbook_codes(client, symbols), 5)
        while not set(symbols) <= set(client.orderbooks):
            await asyncio.wait_for(_orderbook_codes(client, symbols), 5)
        emu.step()
        await asyncio.wait_for(_orderbook_codes(client, symbols), 5)
        await asyncio.sleep(0.2)  # the other REALTIME books of this step
        for base in BASES:
            ob = client.orderbooks[f"{base}/KRW"]
            book = emu.core.book("upbit", base)
            assert book is not None
            assert ob["timestamp"] == book.timestamp_ms
            assert [tuple(x) for x in ob["bids"][:15]] == rounded(book.bids[:15])
    finally:
        await client.close()
