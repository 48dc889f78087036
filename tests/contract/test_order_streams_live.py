"""The engine's order tracking over the venues' private streams, end to end: the
trading adapters (ccxt.pro clients built as a live run builds them), OrderStream
and OrderWatch against the exchange emulator's private streams.

What must hold (issue 15 item 2): fills reach the engine from the stream with no
order read over REST; the fills and fees the stream gives are the ones REST
gives (same ids, so the journal keeps each once); a stream that drops is
replaced by REST reads until it is back, then each working order is read once;
a stream that stays connected but says nothing is caught by the first order it
fails to mention.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import real_venues
from bot.drill.emulator import EmulatorHandle
from core.domain.models import Order, OrderRequest, OrderStatus, OrderType, Side, Venue
from core.trading.gateway import Purpose
from core.trading.order_watch import OrderWatch
from core.trading.slots import WorkingOrder
from core.venues.order_streams import OrderStream
from tests.venues.support import admin, emu_settings, emulator

SYMBOL = {Venue.BINANCE: "BTC/USDT", Venue.UPBIT: "BTC/KRW"}
CONFIRM_S = 1.0
READ_PATH = {Venue.BINANCE: "/api/v3/order", Venue.UPBIT: "/v1/order"}


@dataclass
class Rig:
    emu: EmulatorHandle
    venues: dict[Venue, Any]
    streams: dict[Venue, OrderStream]
    watch: OrderWatch
    working: dict[str, WorkingOrder]

    async def order_reads(self, venue: Venue) -> int:
        doc = await admin(self.emu, "GET", "/admin/requests")
        return sum(c["count"] for c in doc["counts"] if c["venue"] == str(venue)
                   and c["method"] == "GET" and c["path"] == READ_PATH[venue])

    async def buy(self, venue: Venue, cid: str, crossing: bool = True) -> WorkingOrder:
        ex = self.venues[venue]
        book = await ex.fetch_order_book(SYMBOL[venue])
        # A buy priced through the ask fills at the next step; one far below rests.
        price = book.best_ask * 1.002 if crossing else book.best_bid * 0.97
        notional = 20.0 if venue is Venue.BINANCE else 30_000.0
        order = await ex.create_order(OrderRequest(
            SYMBOL[venue], Side.BUY, OrderType.LIMIT, notional / price, cid, price))
        wo = WorkingOrder(venue, order.id, cid, SYMBOL[venue], Purpose.ENTRY, 0.0,
                          order.amount or 0.0)
        self.working[order.id] = wo
        self.watch.nudge()
        return wo

    async def step(self, n: int = 1) -> None:
        await admin(self.emu, "POST", "/admin/step", {"n": n})


async def until(cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not cond():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with emulator(autostep=False) as emu:
        venues = real_venues(emu_settings(emu, tmp_path), streams=True)
        for ex in venues.values():
            await ex.load_markets()
        streams = {v: OrderStream(ex) for v, ex in venues.items()}
        working: dict[str, WorkingOrder] = {}
        watch = OrderWatch(venues, lambda: list(working.items()), background=True,
                           streams=streams, confirm_s=CONFIRM_S)
        tasks = [asyncio.create_task(s.run()) for s in streams.values()]
        tasks.append(asyncio.create_task(watch.run()))
        try:
            await until(lambda: all(s.up for s in streams.values()))
            yield Rig(emu, venues, streams, watch, working)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for ex in venues.values():
                await ex.close()


def taken(r: Rig, wo: WorkingOrder, want: Callable[[Order], bool]) -> Callable[[], bool]:
    """A condition: the watch has handed over an answer for `wo` that `want`s."""
    seen: list[Order] = []

    def check() -> bool:
        answer = r.watch.take(wo.order_id, wo)
        if isinstance(answer, Order):
            seen.append(answer)
        return any(want(o) for o in seen)

    check.seen = seen  # type: ignore[attr-defined]
    return check


@pytest.mark.parametrize("venue", [Venue.BINANCE, Venue.UPBIT])
async def test_fills_come_from_the_stream_and_agree_with_rest(venue: Venue,
                                                               tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        reads = await r.order_reads(venue)
        wo = await r.buy(venue, f"arb-stream-{venue}")
        await r.step()
        done = taken(r, wo, lambda o: o.status is OrderStatus.CLOSED)
        await until(done)
        streamed = done.seen[-1]  # type: ignore[attr-defined]
        assert streamed.filled > 0 and streamed.trades
        assert sum(t.amount for t in streamed.trades) == pytest.approx(streamed.filled)
        # Binance takes a buy's commission from the base received; Upbit in KRW.
        fee_asset = "BTC" if venue is Venue.BINANCE else "KRW"
        assert {t.fee_currency for t in streamed.trades} == {fee_asset}
        assert r.watch.stream_answers[str(venue)] >= 1
        assert await r.order_reads(venue) == reads  # not one status read over REST
        assert r.watch.rest_reads[str(venue)] == 0
        # REST, asked afterwards on the same client, names the same fills.
        rest = await r.venues[venue].fetch_order(wo.order_id, wo.symbol)
        assert [(t.id, t.amount, t.fee_cost, t.fee_currency) for t in rest.trades] == \
            [(t.id, t.amount, t.fee_cost, t.fee_currency) for t in streamed.trades]
        assert rest.filled == pytest.approx(streamed.filled)


@pytest.mark.parametrize("venue", [Venue.BINANCE, Venue.UPBIT])
async def test_a_dropped_stream_falls_back_to_rest_then_reads_each_order_once(
        venue: Venue, tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        wo = await r.buy(venue, f"arb-rest-{venue}", crossing=False)
        await until(taken(r, wo, lambda o: o.status is OrderStatus.OPEN))
        stream = r.streams[venue]
        await admin(r.emu, "POST", "/admin/streams",
                    {"venue": str(venue), "action": "disconnect", "streams": "private"})
        await until(lambda: stream.counts["disconnects"] >= 1)
        await until(lambda: stream.up and stream.generation >= 2)
        await until(lambda: r.watch._synced.get((venue, wo.order_id)) == stream.generation)
        assert r.watch.rest_reads[str(venue)] >= 1  # read over REST: down, then once
        settled = r.watch.rest_reads[str(venue)]
        await asyncio.sleep(3 * CONFIRM_S)
        assert r.watch.rest_reads[str(venue)] == settled  # the stream vouches again
        assert r.watch.missed[str(venue)] == 0


@pytest.mark.parametrize("venue", [Venue.BINANCE, Venue.UPBIT])
async def test_a_silent_stream_is_caught_by_the_first_order_it_does_not_mention(
        venue: Venue, tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        stream = r.streams[venue]
        await asyncio.sleep(CONFIRM_S)  # past the grace a fresh connection gets
        await admin(r.emu, "POST", "/admin/streams", {"venue": str(venue), "action": "silence",
                                                     "seconds": 30, "streams": "private"})
        wo = await r.buy(venue, f"arb-silent-{venue}")
        await r.step()
        # Nothing arrives on the stream: after the confirm window REST reads it ...
        await until(taken(r, wo, lambda o: o.status is OrderStatus.CLOSED))
        assert r.watch.missed[str(venue)] == 1
        assert r.watch.rest_reads[str(venue)] >= 1
        # ... and the stream is dropped and subscribed again.
        await until(lambda: stream.counts["drops"] >= 1 and stream.generation >= 2)
