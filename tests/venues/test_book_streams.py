"""The stream feed (StreamMarketData) against the emulator's websocket streams:
books stamped with the venue's event time; an update-id gap, a disconnect and
a silent connection are each detected, read once over REST and resubscribed,
after which books flow again. Real ccxt.pro clients on loopback."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot.app import real_venues, venue_budgets
from core.clock import SystemClock
from core.domain.models import Venue
from core.venues.book_streams import StreamMarketData
from tests.venues.support import emu_settings, emulator

BASES = ["BTC", "ETH", "XRP"]


@pytest.fixture
async def feed(tmp_path: Path) -> AsyncIterator[tuple[StreamMarketData, object]]:
    async with emulator(bases=BASES, interval_s=0.1, autostep=True) as emu:
        venues = real_venues(emu_settings(emu, tmp_path), venue_budgets(), "market_data",
                             streams=True)
        market = StreamMarketData(venues, SystemClock(), silence_s=1.0)
        await market.prepare(candidates=10)
        market.subscribe(BASES)
        task = asyncio.create_task(market.run())
        try:
            await asyncio.wait_for(market.wait_next(-1), 10)
            yield market, emu
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for ex in venues.values():
                await ex.close()


async def until(cond: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def fresh_books_after(market: StreamMarketData, venue: Venue) -> None:
    """Every subscribed book of the venue is replaced by one stamped later than now."""
    t0 = time.time() * 1000
    books = market._books[venue]
    await until(lambda: all(b.timestamp_ms > t0 for b in books.values()))


async def test_books_carry_the_venues_event_time(feed: tuple[StreamMarketData, object]) -> None:
    market, emu = feed
    emu.core.venues["binance"].clock_offset_ms = -1500  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)
    snap = market.latest()
    assert snap is not None
    now = time.time() * 1000
    # Stamped by the venue (1.5 s behind), not when the event reached us.
    ages = [now - b.timestamp_ms for b in snap.binance.values()]
    assert all(1400 < a < 2500 for a in ages), ages
    assert market.stale_books(1000.0)["binance"] == len(BASES)
    assert market.stale_books(1000.0)["upbit"] == 0
    assert market.stream_stats()["binance"]["events"] > 0


async def test_a_gap_in_update_ids_resyncs(feed: tuple[StreamMarketData, object]) -> None:
    market, emu = feed
    emu.core.streams.gap("binance")  # type: ignore[attr-defined]
    await until(lambda: market.gaps["binance"] >= 1 and market.rest_reads["binance"] >= 1)
    await until(lambda: market.streaming[Venue.BINANCE])
    await fresh_books_after(market, Venue.BINANCE)
    assert market.down == {}


async def test_a_disconnect_resubscribes(feed: tuple[StreamMarketData, object]) -> None:
    market, emu = feed
    for venue in ("upbit", "binance"):
        await emu.core.streams.disconnect(venue)  # type: ignore[attr-defined]
    await until(lambda: market.disconnects["upbit"] >= 1 and market.disconnects["binance"] >= 1)
    await until(lambda: all(market.streaming.values()))
    await fresh_books_after(market, Venue.UPBIT)
    await fresh_books_after(market, Venue.BINANCE)
    assert emu.core.streams.state()["connections"] == {"binance": 1, "upbit": 1}  # type: ignore[attr-defined]


async def test_a_silent_connection_is_dropped_and_replaced(
        feed: tuple[StreamMarketData, object]) -> None:
    market, emu = feed
    emu.core.streams.silence("upbit", 2.5)  # type: ignore[attr-defined]
    # Meanwhile the books come over REST (the fallback), then the stream is back.
    await until(lambda: market.silences["upbit"] >= 1 and market.rest_reads["upbit"] >= 1)
    await until(lambda: market.streaming[Venue.UPBIT] and
                market.stream_stats()["upbit"]["events"] > 0, timeout=10)
    await fresh_books_after(market, Venue.UPBIT)
