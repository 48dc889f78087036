"""Market data from an emulator on a manual clock, in lockstep with the engine.

Each snapshot is one POST /admin/advance: the emulator's clock moves one tick on
(its market steps, catching up once per interval, and matches the working
orders), the books come back in the answer, and the engine's ManualClock is set
to the emulator's time. The next advance waits until the engine has finished its
tick on this snapshot (it asks for the next one). Both sides thus run on one data
clock: the same seed gives the same books, fills and decisions whatever the load
on the machine, and a data second costs only the work done in it. For the crash
soak and benchmarks; orders still go through ccxt to the emulator's REST API.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from core.clock import ManualClock
from core.domain.models import MarketSnapshot, SymbolStats
from core.ports import SnapshotListener
from core.venues.replay_market import snapshot_from_json
from core.venues.snapshot_feed import SnapshotFeed

REQUEST_TIMEOUT_S = 30.0


class SteppedFeed:
    # PhaseRun commits the write-behind journal before asking for the next snapshot
    # (as in fast mode): the gap between ticks is not real time here, and a crash
    # inside that commit must come before the market moves, every time.
    lockstep = True

    def __init__(self, url: str, clock: ManualClock, tick_s: float) -> None:
        if tick_s <= 0:
            raise ValueError("tick_s must be > 0")
        self.url = url.rstrip("/")
        self.clock = clock
        self.interval_s = tick_s
        self._feed = SnapshotFeed()
        self._subscribed: set[str] = set()
        self._stats: list[SymbolStats] = []
        self._consumed = -1  # the last seq the engine has finished a tick on
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def open(cls, url: str, tick_s: float) -> SteppedFeed:
        """A feed whose clock starts at the emulator's time (before any run reads it)."""
        feed = cls(url, ManualClock(0.0), tick_s)
        state = await feed._call("GET", "/admin/state")
        feed.clock = ManualClock(float(state["time"]))
        feed._stats = [SymbolStats(**s) for s in state["stats"]]
        return feed

    # --- MarketData ---------------------------------------------------------------
    def symbol_stats(self) -> list[SymbolStats]:
        return list(self._stats)

    def subscribe(self, bases: list[str]) -> None:
        self._subscribed = set(bases)

    def latest(self) -> MarketSnapshot | None:
        return self._feed.latest()

    def add_listener(self, listener: SnapshotListener) -> None:
        self._feed.add_listener(listener)

    def step(self) -> MarketSnapshot:
        raise RuntimeError("a stepped feed advances over HTTP: run() it")

    async def run(self) -> None:
        seconds = 0.0  # the first snapshot is the emulator's current one
        while True:
            got = await self._call("POST", "/admin/advance", {"seconds": seconds})
            seconds = self.interval_s
            self._sync(float(got["time"]))
            line = got["snapshot"]
            snap = snapshot_from_json(line, int(got["seq"]), int(line["ts"]), self._subscribed)
            self._feed.publish(snap)
            while self._consumed < snap.seq:
                self._wake.clear()
                await self._wake.wait()

    async def wait_next(self, after_seq: int) -> MarketSnapshot:
        # Asking for the next snapshot means the tick on after_seq is done.
        if after_seq > self._consumed:
            self._consumed = after_seq
            self._wake.set()
        return await self._feed.wait_next(after_seq)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- helpers ------------------------------------------------------------------
    def _sync(self, emulator_time: float) -> None:
        self.clock.advance(max(emulator_time - self.clock.time(), 0.0))

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        async with self._session.request(method, self.url + path, json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"emulator {method} {path}: {resp.status} {await resp.text()}")
            return await resp.json()
