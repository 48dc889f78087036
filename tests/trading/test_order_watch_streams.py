"""OrderWatch with a venue's order stream: the stream's updates are the answers,
REST reads only what the stream cannot vouch for (an order it never mentioned,
orders working across a reconnection, a venue whose stream is down), and a REST
answer never replaces a newer stream answer.

The venue here is an in-memory stand-in (updates pushed into a queue) so each
rule is exercised on its own; tests/contract/test_order_streams_live.py runs the
same path over ccxt.pro against the exchange emulator. Time for the confirm
window is an injected clock.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from core.domain.models import Order, OrderStatus, OrderType, Side, Venue
from core.errors import VenueUnavailable
from core.trading.gateway import Purpose
from core.trading.order_watch import OrderWatch
from core.trading.slots import WorkingOrder
from core.venues.order_streams import OrderStream

CONFIRM_S = 3.0


def order(oid: str, filled: float = 0.0, status: OrderStatus = OrderStatus.OPEN) -> Order:
    return Order(id=oid, client_order_id=f"c-{oid}", symbol="BTC/USDT", side=Side.BUY,
                 type=OrderType.LIMIT, price=100.0, amount=1.0, filled=filled,
                 cost=filled * 100.0, status=status, timestamp_ms=0)


@dataclass
class StandInVenue:
    """What OrderStream and OrderWatch use of a CcxtExchange, in memory."""

    venue: Venue = Venue.BINANCE
    orders: dict[str, Order] = field(default_factory=dict)  # what REST answers
    reads: list[str] = field(default_factory=list)
    opened: int = 0
    fail_open: bool = False
    hold_reads: asyncio.Event | None = None
    updates: asyncio.Queue[Order | Exception] = field(default_factory=asyncio.Queue)

    async def open_order_stream(self) -> None:
        self.opened += 1
        if self.fail_open:
            raise VenueUnavailable("stream refused")

    async def close_order_stream(self) -> None:
        return None

    async def watch_order_updates(self) -> list[Any]:
        item = await self.updates.get()
        if isinstance(item, Exception):
            raise item
        return [item]

    async def order_from_stream(self, raw: Order) -> Order:
        return raw

    async def fetch_order(self, order_id: str | None, symbol: str,
                          client_order_id: str | None = None) -> Order:
        self.reads.append(str(order_id))
        if self.hold_reads is not None:
            await self.hold_reads.wait()
        return self.orders[str(order_id)]


@dataclass
class Rig:
    venue: StandInVenue
    stream: OrderStream
    watch: OrderWatch
    working: dict[str, WorkingOrder]
    now: list[float]

    def work(self, oid: str) -> WorkingOrder:
        wo = WorkingOrder(Venue.BINANCE, oid, f"c-{oid}", "BTC/USDT", Purpose.ENTRY, 0.0, 1.0)
        self.working[oid] = wo
        self.venue.orders.setdefault(oid, order(oid))
        self.watch.nudge()
        return wo

    def take(self, oid: str) -> Order | BaseException | None:
        return self.watch.take(oid, self.working[oid])


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def rig(fail_open: bool = False) -> AsyncIterator[Rig]:
    now = [100.0]
    venue = StandInVenue(fail_open=fail_open)
    stream = OrderStream(venue, monotonic=lambda: now[0])
    working: dict[str, WorkingOrder] = {}
    watch = OrderWatch({Venue.BINANCE: venue}, lambda: list(working.items()),
                       background=True, interval_s=0.01, streams={Venue.BINANCE: stream},
                       confirm_s=CONFIRM_S, monotonic=lambda: now[0])
    tasks = [asyncio.create_task(stream.run()), asyncio.create_task(watch.run())]
    try:
        if not fail_open:
            await until(lambda: stream.up)
        yield Rig(venue, stream, watch, working, now)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_stream_updates_are_the_answers_and_nothing_is_read_over_rest() -> None:
    async with rig() as r:
        r.now[0] += CONFIRM_S  # the stream has been up a while
        r.work("1")
        await r.venue.updates.put(order("1"))
        await until(lambda: r.watch.stream_answers["binance"] == 1)
        first = r.take("1")
        assert isinstance(first, Order) and first.filled == 0.0
        await r.venue.updates.put(order("1", 1.0, OrderStatus.CLOSED))
        await until(lambda: r.watch.stream_answers["binance"] == 2)
        done = r.take("1")
        assert isinstance(done, Order) and done.status is OrderStatus.CLOSED
        r.now[0] += 10 * CONFIRM_S  # long after: still no reason to ask the venue
        await asyncio.sleep(0.1)
        assert r.venue.reads == [] and r.watch.missed["binance"] == 0
        # Nothing new: the same answer again each interval, as a REST poll gives it.
        again = r.take("1")
        assert isinstance(again, Order) and again.status is OrderStatus.CLOSED
        assert r.watch.stream_answers["binance"] == 2


async def test_an_update_that_comes_before_the_order_is_working_is_not_lost() -> None:
    async with rig() as r:
        r.now[0] += CONFIRM_S
        await r.venue.updates.put(order("7", 1.0, OrderStatus.CLOSED))
        await until(lambda: r.stream.counts["updates"] == 1)
        r.work("7")  # the send's ack reaches the engine after the fill's update
        await until(lambda: r.watch.stream_answers["binance"] == 1)
        got = r.take("7")
        assert isinstance(got, Order) and got.status is OrderStatus.CLOSED
        assert r.venue.reads == []


async def test_an_order_the_stream_never_mentions_is_read_and_the_stream_reconnected() -> None:
    async with rig() as r:
        r.now[0] += CONFIRM_S
        r.work("2")
        await asyncio.sleep(0.1)
        assert r.venue.reads == []  # within the confirm window: the stream may yet say
        r.now[0] += CONFIRM_S + 0.1
        await until(lambda: r.venue.reads == ["2"])
        assert r.watch.missed["binance"] == 1
        await until(lambda: r.venue.opened == 2 and r.stream.up)  # a fresh subscription
        assert r.stream.counts["drops"] == 1
        await until(lambda: r.take("2") is not None or False)


async def test_a_stream_that_is_down_leaves_its_venue_on_rest_every_round() -> None:
    async with rig(fail_open=True) as r:
        r.work("3")
        await until(lambda: len(r.venue.reads) >= 3)
        assert set(r.venue.reads) == {"3"} and not r.stream.up
        assert r.stream.counts["disconnects"] >= 1


async def test_after_a_reconnection_each_working_order_is_read_once() -> None:
    async with rig() as r:
        r.now[0] += CONFIRM_S
        for oid in ("4", "5"):
            r.work(oid)
            await r.venue.updates.put(order(oid))
        await until(lambda: r.watch.stream_answers["binance"] == 2)
        await r.venue.updates.put(VenueUnavailable("connection closed"))
        await until(lambda: r.stream.generation == 2 and r.stream.up)
        # While it was down both were read every round; once it is back, each is
        # read once more (what happened meanwhile was never sent), then no more.
        await until(lambda: all(r.watch._synced.get((Venue.BINANCE, o)) == 2
                                for o in ("4", "5")))
        assert set(r.venue.reads) == {"4", "5"}
        reads = len(r.venue.reads)
        r.now[0] += 10 * CONFIRM_S
        await asyncio.sleep(0.1)
        assert len(r.venue.reads) == reads
        assert r.watch.missed["binance"] == 0


async def test_a_rest_answer_never_replaces_a_newer_stream_answer() -> None:
    async with rig() as r:
        r.now[0] += CONFIRM_S
        r.venue.hold_reads = asyncio.Event()
        r.stream.up = False  # a moment without the stream: the order is read over REST
        r.work("6")
        await until(lambda: r.venue.reads == ["6"])
        r.stream.up = True
        await r.venue.updates.put(order("6", 1.0, OrderStatus.CLOSED))
        await until(lambda: r.watch.stream_answers["binance"] == 1)
        r.venue.hold_reads.set()  # the REST read (still "open") lands after the fill
        await asyncio.sleep(0.1)
        got = r.take("6")
        assert isinstance(got, Order) and got.status is OrderStatus.CLOSED


@pytest.mark.parametrize("keep", [1, 3])
async def test_the_stream_keeps_a_bounded_number_of_orders(keep: int) -> None:
    venue = StandInVenue()
    stream = OrderStream(venue, keep=keep)
    task = asyncio.create_task(stream.run())
    try:
        for i in range(5):
            await venue.updates.put(order(str(i)))
        await until(lambda: stream.counts["updates"] == 5)
        assert len(stream.latest) == keep and len(stream.by_client) == keep
        assert stream.find(None, "c-4") is not None and stream.find("0", None) is None
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_venue_that_accepts_then_closes_is_not_reconnected_at_once_each_time() -> None:
    """Upbit accepts a private connection and closes it when it refuses the key: each
    such connection is `up` for an instant, which must not reset the back-off."""
    venue = StandInVenue()

    async def closes_at_once() -> list[Any]:
        raise VenueUnavailable("closed by the venue")

    venue.watch_order_updates = closes_at_once  # type: ignore[method-assign]
    stream = OrderStream(venue, monotonic=lambda: 100.0)  # no time passes: never stable
    task = asyncio.create_task(stream.run())
    try:
        await asyncio.sleep(2.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # Back-off 0.25, 0.5, 1 s ...: at most 4 connections in 2 s (8 without it).
    assert 2 <= venue.opened <= 4
