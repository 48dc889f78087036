"""ccxt_config shapes and the `python -m bot.drill.emulator` entry point."""

from __future__ import annotations

import asyncio
import signal
import sys

import pytest

from bot.drill.emulator.ccxt_config import BINANCE_API_PATHS, ccxt_config


def test_ccxt_config_points_everything_at_the_emulator() -> None:
    url = "http://127.0.0.1:9999"
    b = ccxt_config("binance", url, "k", "s")
    assert b["apiKey"] == "k" and b["secret"] == "s"
    assert b["urls"]["api"]["public"] == b["urls"]["api"]["private"] == url + "/api/v3"
    rest = {k: v for k, v in b["urls"]["api"].items() if k != "ws"}
    assert set(rest) == set(BINANCE_API_PATHS)
    assert all(v.startswith(url + "/") for v in rest.values())
    # The streams on the same host (ccxt.pro's spot websocket URL), the spot user
    # data stream too (the WebSocket API).
    assert b["urls"]["api"]["ws"] == {"spot": "ws://127.0.0.1:9999/ws",
                                      "ws-api": {"spot": "ws://127.0.0.1:9999/ws-api/v3"}}
    # Spot only (one exchangeInfo call); open orders listable without a symbol.
    assert b["options"] == {
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "fetchOpenOrders": {"warnWithoutSymbol": False},
    }
    u = ccxt_config("upbit", url + "/", "k", "s")
    assert u["urls"]["api"] == {"public": url, "private": url,
                                "ws": "ws://127.0.0.1:9999/websocket/v1"}
    # At the venues themselves ccxt.pro keeps its own stream URLs.
    assert "ws" not in ccxt_config("binance", "https://api.binance.com", "k", "s")["urls"]["api"]
    assert "ws" not in ccxt_config("upbit", "https://api.upbit.com", "k", "s")["urls"]["api"]
    assert u["options"] == {"createMarketBuyOrderRequiresPrice": False}
    with pytest.raises(ValueError):
        ccxt_config("kraken", url, "k", "s")
    assert "ccxt" not in sys.modules["bot.drill.emulator.ccxt_config"].__dict__


async def test_cli_serves_until_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.drill.emulator",
        "--port",
        "0",
        "--top-n",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on http://127.0.0.1:" in first
        url = first.rsplit(" ", 1)[-1].strip()
        rest = b""
        while b"FAKE" not in rest:
            rest += await asyncio.wait_for(proc.stdout.readline(), 10)
        import aiohttp

        async with aiohttp.ClientSession() as s, s.get(url + "/api/v3/time") as r:
            assert r.status == 200 and "serverTime" in await r.json()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
