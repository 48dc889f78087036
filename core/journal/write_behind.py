"""Write-behind for the journal records that follow a send.

Only an order's intent must be committed before the send (R-S6); the ack,
fills and position updates that follow are queued here and committed in one
transaction per batch, off the engine tick, by a single writer task (so their
order is kept). A crash before a flush loses nothing the venue does not also
know: start-up recovery resolves every intent by client order id.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from core.crash_points import NO_CRASH, CrashPoints
from core.ports import JournalStore

Write = Callable[..., Awaitable[Any]]


class WriteBehind:
    def __init__(self, store: JournalStore, crash: CrashPoints = NO_CRASH) -> None:
        self._store = store
        self._crash = crash
        self._queue: list[tuple[Write, dict[str, Any]]] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._tick_idle = asyncio.Event()  # the writer yields the database to ticks
        self._tick_idle.set()
        self.batches = 0
        self.failures = 0

    def later(self, write: Write, **kwargs: Any) -> None:
        self._queue.append((write, kwargs))
        self._idle.clear()
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="journal")

    def tick_started(self) -> None:
        self._tick_idle.clear()

    def tick_ended(self) -> None:
        self._tick_idle.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is committed."""
        if self._queue:
            self._wake.set()
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(self._run(), name="journal")
        await self._idle.wait()

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await self._tick_idle.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                try:
                    async with self._store.transaction():
                        for write, kwargs in batch:
                            await write(**kwargs)
                        if any(getattr(w, "__name__", "") == "record_fill" for w, _ in batch):
                            # Crash tests: a fill written but not committed - the venue
                            # knows it, the journal must learn it again at start-up.
                            self._crash.hit("in_flush")
                    self.batches += 1
                    if self.batches % 50 == 0:
                        await self._store.checkpoint()
                except Exception:  # noqa: BLE001 - retried one by one, never dropped silently
                    self.failures += 1
                    logger.exception("journal batch failed; writing one by one")
                    for write, kwargs in batch:
                        try:
                            await write(**kwargs)
                        except Exception:  # noqa: BLE001
                            logger.exception("journal write failed: {}", kwargs)
            if not self._queue:
                self._idle.set()
