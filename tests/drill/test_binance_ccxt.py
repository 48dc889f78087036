"""Real ccxt (Binance spot) against the real emulator on a loopback port."""

from __future__ import annotations

import ccxt.async_support as ccxt
import pytest

from tests.drill.emu_support import admin, client, running


async def test_load_markets_is_one_exchange_info_call() -> None:
    async with running(top_n=50) as emu, client(emu, "binance") as b:
        markets = await b.load_markets()
        paths = [r["path"] for r in emu.core.requests if r["venue"] == "binance"]
        assert paths == ["/api/v3/exchangeInfo"]
        assert len(markets) == len(emu.core.universe) == 50
        m = markets["BTC/USDT"]
        assert m["active"] and m["spot"] and m["limits"]["cost"]["min"] == 5.0
        assert m["precision"]["price"] > 0 and m["precision"]["amount"] > 0


async def test_book_balance_ticker_and_headers() -> None:
    async with running() as emu, client(emu, "binance") as b:
        await b.load_markets()
        ob = await b.fetch_order_book("ETH/USDT", 5)
        assert len(ob["bids"]) == 5 and ob["bids"][0][0] < ob["asks"][0][0]
        assert int(b.last_response_headers["X-MBX-USED-WEIGHT-1M"]) >= 25
        bal = await b.fetch_balance()
        assert bal["USDT"]["free"] == 20_000.0 and bal["BTC"]["free"] > 0
        t = await b.fetch_ticker("BTC/USDT")
        assert t["bid"] < t["ask"] and t["last"] > 0
        assert (await b.fetch_time()) > 0


async def test_limit_fills_after_a_step_and_a_market_order_on_arrival() -> None:
    async with running() as emu, client(emu, "binance") as b:
        await b.load_markets()
        ob = await b.fetch_order_book("BTC/USDT")
        high = ob["asks"][0][0] * 1.01
        lim = await b.create_order(
            "BTC/USDT", "limit", "buy", 0.01, high, {"clientOrderId": "bn-lim-1"}
        )
        assert lim["clientOrderId"] == "bn-lim-1" and lim["status"] == "open"
        assert "X-MBX-ORDER-COUNT-10S" in b.last_response_headers
        mkt = await b.create_order(
            "BTC/USDT", "market", "sell", 0.005, None, {"clientOrderId": "bn-mkt-1"}
        )
        # A market order is matched on arrival, as the venue does (FULL: with its fills).
        assert mkt["status"] == "closed" and mkt["filled"] == 0.005
        assert mkt["trades"] and all(t["fee"]["currency"] == "USDT" for t in mkt["trades"])
        emu.step()
        got = await b.fetch_order(None, "BTC/USDT", {"clientOrderId": "bn-lim-1"})
        assert got["id"] == lim["id"] and got["status"] == "closed" and got["filled"] == 0.01
        got2 = await b.fetch_order(mkt["id"], "BTC/USDT")
        assert got2["status"] == "closed" and got2["filled"] == 0.005 and got2["cost"] > 0
        bal = await b.fetch_balance()
        assert bal["USDT"]["used"] == 0.0


async def test_quote_sized_market_buy() -> None:
    async with running() as emu, client(emu, "binance") as b:
        await b.load_markets()
        o = await b.create_market_buy_order_with_cost("ETH/USDT", 50, {"clientOrderId": "bn-cost"})
        emu.step()
        got = await b.fetch_order(o["id"], "ETH/USDT")
        assert got["status"] == "closed" and 49.0 < got["cost"] <= 50.0
        assert got["info"]["origQuoteOrderQty"] == "50.00000000"


async def test_cancel_cancel_all_and_open_orders() -> None:
    async with running() as emu, client(emu, "binance") as b:
        await b.load_markets()
        low = (await b.fetch_order_book("BTC/USDT"))["bids"][-1][0] * 0.9
        low = float(b.price_to_precision("BTC/USDT", low))
        for i in range(3):
            await b.create_order(
                "BTC/USDT", "limit", "buy", 0.001, low, {"clientOrderId": f"bn-o{i}"}
            )
        await b.create_order("ETH/USDT", "limit", "buy", 0.01, 1000.0, {"clientOrderId": "bn-eth"})
        emu.step()
        assert len(await b.fetch_open_orders("BTC/USDT")) == 3
        c = await b.cancel_order(None, "BTC/USDT", {"clientOrderId": "bn-o0"})
        assert c["status"] == "canceled" and c["info"]["origClientOrderId"] == "bn-o0"
        with pytest.raises(ccxt.OrderNotFound):
            await b.cancel_order(None, "BTC/USDT", {"clientOrderId": "bn-o0"})
        gone = await b.cancel_all_orders("BTC/USDT")
        assert len(gone) == 2 and all(o["status"] == "canceled" for o in gone)
        with pytest.raises(ccxt.OrderNotFound):
            await b.cancel_all_orders("BTC/USDT")
        assert [o["clientOrderId"] for o in await b.fetch_open_orders("ETH/USDT")] == ["bn-eth"]
        with pytest.raises(ccxt.OrderNotFound):
            await b.fetch_order("999", "BTC/USDT")
        bal = await b.fetch_balance()
        assert bal["USDT"]["used"] > 0  # only the ETH order still reserves


async def test_signature_key_and_timestamp_rejected() -> None:
    async with running() as emu:
        async with client(emu, "binance", secret="wrong-secret") as b:
            await b.load_markets()
            with pytest.raises(ccxt.AuthenticationError):
                await b.fetch_balance()
            assert '"code":-1022' in b.last_http_response.replace(" ", "")
        async with client(emu, "binance", apiKey="nobody") as b:
            with pytest.raises(ccxt.AuthenticationError):
                await b.fetch_balance()
        async with client(emu, "binance") as b:
            b.options["timeDifference"] = -5000  # our clock 5 s ahead of the server
            with pytest.raises(ccxt.InvalidNonce):
                await b.fetch_balance()
            b.options["timeDifference"] = 20000  # 20 s behind: outside recvWindow 10000
            with pytest.raises(ccxt.InvalidNonce):
                await b.fetch_balance()


async def test_filter_failures_funds_and_duplicates() -> None:
    async with running() as emu, client(emu, "binance") as b:
        await b.load_markets()
        base = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"}
        with pytest.raises(ccxt.InvalidOrder):  # off-tick price
            await b.private_post_order({**base, "quantity": "0.01", "price": "50000.001"})
        with pytest.raises(ccxt.InvalidOrder):  # off-step quantity
            await b.private_post_order({**base, "quantity": "0.0100001", "price": "50000"})
        with pytest.raises(ccxt.BadRequest):  # notional under 5 USDT
            await b.private_post_order({**base, "quantity": "0.00001", "price": "50000"})
        with pytest.raises(ccxt.InsufficientFunds):
            await b.create_order("BTC/USDT", "limit", "buy", 1.0, 50000.0)
        await b.create_order("BTC/USDT", "limit", "buy", 0.001, 50000.0, {"clientOrderId": "dup"})
        with pytest.raises(ccxt.InvalidOrder):
            await b.create_order(
                "BTC/USDT", "limit", "buy", 0.001, 50000.0, {"clientOrderId": "dup"}
            )
        with pytest.raises(ccxt.BadSymbol):
            await b.private_get_order({"symbol": "NOPEUSDT", "orderId": "1"})
        log = (await admin(emu, "GET", "/admin/orders?venue=binance"))["binance"]
        assert [r["error"] for r in log] == ["-1013", "-1013", "-1013", "-2010", None, "-2010"]
        assert [r["client_order_id"] for r in log][-2:] == ["dup", "dup"]
