"""Market data `real` (R-M8): order books polled from the venues through ccxt.

REST polling within the venues' limits: Upbit serves every subscribed book
(and the USDT/KRW FX book) in one request; Binance one depth request per
symbol. A venue that fails to answer is marked down (the engine goes
REDUCING for it) and its books are left out until it answers again.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from loguru import logger

from core.clock import Clock
from core.domain.models import FX_SYMBOL, MarketSnapshot, OrderBook, SymbolStats, Venue
from core.errors import ExchangeError
from core.ports import SnapshotListener
from core.venues.snapshot_feed import SnapshotFeed

DEPTH = 10


class CcxtMarketData:
    def __init__(self, venues: dict[Venue, Any], clock: Clock, interval_s: float = 1.0) -> None:
        self.venues = venues
        self.clock = clock
        self.interval_s = interval_s
        self._feed = SnapshotFeed()
        self._subscribed: list[str] = []
        self._stats: list[SymbolStats] = []
        self._seq = 0
        self.down: dict[Venue, str] = {}  # venue -> why, while it does not answer
        self.down_since: dict[Venue, float] = {}

    # --- MarketData ---------------------------------------------------------------
    async def prepare(self, candidates: int = 60) -> None:
        """Volumes from tickers, spread and depth from books, for universe selection."""
        up, bn = self.venues[Venue.UPBIT], self.venues[Venue.BINANCE]
        await up.load_markets()
        await bn.load_markets()
        up_t = await up.ccxt.fetch_tickers()
        bn_t = await bn.ccxt.fetch_tickers()
        common = []
        for sym, t in up_t.items():
            base, _, quote = sym.partition("/")
            if quote != "KRW" or base == "USDT" or f"{base}/USDT" not in bn_t:
                continue
            common.append((base, float(t.get("quoteVolume") or 0.0),
                           float(bn_t[f"{base}/USDT"].get("quoteVolume") or 0.0)))
        common.sort(key=lambda c: -min(c[1] / 1400.0, c[2]))
        stats = []
        for base, up_vol, bn_vol in common[:candidates]:
            try:
                ub = await up.fetch_order_book(f"{base}/KRW", DEPTH)
                bb = await bn.fetch_order_book(f"{base}/USDT", DEPTH)
            except ExchangeError as exc:
                logger.warning("no book for {} while ranking: {}", base, exc)
                continue
            stats.append(SymbolStats(base, up_vol, bn_vol, max(_spread_bps(ub), _spread_bps(bb)),
                                     min(_depth_quote(ub) / _fx_guess(up_t), _depth_quote(bb))))
        self._stats = stats

    def symbol_stats(self) -> list[SymbolStats]:
        return list(self._stats)

    def subscribe(self, bases: list[str]) -> None:
        self._subscribed = list(dict.fromkeys(bases))

    def latest(self) -> MarketSnapshot | None:
        return self._feed.latest()

    def add_listener(self, listener: SnapshotListener) -> None:
        self._feed.add_listener(listener)

    def step(self) -> MarketSnapshot:
        raise RuntimeError("real market data arrives from the venues; it cannot be stepped")

    async def wait_next(self, after_seq: int) -> MarketSnapshot:
        return await self._feed.wait_next(after_seq)

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            snap = await self.poll()
            if snap is not None:
                self._feed.publish(snap)
            await asyncio.sleep(max(self.interval_s - (time.monotonic() - started), 0.0))

    async def close(self) -> None:
        """Close the venue clients this feed owns (when they are not also the
        trading venues, which the service closes)."""
        for ex in self.venues.values():
            if getattr(ex, "owned_by_market", False):
                await ex.close()

    # --- polling ----------------------------------------------------------------------
    async def poll(self) -> MarketSnapshot | None:
        up_books, bn_books = await asyncio.gather(self._upbit_books(), self._binance_books())
        fx = up_books.pop(FX_SYMBOL, None) if up_books is not None else None
        if fx is None:
            return None  # without the FX book no premium can be computed (R-M1)
        self._seq += 1
        return MarketSnapshot(
            seq=self._seq, ts_ms=int(self.clock.time() * 1000), fx=fx,
            upbit={s.split("/")[0]: b for s, b in (up_books or {}).items()},
            binance={s.split("/")[0]: b for s, b in (bn_books or {}).items()},
        )

    async def _upbit_books(self) -> dict[str, OrderBook] | None:
        ex = self.venues[Venue.UPBIT]
        symbols = [FX_SYMBOL, *(f"{b}/KRW" for b in self._subscribed)]
        try:
            raw = await ex.ccxt.fetch_order_books(symbols, DEPTH)
        except Exception as exc:  # noqa: BLE001 - any failure marks the venue down
            self._mark_down(Venue.UPBIT, exc)
            return None
        self._mark_up(Venue.UPBIT)
        ts = int(self.clock.time() * 1000)
        return {s: _book(s, ob, ts, self._seq + 1) for s, ob in raw.items()}

    async def _binance_books(self) -> dict[str, OrderBook] | None:
        ex = self.venues[Venue.BINANCE]
        symbols = [f"{b}/USDT" for b in self._subscribed]
        try:
            books = await asyncio.gather(*(ex.fetch_order_book(s, DEPTH) for s in symbols))
        except Exception as exc:  # noqa: BLE001 - any failure marks the venue down
            self._mark_down(Venue.BINANCE, exc)
            return None
        self._mark_up(Venue.BINANCE)
        ts = int(self.clock.time() * 1000)
        for b in books:
            b.timestamp_ms, b.seq = ts, self._seq + 1
        return dict(zip(symbols, books, strict=True))

    def _mark_down(self, venue: Venue, exc: BaseException) -> None:
        if venue not in self.down:
            logger.error("{} is not answering: {}", venue, exc)
            self.down_since[venue] = time.monotonic()
        self.down[venue] = str(exc)

    def _mark_up(self, venue: Venue) -> None:
        if self.down.pop(venue, None) is not None:
            logger.info("{} answers again", venue)
            self.down_since.pop(venue, None)


def _book(symbol: str, ob: dict[str, Any], ts: int, seq: int) -> OrderBook:
    return OrderBook(symbol, [(float(p), float(q)) for p, q, *_ in ob["bids"]],
                     [(float(p), float(q)) for p, q, *_ in ob["asks"]], ts, seq)


def _spread_bps(b: OrderBook) -> float:
    if not b.bids or not b.asks:
        return math.nan
    return (b.best_ask / b.best_bid - 1.0) * 1e4


def _depth_quote(b: OrderBook, levels: int = 5) -> float:
    return min(sum(p * q for p, q in b.bids[:levels]), sum(p * q for p, q in b.asks[:levels]))


def _fx_guess(upbit_tickers: dict[str, Any]) -> float:
    t = upbit_tickers.get(FX_SYMBOL) or {}
    return float(t.get("last") or t.get("close") or 1400.0)
