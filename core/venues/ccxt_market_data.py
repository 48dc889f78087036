"""Market data `real` (R-M8): order books polled from the venues through ccxt.

REST polling, the fallback until the streams land, with its own ccxt clients
(role market data): every request spends the venue's budget for market data,
at most half of each published limit, so the poller never delays an order and
never sends inside a Retry-After window (core.venues.rate_budget). A venue
whose profile says so serves every subscribed book in one request (Upbit, with
the USDT/KRW FX book); the others one request per symbol, paced by the budget.
Each venue is polled in its own loop at its own pace. Each book is
stamped with the time its own request left, never when the batch ended, so
the stale-book check sees its true age. A venue that fails to answer is
marked down (the engine goes REDUCING for it) and its books are left out
until it answers again; a book the budget could not afford this round keeps
its previous copy and stamp.
"""
from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from loguru import logger

from core.clock import Clock
from core.domain.models import (
    FX_SYMBOL,
    MarketSnapshot,
    OrderBook,
    SymbolStats,
    Venue,
    pair_symbols,
)
from core.errors import ExchangeError, RateLimited
from core.ports import SnapshotListener
from core.venues.ccxt_client import last_sent_mono, patience
from core.venues.profiles import profile_of
from core.venues.rate_budget import Role
from core.venues.snapshot_feed import SnapshotFeed

