"""Recorded market snapshots: `arbops record` writes them, the `replay` data
source plays them back (R-M8), deterministically and at any speed.

Format: gzip'd JSON lines. The first line is a header (version, source, the
universe's symbol stats, interval); each further line one snapshot of the FX
book and both venues' books.
"""
from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.clock import Clock, ManualClock
from core.domain.models import MarketSnapshot, OrderBook, SymbolStats
from core.ports import SnapshotListener
from core.venues.snapshot_feed import SnapshotFeed

FORMAT_VERSION = 1


def _book_json(b: OrderBook) -> dict[str, Any]:
    return {"s": b.symbol, "b": b.bids, "a": b.asks}


def _book(d: dict[str, Any], ts: int, seq: int) -> OrderBook:
    return OrderBook(d["s"], [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]], ts, seq)


def snapshot_json(snap: MarketSnapshot) -> dict[str, Any]:
    """One snapshot as a recording line (also what a stepped emulator answers)."""
    return {"seq": snap.seq, "ts": snap.ts_ms, "fx": _book_json(snap.fx),
            "u": {k: _book_json(v) for k, v in snap.upbit.items()},
            "n": {k: _book_json(v) for k, v in snap.binance.items()}}


def snapshot_from_json(d: dict[str, Any], seq: int, ts: int,
                       bases: set[str] | None = None) -> MarketSnapshot:
    """A recording line back into a snapshot, stamped seq and ts; `bases` keeps only
    those pairs (None: all)."""
    return MarketSnapshot(
        seq=seq, ts_ms=ts, fx=_book(d["fx"], ts, seq),
        upbit={k: _book(v, ts, seq) for k, v in d["u"].items() if bases is None or k in bases},
        binance={k: _book(v, ts, seq) for k, v in d["n"].items()
                 if bases is None or k in bases},
    )


