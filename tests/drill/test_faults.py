"""Each injected fault produces the documented ccxt exception."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import ccxt.async_support as ccxt
import pytest

from tests.drill.emu_support import admin, client, raw, running

SYMBOL = {"binance": "BTC/USDT", "upbit": "BTC/KRW"}


async def _limit_buy(ex: Any, venue: str, cid: str) -> dict[str, Any]:
    price = 50_000.0 if venue == "binance" else 70_000_000.0
    amount = 0.001 if venue == "binance" else 0.0001
    return await ex.create_order(
        SYMBOL[venue], "limit", "buy", amount, price, {"clientOrderId": cid}
    )


async def _fetch_by_cid(ex: Any, venue: str, cid: str) -> dict[str, Any]:
    if venue == "binance":
        return await ex.fetch_order(None, SYMBOL[venue], {"clientOrderId": cid})
    return ex.parse_order(await ex.private_get_order({"identifier": cid}))


@pytest.mark.parametrize(
    ("venue", "kind", "expected"),
    [
        ("binance", "http_429", ccxt.DDoSProtection),
        ("upbit", "http_429", ccxt.RateLimitExceeded),
        ("binance", "http_418", ccxt.DDoSProtection),
        ("upbit", "http_418", ccxt.DDoSProtection),
        ("binance", "maintenance", ccxt.ExchangeNotAvailable),
        ("upbit", "maintenance", ccxt.ExchangeNotAvailable),
    ],
)
async def test_request_faults(venue: str, kind: str, expected: type[Exception]) -> None:
    # No grace for requests in flight: this client sends one request at a time.
    async with running(limits={"inflight_grace_s": 0.0}) as emu, client(emu, venue) as ex:
        await ex.load_markets()
        added = await admin(
            emu, "POST", "/admin/faults", {"venue": venue, "kind": kind, "count": 1, "seconds": 7}
        )
        assert added["added"][0]["kind"] == kind
        with pytest.raises(expected):
            await ex.fetch_order_book(SYMBOL[venue])
        headers = ex.last_response_headers
        if kind in ("http_429", "http_418") and venue == "binance":
            assert headers["Retry-After"] == "7" and "-1003" in ex.last_http_response
        if kind == "http_429" and venue == "upbit":
            assert headers["Remaining-Req"].endswith("sec=0")
        if kind == "maintenance":
            assert (await ex.fetch_order_book(SYMBOL[venue]))["bids"]  # count=1
            return
        # A client that does not wait out the answer is banned (418), as the venues do.
        with pytest.raises(ccxt.DDoSProtection):
            await ex.fetch_order_book(SYMBOL[venue])
        limits = await admin(emu, "GET", "/admin/limits")
        assert limits[venue]["in_window"] == 1 and limits[venue]["http_418"] >= 1
        await admin(emu, "DELETE", "/admin/limits")  # the ban lifted (by the operator)
        assert (await ex.fetch_order_book(SYMBOL[venue]))["bids"]  # count=1: next call is fine
        assert (await admin(emu, "GET", "/admin/faults"))["faults"] == []


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_timeout_and_latency(venue: str) -> None:
    async with running() as emu, client(emu, venue, timeout=300) as ex:
        await ex.load_markets()
        emu.add_fault(venue=venue, kind="timeout", seconds=5, count=1)
        with pytest.raises(ccxt.RequestTimeout):
            await ex.fetch_order_book(SYMBOL[venue])
        emu.add_fault(venue=venue, kind="latency", seconds=0.15, count=1)
        t0 = time.monotonic()
        await ex.fetch_order_book(SYMBOL[venue])
        assert time.monotonic() - t0 >= 0.15


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_insufficient_funds_fault(venue: str) -> None:
    faults = [{"venue": "both", "kind": "insufficient_funds", "count": 1}]
    async with running(faults=faults) as emu, client(emu, venue) as ex:
        await ex.load_markets()
        with pytest.raises(ccxt.InsufficientFunds):
            await _limit_buy(ex, venue, "if-1")
        assert (await _limit_buy(ex, venue, "if-2"))["clientOrderId"] == "if-2"
        log = (await admin(emu, "GET", f"/admin/orders?venue={venue}"))[venue]
        assert [(r["client_order_id"], r["outcome"]) for r in log] == [
            ("if-1", "rejected"),
            ("if-2", "accepted"),
        ]


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_partial_fill_fault(venue: str) -> None:
    async with running() as emu, client(emu, venue) as ex:
        await ex.load_markets()
        emu.add_fault(venue=venue, kind="partial_fill", ratio=0.5, count=1)
        amount = 0.01 if venue == "binance" else 0.001
        o = await ex.create_order(
            SYMBOL[venue], "market", "sell", amount, None, {"clientOrderId": "pf-1"}
        )
        emu.step()
        got = await _fetch_by_cid(ex, venue, "pf-1")
        assert got["id"] == o["id"] and got["filled"] == pytest.approx(amount / 2)
        assert got["status"] == ("expired" if venue == "binance" else "canceled")


@pytest.mark.parametrize("venue", ["binance", "upbit"])
async def test_5xx_after_execute_leaves_the_order(venue: str) -> None:
    async with running() as emu, client(emu, venue) as ex:
        await ex.load_markets()
        await admin(
            emu,
            "POST",
            "/admin/faults",
            {"venue": venue, "kind": "http_5xx_after_execute", "count": 1},
        )
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await _limit_buy(ex, venue, "x5-1")
        log = (await admin(emu, "GET", "/admin/orders"))[venue]
        assert len(log) == 1 and log[0]["client_order_id"] == "x5-1"
        assert log[0]["outcome"] == "accepted" and log[0]["http_status"] == 503
        assert log[0]["fault"] == "http_5xx_after_execute" and log[0]["status"] == "open"
        got = await _fetch_by_cid(ex, venue, "x5-1")
        assert got["id"] == log[0]["order_id"] and got["status"] == "open"


async def test_admin_step_fund_balances_and_404() -> None:
    async with running() as emu:
        seq = emu.core.snapshot().seq
        assert (await admin(emu, "POST", "/admin/step", {"n": 3}))["seq"] == seq + 3
        before = (await admin(emu, "GET", "/admin/balances"))["upbit"]["KRW"]["free"]
        after = await admin(
            emu, "POST", "/admin/fund", {"venue": "upbit", "asset": "KRW", "amount": 1e6}
        )
        assert after["KRW"]["free"] == pytest.approx(before + 1e6)
        await admin(
            emu,
            "POST",
            "/admin/faults",
            [{"venue": "both", "kind": "latency", "seconds": 1, "count": None}],
        )
        assert len((await admin(emu, "GET", "/admin/faults"))["faults"]) == 2
        assert (await admin(emu, "DELETE", "/admin/faults"))["cleared"] == 2
        status, body, _ = await raw(emu, "POST", "/admin/faults", json={"kind": "nope"})
        assert status == 400
        for path in (
            "/sapi/v1/capital/config/getall",
            "/fapi/v1/exchangeInfo",
            "/api/v3/nope",
            "/x",
        ):
            status, body, _ = await raw(emu, "GET", path)
            assert status == 404 and '"not_found"' in body
        state = await admin(emu, "GET", "/admin/state")
        assert state["universe"] == ["BTC", "ETH", "XRP", "DOGE", "SHIB"] and not state["autostep"]


async def test_autostep_fills_without_admin_step() -> None:
    async with running(autostep=True, interval_s=0.02) as emu, client(emu, "binance") as b:
        await b.load_markets()
        o = await b.create_order(
            "BTC/USDT", "market", "buy", 0.001, None, {"clientOrderId": "auto-1"}
        )
        for _ in range(50):
            got = await b.fetch_order(o["id"], "BTC/USDT")
            if got["status"] == "closed":
                break
            await asyncio.sleep(0.02)
        assert got["status"] == "closed" and got["filled"] == 0.001
