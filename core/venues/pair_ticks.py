"""Per-pair price ticks read from the venue (Upbit's /v1/orderbook/instruments).

Upbit lists exceptions to its KRW tick table (USDT/KRW ticks 0.5 KRW where the
table says 1) and can add more at any time; the instruments endpoint gives each
pair's tick at its current price, so that tick, with the price it was read at,
beats the table within that price band (core.venues.rules.UpbitKrwRules). The
answer is cached and refreshed in the background; a failed read keeps the last
ticks, or the table when there are none.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from loguru import logger

CHUNK = 50  # market codes per request: the URL stays short, few requests
TTL_S = 600.0


class PairTicks:
    def __init__(self, ttl_s: float = TTL_S, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        self.ttl_s = ttl_s
        self._now = monotonic
        self.ticks: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (tick, price then)
        self.read_at = -float("inf")
        self._task: asyncio.Task[None] | None = None

    @property
    def stale(self) -> bool:
        return self._now() - self.read_at >= self.ttl_s

    async def refresh(self, client: Any, symbols: list[str]) -> dict[str, tuple[Decimal, Decimal]]:
        """Read every symbol's tick and current price (two requests per chunk)."""
        got: dict[str, tuple[Decimal, Decimal]] = {}
        for i in range(0, len(symbols), CHUNK):
            chunk = symbols[i:i + CHUNK]
            ids = {client.market_id(s): s for s in chunk}
            rows = await client.public_get_orderbook_instruments({"markets": ",".join(ids)})
            tickers = await client.fetch_tickers(chunk)
            for row in rows:
                symbol = ids.get(str(row.get("market")))
                ticker = tickers.get(symbol or "") or {}
                price = ticker.get("last") or ticker.get("close")
                if symbol is None or row.get("tick_size") is None or not price:
                    continue
                got[symbol] = (Decimal(str(row["tick_size"])), Decimal(repr(float(price))))
        self.ticks.update(got)
        self.read_at = self._now()
        return got

    def refresh_soon(self, client: Any, symbols: list[str],
                     on_done: Callable[[dict[str, tuple[Decimal, Decimal]]], None]) -> None:
        """Refresh in the background when stale (never on an order's path)."""
        if not self.stale or (self._task is not None and not self._task.done()):
            return

        async def run() -> None:
            try:
                on_done(await self.refresh(client, symbols))
            except Exception as exc:  # noqa: BLE001 - the cached ticks (or the table) stay
                self.read_at = self._now()  # do not retry on every order
                logger.warning("per-pair ticks not refreshed: {}", exc)

        self._task = asyncio.get_running_loop().create_task(run(), name="pair-ticks")
