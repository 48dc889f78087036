"""Real ccxt (Upbit) against the real emulator on a loopback port."""

from __future__ import annotations

import hashlib
import json
import uuid

import ccxt.async_support as ccxt
import pytest

from bot.drill.emulator.auth import jwt_hs256
from tests.drill.emu_support import admin, client, raw, running


async def test_markets_book_balance_instruments() -> None:
    async with running() as emu, client(emu, "upbit") as u:
        markets = await u.load_markets()
        assert [r["path"] for r in emu.core.requests] == ["/v1/market/all"]
        assert "BTC/KRW" in markets and "USDT/KRW" in markets
        ob = await u.fetch_order_book("BTC/KRW")
        assert len(ob["bids"]) == 30 and ob["bids"][0][0] < ob["asks"][0][0]
        assert u.last_response_headers["Remaining-Req"].startswith("group=orderbook;")
        fx = await u.fetch_order_book("USDT/KRW")
        assert 1300 < fx["bids"][0][0] < 1500
        bal = await u.fetch_balance()
        assert bal["KRW"]["free"] > 20_000_000 and bal["BTC"]["free"] > 0
        inst = await u.public_get_orderbook_instruments({"markets": "KRW-BTC,KRW-USDT"})
        assert [i["tick_size"] for i in inst] == ["1000", "0.5"]
        tickers = await u.fetch_tickers()
        assert tickers["BTC/KRW"]["last"] > 0


async def test_limit_market_sell_and_market_buy_by_cost_fill() -> None:
    async with running() as emu, client(emu, "upbit") as u:
        await u.load_markets()
        ob = await u.fetch_order_book("XRP/KRW")
        lim = await u.create_order(
            "XRP/KRW", "limit", "sell", 10, ob["bids"][0][0], {"clientOrderId": "up-lim"}
        )
        assert lim["status"] == "open" and lim["clientOrderId"] == "up-lim"
        await u.create_order("XRP/KRW", "market", "sell", 5, None, {"clientOrderId": "up-sell"})
        buy = await u.create_market_buy_order_with_cost(
            "BTC/KRW", 10_000, {"clientOrderId": "up-buy"}
        )
        buy2 = await u.create_order(
            "BTC/KRW", "market", "buy", None, None, {"cost": 6000, "clientOrderId": "up-buy2"}
        )
        assert buy["type"] == "market" and buy["cost"] == 10_000
        emu.step()
        for cid, amount in (("up-lim", 10), ("up-sell", 5)):
            o = u.parse_order(await u.private_get_order({"identifier": cid}))
            assert o["status"] == "closed" and o["filled"] == amount and float(o["fee"]["cost"]) > 0
        o = u.parse_order(await u.private_get_order({"identifier": "up-buy"}))
        assert o["id"] == buy["id"] and o["status"] == "closed" and 9_990 < o["cost"] <= 10_000
        assert len(o["trades"]) >= 1
        o2 = await u.fetch_order(buy2["id"])
        assert o2["status"] == "closed" and o2["filled"] > 0


async def test_cancels_and_open_orders() -> None:
    async with running() as emu, client(emu, "upbit") as u:
        await u.load_markets()
        ids = []
        for i, px in enumerate((90_000_000, 91_000_000, 92_000_000)):
            o = await u.create_order(
                "BTC/KRW", "limit", "buy", 0.0001, px, {"clientOrderId": f"up-c{i}"}
            )
            ids.append(o["id"])
        await u.create_order(
            "ETH/KRW", "limit", "buy", 0.01, 1_000_000, {"clientOrderId": "up-eth"}
        )
        emu.step()
        assert len(await u.fetch_open_orders("BTC/KRW")) == 3
        c = await u.cancel_order(ids[0])
        assert c["id"] == ids[0]  # Upbit answers with the pre-cancel state
        assert (await u.fetch_order(ids[0]))["status"] == "canceled"
        u.parse_order(await u.private_delete_order({"identifier": "up-c1"}))
        assert (await u.fetch_order(ids[1]))["status"] == "canceled"
        with pytest.raises(ccxt.ExchangeError):
            await u.cancel_order(ids[1])
        res = await u.private_delete_orders_open({"pairs": "KRW-BTC"})
        assert res["success"]["count"] == 1 and res["success"]["orders"][0]["identifier"] == "up-c2"
        # An acceptance: the venue cancels at its next book.
        assert {o["clientOrderId"] for o in await u.fetch_open_orders()} == {"up-c2", "up-eth"}
        emu.step()
        assert [o["clientOrderId"] for o in await u.fetch_open_orders()] == ["up-eth"]
        with pytest.raises(ccxt.OrderNotFound):
            await u.fetch_order(str(uuid.uuid4()))
        with pytest.raises(ccxt.OrderNotFound):
            await u.private_get_order({"identifier": "never-sent"})