class Recorder:
    def __init__(self, path: Path, source: str, stats: list[SymbolStats], interval_s: float
                 ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = gzip.open(path, "wt", encoding="utf-8")  # noqa: SIM115 - open for the recording
        self.count = 0
        header = {"version": FORMAT_VERSION, "source": source, "interval_s": interval_s,
                  "stats": [{f: getattr(s, f) for f in SymbolStats.__slots__} for s in stats]}
        self._fh.write(json.dumps(header) + "\n")

    def __call__(self, snap: MarketSnapshot) -> None:
        self._fh.write(json.dumps(snapshot_json(snap)) + "\n")
        self.count += 1

    def close(self) -> None:
        self._fh.close()


class ReplayMarket:
    """MarketData over one or more recordings, played in order; `step()` is the next
    recorded snapshot.

    `data_clock`: the run's clock is a ManualClock moved to each snapshot's recorded
    time (a backtest: the strategy's seconds are the market's, holes between
    recordings included), and books carry that time. Otherwise books are stamped
    with the run's clock. `hold_last`: after the last snapshot, `step()` publishes
    the last books again, one interval later each, and `ended` says so, so positions
    can be closed at the last prices instead of being cut off.
    """

    def __init__(self, path: Path | list[Path], clock: Clock, interval_s: float | None = None,
                 *, data_clock: bool = False, hold_last: bool = False) -> None:
        self.paths = list(path) if isinstance(path, list) else [path]
        if not self.paths:
            raise ValueError("no recording given")
        self.path = self.paths[0]
        self.clock = clock
        header = read_header(self.path)
        self.header = header
        self.interval_s = interval_s or float(header["interval_s"])
        # Every recording's symbols (the first header's figures where two name one).
        stats: dict[str, SymbolStats] = {}
        for p in self.paths:
            for s in (header if p == self.path else read_header(p))["stats"]:
                stats.setdefault(s["base"], SymbolStats(**s))
        self._stats = list(stats.values())
        self._feed = SnapshotFeed()
        self._lines: Iterator[str] | None = None
        self._subscribed: set[str] = set()
        self._seq = 0
        self.data_clock = data_clock
        if data_clock and not isinstance(clock, ManualClock):
            raise ValueError("a data clock needs a ManualClock")
        # The phase run advances a manual clock itself unless the data drives it.
        self.drives_clock = data_clock
        self.hold_last = hold_last
        self.ended = False
        self._last: dict[str, Any] | None = None
        self.data_ts: float | None = None  # the recorded time of the newest snapshot

    def symbol_stats(self) -> list[SymbolStats]:
        return list(self._stats)

    def subscribe(self, bases: list[str]) -> None:
        self._subscribed = set(bases)

    def latest(self) -> MarketSnapshot | None:
        return self._feed.latest()

    def add_listener(self, listener: SnapshotListener) -> None:
        self._feed.add_listener(listener)

    def step(self) -> MarketSnapshot:
        if self._lines is None:
            self._lines = self._read()
        try:
            d = json.loads(next(self._lines))
            self._last = d
            self.data_ts = float(d["ts"]) / 1000.0
        except StopIteration:
            if not self.hold_last or self._last is None:
                raise EOFError(f"{self.path}: the recording has ended") from None
            self.ended = True
            d = self._last
            self.data_ts = (self.data_ts or 0.0) + self.interval_s
        self._seq += 1
        if self.data_clock:
            assert isinstance(self.clock, ManualClock)
            assert self.data_ts is not None
            self.clock.advance_to(self.data_ts)
        # Replayed books are stamped with the run's clock (the gateway's stale-book
        # check compares against it); with a data clock that is the recorded time.
        ts = int(self.clock.time() * 1000)
        return self._feed.publish(snapshot_from_json(d, self._seq, ts, self._subscribed))

    async def run(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(self.interval_s)

    async def wait_next(self, after_seq: int) -> MarketSnapshot:
        return await self._feed.wait_next(after_seq)

    def _read(self) -> Iterator[str]:
        for path in self.paths:
            read_header(path)
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                fh.readline()
                yield from fh


def read_header(path: Path) -> dict[str, Any]:
    """A recording's header; a format this code does not read is refused."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline())
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        raise ValueError(f"{path}: recording format {version} is not {FORMAT_VERSION}")
    return header


def first_timestamp(path: Path) -> float:
    """The recorded time (s) of a recording's first snapshot."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        fh.readline()
        line = fh.readline()
    if not line:
        raise ValueError(f"{path}: the recording holds no snapshot")
    return float(json.loads(line)["ts"]) / 1000.0


def latest_recording(data_dir: Path) -> Path | None:
    files = sorted((data_dir / "recordings").glob("*.jsonl.gz"))
    return files[-1] if files else None


def recording_seconds(path: Path) -> float:
    """How long a recording plays at its own interval; every line is checked, so a
    corrupt recording is refused before a run starts, not in the middle of one."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline())
        if header.get("version") != FORMAT_VERSION:
            raise ValueError(f"recording format {header.get('version')} is not {FORMAT_VERSION}")
        n = 0
        for lineno, line in enumerate(fh, start=2):
            d = json.loads(line)
            if not all(k in d for k in ("ts", "fx", "u", "n")):
                raise ValueError(f"line {lineno} is not a snapshot")
            n += 1
    return n * float(header["interval_s"])


async def record_market(market: Any, path: Path, seconds: float, source: str, bases: list[str]
                        ) -> int:
    """Run `market` for `seconds` and write every snapshot to `path`."""
    market.subscribe(bases)
    stats = [s for s in market.symbol_stats() if s.base in set(bases)]
    recorder = Recorder(path, source, stats, float(getattr(market, "interval_s", 0.1)))
    market.add_listener(recorder)
    task = asyncio.create_task(market.run(), name="record")
    try:
        await asyncio.sleep(seconds)
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        recorder.close()
    return recorder.count
