"""Market data `real` from the venues' websocket order-book streams (ccxt.pro).

Each venue has one watching loop on the market-data client (never the trading
one, so market data cannot delay an order). Binance: diff-depth for every
subscribed symbol in one subscription; ccxt.pro applies the documented resync
(a REST snapshot, then the buffered events by update id) and raises on a gap in
the ids. Upbit: one orderbook request listing every code (the USDT/KRW FX book
included); each message is a whole book.

Every book is stamped with the venue's own event time (Binance E, Upbit
timestamp), never when it reached us, so the gateway's stale-book check sees
its true age book by book; a book that stops changing ages and is refused.

A gap, a disconnect or a silent connection (nothing for `silence_s`) is
counted; the venue's books are then read once over REST (on the market-data
budget, so never inside a Retry-After window), and the stream is subscribed
again (a fresh connection: Binance re-reads its snapshots). While a stream
cannot be had, this is REST polling paced by the budget: the fallback, never
the normal path. A venue that answers neither is marked down (REDUCING).
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from typing import Any

from loguru import logger

from core.clock import Clock
from core.domain.models import FX_SYMBOL, OrderBook, Venue, pair_symbols
from core.venues.ccxt_market_data import DEPTH, CcxtMarketData
from core.venues.profiles import profile_of

SNAPSHOT_LIMIT = 100  # Binance resync snapshot: weight 5 per symbol (1000 would be 50)
MAX_BACKOFF_S = 5.0


class StreamMarketData(CcxtMarketData):
    def __init__(self, venues: dict[Venue, Any], clock: Clock, interval_s: float = 1.0, *,
                 silence_s: float = 5.0, stale_ms: float = 2000.0,
                 coalesce_s: float = 0.005) -> None:
        super().__init__(venues, clock, interval_s)
        self.silence_s = silence_s
        self.coalesce_s = coalesce_s
        self._pending = False
        self.stale_ms = stale_ms  # the gateway's limit: older books are refused
        self.events: Counter[str] = Counter()  # book updates taken, per venue
        self.gaps: Counter[str] = Counter()  # update-id gaps (resynced)
        self.disconnects: Counter[str] = Counter()  # closed or failed connections
        self.silences: Counter[str] = Counter()  # connections dropped for saying nothing
        self.rest_reads: Counter[str] = Counter()  # REST fallback reads
        self.streaming: dict[Venue, bool] = dict.fromkeys(venues, False)
        # Venue event time -> taken into a snapshot, ms, per book update (newest kept).
        self.event_lag_ms: deque[float] = deque(maxlen=100_000)
        self._stamps: dict[str, int] = {}
        self._complete = False

    # --- MarketData -------------------------------------------------------------
    async def run(self) -> None:
        await asyncio.gather(*(self._stream(v) for v in self.venues))

    def stream_stats(self) -> dict[str, Any]:
        stale = self.stale_books(self.stale_ms)
        return {
            str(v): {"streaming": self.streaming.get(v, False), "events": self.events[str(v)],
                     "stale_books_now": stale.get(str(v), 0),
                     "gaps": self.gaps[str(v)], "disconnects": self.disconnects[str(v)],
                     "silences": self.silences[str(v)], "rest_reads": self.rest_reads[str(v)]}
            for v in self.venues}

    def stale_books(self, max_age_ms: float) -> dict[str, int]:
        """Per venue, how many subscribed books are older than max_age_ms now."""
        now = self.clock.time() * 1000
        return {str(v): sum(1 for b in books.values() if now - b.timestamp_ms > max_age_ms)
                for v, books in self._books.items()}

    # --- the stream loop ----------------------------------------------------------
    def _symbols(self, venue: Venue) -> list[str]:
        symbols = [pair_symbols(b)[venue] for b in self._subscribed]
        if FX_SYMBOL.endswith("/" + profile_of(venue).quote):
            symbols.insert(0, FX_SYMBOL)
        return symbols

    async def _stream(self, venue: Venue) -> None:
        ex = self.venues[venue]
        symbols = self._symbols(venue)
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await asyncio.wait_for(self._watch(ex, venue, symbols), self.silence_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every failure resyncs the same way
                failures += 1
                await self._lost(venue, ex, exc)
                before = self._spent(ex)
                await self._rest_read(venue)
                pace = self._pace(ex, before)
                backoff = min(0.25 * 2 ** (failures - 1), MAX_BACKOFF_S)
                await asyncio.sleep(max(backoff, pace - (time.monotonic() - started)))
                continue
            failures = 0
            if not self.streaming.get(venue):
                logger.info("{}: order-book stream up ({} books)", venue, len(symbols))
                self.streaming[venue] = True
            if self._take(venue, ex, symbols):
                self._mark_up(venue)
                self._publish_soon()

    async def _watch(self, ex: Any, venue: Venue, symbols: list[str]) -> Any:
        client = ex.ccxt
        if profile_of(venue).streams.books == "orderbook_codes":
            return await _orderbook_codes(client, symbols)
        return await client.watch_order_book_for_symbols(symbols, SNAPSHOT_LIMIT)

    async def _lost(self, venue: Venue, ex: Any, exc: BaseException) -> None:
        v = str(venue)
        name = type(exc).__name__
        if isinstance(exc, TimeoutError):
            self.silences[v] += 1
            # A connection that says nothing may be dead without knowing it: drop it.
            await ex.ccxt.close_ws_clients()
        elif name in ("ChecksumError", "InvalidNonce"):
            self.gaps[v] += 1
        else:
            self.disconnects[v] += 1
        if self.streaming.get(venue, True):
            logger.warning("{}: order-book stream lost ({}: {}); REST until it is back",
                           venue, name, str(exc)[:200])
        self.streaming[venue] = False

    async def _rest_read(self, venue: Venue) -> None:
        books = await self._venue_books(venue)  # marks the venue down when it fails
        self.rest_reads[str(venue)] += 1
        if books:
            self._books.setdefault(venue, {}).update(books)
            self._publish()

    def _take(self, venue: Venue, ex: Any, symbols: list[str]) -> bool:
        """Copy every book ccxt.pro holds that changed since the last look."""
        held = ex.ccxt.orderbooks
        books = self._books.setdefault(venue, {})
        resyncs = profile_of(venue).streams.book_resync == "snapshot+update_id"
        seq = self._seq + 1
        now_ms = self.clock.time() * 1000
        changed = False
        for symbol in symbols:
            ob = held.get(symbol)
            if ob is None:
                continue
            ts = ob.get("timestamp")
            if not ts or ts == self._stamps.get(symbol):
                continue
            if resyncs and ob.get("nonce") is None:
                continue  # waiting for its snapshot: not a book yet
            bids, asks = ob["bids"][:DEPTH], ob["asks"][:DEPTH]
            if not bids or not asks:
                continue
            self._stamps[symbol] = int(ts)
            books[symbol] = self._last[symbol] = OrderBook(
                symbol, [(float(p), float(q)) for p, q, *_ in bids],
                [(float(p), float(q)) for p, q, *_ in asks], int(ts), seq)
            self.events[str(venue)] += 1
            self.event_lag_ms.append(max(now_ms - ts, 0.0))
            changed = True
        return changed

    def _publish_soon(self) -> None:
        """One snapshot for the updates of the next `coalesce_s`: a venue sends its
        books' updates in bursts, and a snapshot per update would make the engine
        tick per book (50 times for one Binance interval at top50)."""
        if self._pending:
            return
        self._pending = True
        asyncio.get_running_loop().call_later(self.coalesce_s, self._flush)

    def _flush(self) -> None:
        self._pending = False
        self._publish()

    def _publish(self) -> None:
        if not self._complete:
            # The first snapshot waits for every subscribed book of every venue,
            # as the first REST round does: a run starts on a whole universe.
            if any(not set(self._symbols(v)) <= set(self._books.get(v, ()))
                   for v in self.venues):
                return
            self._complete = True
        snap = self._snapshot()
        if snap is not None:
            self._feed.publish(snap)


async def _orderbook_codes(client: Any, symbols: list[str]) -> Any:
    """Upbit: one orderbook request with every code, as the venue documents it
    (ccxt.pro's watch_order_book adds one request entry per book)."""
    if not client.markets:
        await client.load_markets()
    url = client.implode_params(client.urls["api"]["ws"], {"hostname": client.hostname})
    hashes = ["orderbook:" + s for s in symbols]
    request = [{"ticket": client.uuid()},
               {"type": "orderbook", "codes": client.market_ids(symbols)}]
    return await client.watch_multiple(url, hashes, request, hashes)
