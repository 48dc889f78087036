"""Refused requests of a listener anyone can reach (the Telegram webhook): counted
for the metrics at once, logged and audited at most once per interval, as one
summary. An unauthenticated flood must not cost the trading loop a synchronous
journal write (and an fsync) per request, nor fill the log.
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RefusalSummary:
    """What was refused since the last summary: counts by reason, a few peers."""

    counts: dict[str, int]
    peers: tuple[str, ...]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def text(self) -> str:
        parts = ", ".join(f"{n} {why}" for why, n in sorted(self.counts.items()))
        more = " ..." if len(self.peers) >= RefusalTally.MAX_PEERS else ""
        return f"refused {self.total} request(s): {parts} (from {', '.join(self.peers)}{more})"


class RefusalTally:
    MAX_PEERS = 5

    def __init__(self, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self.totals: Counter[str] = Counter()  # since start, by reason: the metric
        self._pending: Counter[str] = Counter()
        self._peers: list[str] = []
        self._last: float | None = None

    def add(self, reason: str, peer: str) -> RefusalSummary | None:
        """Count one refusal; a summary when one is due (the first refusal at once,
        then at most one per interval), else None."""
        self.totals[reason] += 1
        self._pending[reason] += 1
        if peer not in self._peers and len(self._peers) < self.MAX_PEERS:
            self._peers.append(peer)
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            return None
        self._last = now
        return self.flush()

    def flush(self) -> RefusalSummary | None:
        """What is pending as a summary (None when nothing is), and start afresh."""
        if not self._pending:
            return None
        summary = RefusalSummary(dict(self._pending), tuple(self._peers))
        self._pending.clear()
        self._peers.clear()
        return summary
