"""Publishing market snapshots: latest, listeners, and waiters for the next one.

Shared by every MarketData adapter (sim, real, replay) so they differ only in
where the books come from.
"""
from __future__ import annotations

import asyncio

from core.domain.models import MarketSnapshot
from core.ports import SnapshotListener


class SnapshotFeed:
    def __init__(self) -> None:
        self._latest: MarketSnapshot | None = None
        self._listeners: list[SnapshotListener] = []
        self._waiters: list[asyncio.Future[MarketSnapshot]] = []

    def latest(self) -> MarketSnapshot | None:
        return self._latest

    def add_listener(self, listener: SnapshotListener) -> None:
        self._listeners.append(listener)

    def publish(self, snap: MarketSnapshot) -> MarketSnapshot:
        """Listeners first (the paper venues match on it), then waiters wake."""
        self._latest = snap
        try:
            for listener in list(self._listeners):
                listener(snap)
        finally:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(snap)
        return snap

    async def wait_next(self, after_seq: int) -> MarketSnapshot:
        """The latest snapshot if its seq > after_seq, else the next one published."""
        while True:
            snap = self._latest
            if snap is not None and snap.seq > after_seq:
                return snap
            fut: asyncio.Future[MarketSnapshot] = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                snap = await fut
            finally:
                if not fut.done() and fut in self._waiters:
                    self._waiters.remove(fut)
            if snap.seq > after_seq:
                return snap
