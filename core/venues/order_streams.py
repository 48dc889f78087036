"""A venue's own orders and fills from its private websocket stream (ccxt.pro).

Binance sends them on its WebSocket API after a signed user-data subscription
(executionReport: the order and, on a fill, that fill with its commission and
the asset it was taken in); Upbit on its private endpoint with a JWT (myOrder:
cumulative figures, fees in KRW). Both arrive through ccxt.pro's watch_orders,
and ccxt.pro files a Binance fill in its trade cache (watch_my_trades' cache)
before the order update that carries it, so an order read here comes with
every fill it shows.

Every update is turned into an `Order` by the trading client itself (the one
that sent the order), so a fill read here and the same fill read over REST get
the same id and the journal keeps it once. The newest version of each order is
kept (bounded) with a version number: a reader takes what is newer than what
it took, whenever the order becomes its concern - an update that arrives before
the send's ack is not lost.

The stream is `up` only between a confirmed subscription and the first failure;
each (re)connection is a new `generation`, because what happened while it was
down was never sent and has to be read over REST once.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from loguru import logger

from core.domain.models import Order

KEEP = 5000  # newest orders kept (an engine has a few dozen working at most)
MAX_BACKOFF_S = 5.0
# A connection counts as good (the back-off starts over) only once it has lasted
# this long: a venue that accepts the connection and then closes it (an Upbit key
# it refuses) must not be reconnected four times a second.
STABLE_S = 10.0
Listener = Callable[[Order], None]


class OrderStream:
    def __init__(self, ex: Any, *, keep: int = KEEP,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ex = ex  # the venue's trading CcxtExchange
        self.venue = ex.venue
        self.keep = keep
        self._mono = monotonic
        self.up = False
        self.generation = 0
        self.version = 0
        self.latest: OrderedDict[str, tuple[int, int, Order]] = OrderedDict()  # id -> (v, gen, o)
        self.by_client: dict[str, str] = {}  # client order id -> order id
        self.counts: Counter[str] = Counter()
        self.last_error = ""
        self.up_since = 0.0
        self._listeners: list[Listener] = []
        self._drop = asyncio.Event()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def find(self, order_id: str | None, client_order_id: str | None
             ) -> tuple[int, int, Order] | None:
        """The newest (version, generation, order) the stream holds for an order."""
        oid = order_id or self.by_client.get(client_order_id or "")
        return self.latest.get(oid) if oid else None

    def drop(self, why: str) -> None:
        """Reconnect: the stream is not to be trusted (it missed an order)."""
        if self.up:
            logger.warning("{}: order stream dropped ({}); REST until it is back", self.venue, why)
        self.up = False
        self._drop.set()

    def stats(self) -> dict[str, Any]:
        return {"up": self.up, "generation": self.generation,
                "updates": self.counts["updates"], "orders_held": len(self.latest),
                "disconnects": self.counts["disconnects"], "drops": self.counts["drops"],
                "conversion_errors": self.counts["conversion_errors"],
                "last_error": self.last_error}

    async def run(self) -> None:
        failures = 0
        while True:
            self._drop.clear()
            try:
                await self.ex.open_order_stream()
                self.generation += 1
                self.up, self.up_since = True, self._mono()
                logger.info("{}: order stream up (generation {})", self.venue, self.generation)
                await self._pump()
            except asyncio.CancelledError:
                self.up = False
                raise
            except Exception as exc:  # noqa: BLE001 - every failure reconnects the same way
                lasted = self._mono() - self.up_since if self.up else 0.0
                failures = 1 if lasted >= STABLE_S else failures + 1
                self.counts["disconnects"] += 1
                self.last_error = f"{type(exc).__name__}: {str(exc)[:200]}"
                if self.up or failures == 1:
                    logger.warning("{}: order stream {} ({}); REST until it is back",
                                   self.venue, "lost" if self.up else "unavailable",
                                   self.last_error)
            if self._drop.is_set():
                self.counts["drops"] += 1
            self.up = False
            await self.ex.close_order_stream()
            await asyncio.sleep(min(0.25 * 2 ** max(failures - 1, 0), MAX_BACKOFF_S))

    async def _pump(self) -> None:
        dropped = asyncio.ensure_future(self._drop.wait())
        watch: asyncio.Future[list[Any]] | None = None
        try:
            while True:
                watch = asyncio.ensure_future(self.ex.watch_order_updates())
                done, _ = await asyncio.wait({watch, dropped},
                                             return_when=asyncio.FIRST_COMPLETED)
                if watch not in done:
                    return  # dropped
                for raw in watch.result():
                    await self._take(raw)
        finally:
            dropped.cancel()
            if watch is not None:
                # Cancelled with the run, or dropped: its outcome is nobody's now.
                watch.cancel()
                watch.add_done_callback(_forget)

    async def _take(self, raw: dict[str, Any]) -> None:
        try:
            order = await self.ex.order_from_stream(raw)
        except Exception as exc:  # noqa: BLE001 - that order is read over REST instead
            self.counts["conversion_errors"] += 1
            logger.warning("{}: order update not understood: {}", self.venue, exc)
            return
        self.version += 1
        self.counts["updates"] += 1
        self.latest[order.id] = (self.version, self.generation, order)
        self.latest.move_to_end(order.id)
        if order.client_order_id:
            self.by_client[order.client_order_id] = order.id
        while len(self.latest) > self.keep:
            _, (_, _, gone) = self.latest.popitem(last=False)
            self.by_client.pop(gone.client_order_id, None)
        for listener in self._listeners:
            listener(order)


def _forget(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not report it as lost