async def test_rules_funds_and_identifier_reuse() -> None:
    async with running() as emu, client(emu, "upbit") as u:
        await u.load_markets()
        with pytest.raises(ccxt.ExchangeError, match="invalid_price_bid"):
            await u.create_order(
                "BTC/KRW", "limit", "buy", 0.001, 100_000_500, {"clientOrderId": "r1"}
            )
        with pytest.raises(ccxt.ExchangeError, match="under_min_total_bid"):
            await u.create_order(
                "BTC/KRW", "limit", "buy", 0.00001, 100_000_000, {"clientOrderId": "r2"}
            )
        with pytest.raises(ccxt.ExchangeError, match="under_min_total_ask"):
            await u.create_order("XRP/KRW", "market", "sell", 1, None, {"clientOrderId": "r3"})
        with pytest.raises(ccxt.InsufficientFunds, match="insufficient_funds_bid"):
            await u.create_order(
                "BTC/KRW", "limit", "buy", 10, 100_000_000, {"clientOrderId": "r4"}
            )
        with pytest.raises(ccxt.InsufficientFunds, match="insufficient_funds_ask"):
            await u.create_order("BTC/KRW", "market", "sell", 5, None, {"clientOrderId": "r5"})
        # r1 failed, but an identifier can never be used again
        with pytest.raises(ccxt.ExchangeError, match="identifier"):
            await u.create_order(
                "BTC/KRW", "limit", "buy", 0.0001, 100_000_000, {"clientOrderId": "r1"}
            )
        log = (await admin(emu, "GET", "/admin/orders"))["upbit"]
        assert [r["error"] for r in log] == [
            "invalid_price_bid",
            "under_min_total_bid",
            "under_min_total_ask",
            "insufficient_funds_bid",
            "insufficient_funds_ask",
            "validation_error",
        ]


async def test_jwt_signature_hash_and_nonce_checks() -> None:
    async with running() as emu:
        async with client(emu, "upbit", secret="wrong") as u:
            with pytest.raises(ccxt.AuthenticationError):
                await u.fetch_balance()
        async with client(emu, "upbit", apiKey="nobody") as u:
            with pytest.raises(ccxt.AuthenticationError):
                await u.fetch_balance()
        key, secret = emu.keys["upbit"]
        query = "market=KRW-BTC&limit=10"
        good = hashlib.sha512(query.encode()).hexdigest()
        payload = {
            "access_key": key,
            "nonce": str(uuid.uuid4()),
            "query_hash": good,
            "query_hash_alg": "SHA512",
        }
        hdr = {"Authorization": "Bearer " + jwt_hs256(payload, secret)}
        status, _, headers = await raw(emu, "GET", "/v1/orders/open?" + query, headers=hdr)
        assert status == 200 and "Remaining-Req" in headers
        status, body, _ = await raw(emu, "GET", "/v1/orders/open?" + query, headers=hdr)
        assert status == 401 and json.loads(body)["error"]["name"] == "nonce_used"
        payload = {**payload, "nonce": str(uuid.uuid4())}
        hdr = {"Authorization": "Bearer " + jwt_hs256(payload, secret)}
        status, body, _ = await raw(
            emu, "GET", "/v1/orders/open?market=KRW-ETH&limit=10", headers=hdr
        )
        assert status == 401 and json.loads(body)["error"]["name"] == "invalid_query_payload"
        status, body, _ = await raw(emu, "GET", "/v1/accounts")
        assert status == 401 and json.loads(body)["error"]["name"] == "no_authorization_token"
