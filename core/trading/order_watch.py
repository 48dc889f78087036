"""Working orders' status, read from the venues off the tick.

A live tick must never wait for a venue except to send: the status of every
working order is fetched by a task of its own, all orders at once, each
request spending the venue's budget like any other. The tick only takes the
newest answer per order (or the error it got), when there is one.

In-process venues (paper) answer without I/O, so there the tick reads them
itself (`refresh`), which keeps fast-mode runs deterministic.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from loguru import logger

from core.domain.models import Order, Venue
from core.trading.slots import WorkingOrder

Key = tuple[Venue, str]  # (venue, the slot's key: order id, or "?<client id>" while unknown)
Answer = Order | BaseException
WorkingList = Callable[[], list[tuple[str, WorkingOrder]]]


class OrderWatch:
    def __init__(self, exchanges: Mapping[Venue, Any], working: WorkingList, *,
                 background: bool, interval_s: float = 0.2) -> None:
        self._ex = exchanges
        self._working = working
        self.background = background
        self.interval_s = interval_s
        self._answers: dict[Key, Answer] = {}
        self._cancelled: dict[Key, Answer] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self.rounds = 0
        self.requests = 0

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

    async def run(self) -> None:
        """Every interval (or when nudged), every working order at once."""
        while True:
            items = self._working()
            live = {(wo.venue, key) for key, wo in items}
            for book in (self._answers, self._cancelled):
                for gone in [k for k in book if k not in live]:
                    del book[gone]  # done and forgotten by the engine
            if items:
                got = await asyncio.gather(*(self._read(wo) for _, wo in items),
                                           return_exceptions=True)
                self.rounds += 1
                self.requests += len(items)
                for (key, wo), answer in zip(items, got, strict=True):
                    if isinstance(answer, asyncio.CancelledError):
                        raise answer
                    self._answers[(wo.venue, key)] = answer
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
