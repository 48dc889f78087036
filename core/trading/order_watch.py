"""Working orders' status, read from the venues off the tick.

A live tick must never wait for a venue except to send: the status of every
working order is fetched by a task of its own, all orders at once, each
request spending the venue's budget like any other. The tick only takes the
newest answer per order (or the error it got), when there is one.

In-process venues (paper) answer without I/O, so there the tick reads them
itself (`refresh`), which keeps fast-mode runs deterministic.

With a venue's order stream up (core.venues.order_streams), its updates are the
answers, taken the moment they arrive, and the newest answer is handed over again
every interval, as a REST poll would (the engine judges timeouts when it has an
answer: a resting order the venue says nothing more about must still time out).
No order of that venue is read over REST, except once: an order the stream has not mentioned `confirm_s` after it
started working (the stream is then dropped and reconnected: it missed one),
and every working order right after a (re)connection (what happened while it
was down was never sent). A stream that is down leaves its venue on REST reads
every interval, as without streams.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from loguru import logger

from core.domain.models import Order, Venue
from core.trading.slots import WorkingOrder
from core.venues.order_streams import OrderStream

Key = tuple[Venue, str]  # (venue, the slot's key: order id, or "?<client id>" while unknown)
Answer = Order | BaseException
WorkingList = Callable[[], list[tuple[str, WorkingOrder]]]


class OrderWatch:
    def __init__(self, exchanges: Mapping[Venue, Any], working: WorkingList, *,
                 background: bool, interval_s: float = 0.2,
                 streams: Mapping[Venue, OrderStream] | None = None,
                 confirm_s: float = 3.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._ex = exchanges
        self._working = working
        self.background = background
        self.interval_s = interval_s
        self.streams = dict(streams or {})
        self.confirm_s = confirm_s
        self._mono = monotonic
        self._answers: dict[Key, Answer] = {}
        self._cancelled: dict[Key, Answer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.rounds = 0
        self.requests = 0
        self.rest_reads: Counter[str] = Counter()  # per venue, order reads over REST
        self.stream_answers: Counter[str] = Counter()  # per venue, answers the stream gave
        self.missed: Counter[str] = Counter()  # orders a stream never mentioned in time
        self._taken: dict[Key, int] = {}  # the stream version last handed over
        self._synced: dict[Key, int] = {}  # the stream generation the order is known in
        self._since: dict[Key, tuple[int, float]] = {}  # (generation, first seen working)
        self._last: dict[Key, Order] = {}  # the newest order handed over, to hand again
        for stream in self.streams.values():
            stream.add_listener(self._streamed)

    def take(self, key: str, wo: WorkingOrder) -> Answer | None:
        """The newest answer for this order since the last take, or None."""
        return self._answers.pop((wo.venue, key), None)

    def take_cancel(self, key: str, wo: WorkingOrder) -> Answer | None:
        """What a cancel sent in the background got (the order, or the error)."""
        return self._cancelled.pop((wo.venue, key), None)

    def cancel(self, key: str, wo: WorkingOrder) -> None:
        """Send a cancel without the tick waiting for it (a live venue's cancel
        is its request plus a read-back); the answer is taken by a later tick."""
        task = asyncio.create_task(self._cancel(key, wo), name=f"cancel-{wo.client_order_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, key: str, wo: WorkingOrder) -> None:
        try:
            answer: Answer = await self._ex[wo.venue].cancel_order(wo.order_id, wo.symbol)
        except Exception as exc:  # noqa: BLE001 - handed to the tick, which judges it
            answer = exc
        self._cancelled[(wo.venue, key)] = answer
        self.nudge()

    def nudge(self) -> None:
        """A new order is working: read it without waiting out the interval."""
        self._wake.set()

    async def refresh(self) -> None:
        """Read every working order now (in-process venues only: no I/O)."""
        for key, wo in self._working():
            self._answers[(wo.venue, key)] = await self._read(wo)

    def stream_stats(self) -> dict[str, Any]:
        return {str(v): {**st.stats(), "answers": self.stream_answers[str(v)],
                         "rest_reads": self.rest_reads[str(v)], "missed": self.missed[str(v)]}
                for v, st in self.streams.items()}

    def _streamed(self, _order: Order) -> None:
        """A stream update arrived: hand it over now (and wake the loop for the rest)."""
        for key, wo in self._working():
            self._from_stream(key, wo)
        self._wake.set()

    def _from_stream(self, key: str, wo: WorkingOrder) -> bool:
        """Take the stream's newest version of this order, if newer than the last taken."""
        stream = self.streams.get(wo.venue)
        if stream is None:
            return False
        held = stream.find(wo.order_id or None, wo.client_order_id)
        if held is None:
            return False
        version, generation, order = held
        k = (wo.venue, key)
        if generation == stream.generation:
            self._synced[k] = generation
        if self._taken.get(k, 0) >= version:
            return False
        self._taken[k] = version
        self._answers[k] = self._last[k] = order
        self.stream_answers[str(wo.venue)] += 1
        return True

    def _due(self, key: str, wo: WorkingOrder, now: float) -> bool:
        """Whether this order is read over REST this round (see the module's note)."""
        stream = self.streams.get(wo.venue)
        k = (wo.venue, key)
        if stream is None or not stream.up:
            self._since[k] = (-1, now)  # read now; once the stream is back, read once more
            return True
        if not self._from_stream(key, wo) and k not in self._answers and k in self._last:
            self._answers[k] = self._last[k]  # nothing new: the same answer, as a poll gives
        if self._synced.get(k) == stream.generation:
            return False
        gen, since = self._since.setdefault(k, (stream.generation, now))
        if gen != stream.generation:
            return True  # working across a reconnection: read once
        if now - since < self.confirm_s or now - stream.up_since < self.confirm_s:
            return False  # the stream has a moment to mention a new order
        self.missed[str(wo.venue)] += 1
        stream.drop(f"no update for {wo.client_order_id} in {self.confirm_s:g} s")
        return True

    async def run(self) -> None:
        """Every interval (or when nudged), every working order at once."""
        while True:
            items = self._working()
            live = {(wo.venue, key) for key, wo in items}
            for book in (self._answers, self._cancelled, self._taken, self._synced,
                         self._since, self._last):
                for gone in [k for k in book if k not in live]:
                    del book[gone]  # done and forgotten by the engine
            now = self._mono()
            due = [(key, wo) for key, wo in items if self._due(key, wo, now)]
            if due:
                before = {(wo.venue, key): self._taken.get((wo.venue, key), 0)
                          for key, wo in due}
                gens = {v: st.generation for v, st in self.streams.items() if st.up}
                got = await asyncio.gather(*(self._read(wo) for _, wo in due),
                                           return_exceptions=True)
                self.rounds += 1
                self.requests += len(due)
                for (key, wo), answer in zip(due, got, strict=True):
                    if isinstance(answer, asyncio.CancelledError):
                        raise answer
                    k = (wo.venue, key)
                    self.rest_reads[str(wo.venue)] += 1
                    if self._taken.get(k, 0) != before[k]:
                        continue  # the stream said something newer while we read
                    self._answers[k] = answer
                    if isinstance(answer, Order):
                        self._last[k] = answer
                    stream = self.streams.get(wo.venue)
                    if (stream is not None and stream.up and not isinstance(answer, BaseException)
                            and gens.get(wo.venue) == stream.generation):
                        self._synced[k] = stream.generation
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            except TimeoutError:
                pass

    async def _read(self, wo: WorkingOrder) -> Answer:
        ex = self._ex[wo.venue]
        try:
            if not wo.order_id:  # an unknown send: only the client id can find it
                order: Order = await ex.fetch_order(None, wo.symbol, wo.client_order_id)
            else:
                order = await ex.fetch_order(wo.order_id, wo.symbol)
        except Exception as exc:  # noqa: BLE001 - handed to the tick, which judges it
            logger.debug("status of {} not read: {}", wo.client_order_id, exc)
            return exc
        return order