DEPTH = 10
PREPARE_PATIENCE_S = 90.0


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
        self._last: dict[str, OrderBook] = {}  # symbol -> the last book fetched
        # The interval each venue's budget allows, measured on its last poll.
        self.pace_s: dict[Venue, float] = {}
        self._books: dict[Venue, dict[str, OrderBook]] = {}

    # --- MarketData ---------------------------------------------------------------
    async def prepare(self, candidates: int = 60) -> None:
        """Volumes from tickers, spread and depth from books, for universe selection.
        Before a run: its requests wait for the budget as long as it takes."""
        with patience(PREPARE_PATIENCE_S):
            await self._prepare(candidates)

    async def _prepare(self, candidates: int) -> None:
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
        common = common[:candidates]
        books = {v: await self._fetch_books(v, [pair_symbols(b)[v] for b, _, _ in common])
                 for v in (Venue.UPBIT, Venue.BINANCE)}
        stats = []
        for base, up_vol, bn_vol in common:
            ub, bb = (books[v][pair_symbols(base)[v]] for v in (Venue.UPBIT, Venue.BINANCE))
            if not isinstance(ub, OrderBook) or not isinstance(bb, OrderBook):
                logger.warning("no book for {} while ranking: {}", base,
                               ub if not isinstance(ub, OrderBook) else bb)
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
        """Each venue polled in its own loop at its own pace; a snapshot is
        published whenever either brings new books (each keeps its own stamp)."""
        await asyncio.gather(*(self._run_venue(v) for v in self.venues))

    async def _run_venue(self, venue: Venue) -> None:
        ex = self.venues[venue]
        while True:
            started = time.monotonic()
            before = self._spent(ex)
            self._books[venue] = await self._venue_books(venue) or {}
            snap = self._snapshot()
            if snap is not None:
                self._feed.publish(snap)
            # No faster than the venue's market-data share allows when spread evenly
            # (Binance top50: ~5 s), so polling never bursts into its cap.
            self.pace_s[venue] = self._pace(ex, before)
            interval = max(self.interval_s, self.pace_s[venue])
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0.0))

    def _snapshot(self) -> MarketSnapshot | None:
        if len(self._books) < len(self.venues):
            return None  # the first snapshot waits for every venue's first answer
        up = dict(self._books.get(Venue.UPBIT) or {})
        fx = up.pop(FX_SYMBOL, None)
        if fx is None:
            return None  # without the FX book no premium can be computed (R-M1)
        self._seq += 1
        return MarketSnapshot(
            seq=self._seq, ts_ms=int(self.clock.time() * 1000), fx=fx,
            upbit={s.split("/")[0]: b for s, b in up.items()},
            binance={s.split("/")[0]: b for s, b in (self._books.get(Venue.BINANCE) or {}).items()},
        )

    @staticmethod
    def _spent(ex: Any) -> dict[str, float]:
        budget = getattr(ex, "budget", None)
        role = getattr(ex, "role", Role.MARKET_DATA)
        return budget.spent(role) if budget is not None else {}

    def _pace(self, ex: Any, before: dict[str, float]) -> float:
        budget = getattr(ex, "budget", None)
        if budget is None:
            return 0.0
        role = getattr(ex, "role", Role.MARKET_DATA)
        now = budget.spent(role)
        # The poller's own spending at the market-data share, whatever its role.
        return float(budget.interval_for(Role.MARKET_DATA, {
            k: v - before.get(k, 0.0) for k, v in now.items()}))

    async def close(self) -> None:
        """Close the venue clients this feed owns (when they are not also the
        trading venues, which the service closes)."""
        for ex in self.venues.values():
            if getattr(ex, "owned_by_market", False):
                await ex.close()

    # --- polling ----------------------------------------------------------------------
    async def poll(self) -> MarketSnapshot | None:
        """Every venue's books once (a one-off read: recording, benchmarks)."""
        venues = list(self.venues)
        got = await asyncio.gather(*(self._venue_books(v) for v in venues))
        for venue, books in zip(venues, got, strict=True):
            self._books[venue] = books or {}
        return self._snapshot()

    async def _venue_books(self, venue: Venue) -> dict[str, OrderBook] | None:
        """The subscribed books of one venue (and the FX book where it lives), or
        None when the venue did not answer (it is marked down). A book the budget
        could not afford this round keeps its previous copy and stamp."""
        symbols = [pair_symbols(b)[venue] for b in self._subscribed]
        if FX_SYMBOL.endswith("/" + profile_of(venue).quote):
            symbols.insert(0, FX_SYMBOL)
        got = await self._fetch_books(venue, symbols)
        books: dict[str, OrderBook] = {}
        failures: list[BaseException] = []
        for symbol, result in got.items():
            if isinstance(result, OrderBook):
                books[symbol] = self._last[symbol] = result
                continue
            failures.append(result)
            if isinstance(result, RateLimited) and symbol in self._last:
                books[symbol] = self._last[symbol]  # over budget: the older copy
        hard = [f for f in failures if not isinstance(f, RateLimited)]
        if hard or (failures and len(failures) == len(symbols)):
            self._mark_down(venue, (hard or failures)[0])
            return None
        self._mark_up(venue)
        return books

    async def _fetch_books(self, venue: Venue, symbols: list[str]
                           ) -> dict[str, OrderBook | BaseException]:
        """Each symbol's book (or why not), stamped when its request left, in one
        request or one per symbol as the venue's profile says."""
        ex = self.venues[venue]
        seq = self._seq + 1
        if profile_of(venue).books_in_one_request:
            try:
                raw = await ex.ccxt.fetch_order_books(symbols, DEPTH)
            except Exception as exc:  # noqa: BLE001 - reported per symbol, then judged
                return dict.fromkeys(symbols, exc)
            ts = self._sent_stamp(ex)
            return {s: _book(s, raw[s], ts, seq) if s in raw else
                    ExchangeError(f"{venue}: no book for {s}") for s in symbols}

        async def one(symbol: str) -> OrderBook:
            book: OrderBook = await ex.fetch_order_book(symbol, DEPTH)
            book.timestamp_ms, book.seq = self._sent_stamp(ex), seq
            return book

        got = await asyncio.gather(*(one(s) for s in symbols), return_exceptions=True)
        return dict(zip(symbols, got, strict=True))

    def _sent_stamp(self, ex: Any) -> int:
        """This context's last request's departure on the injected clock, in ms."""
        sent = last_sent_mono()
        budget = getattr(ex, "budget", None)
        now = budget.now() if budget is not None else time.monotonic()
        age = 0.0 if sent is None else max(now - sent, 0.0)
        return int((self.clock.time() - age) * 1000)

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
