"""Fault injection: what the next N requests to a venue suffer.

Request-level kinds (latency, http_429, http_418, timeout, maintenance,
auth_error) are applied by the middleware to any matching venue request; order-level kinds
(partial_fill, insufficient_funds, http_5xx_after_execute) are consumed by order
creation only. `count` None means until cleared.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

VENUES = ("binance", "upbit")
REQUEST_KINDS = ("latency", "http_429", "http_418", "timeout", "maintenance", "auth_error")
ORDER_KINDS = ("partial_fill", "insufficient_funds", "http_5xx_after_execute")
KINDS = REQUEST_KINDS + ORDER_KINDS


@dataclasses.dataclass(slots=True)
class Fault:
    id: int
    venue: str  # "binance" | "upbit"
    kind: str
    count: int | None = 1  # requests (or orders) still to affect; None = until cleared
    seconds: float | None = None  # latency / timeout / Retry-After
    ratio: float | None = None  # partial_fill
    status: int | None = None  # http_5xx_after_execute / maintenance status override
    path: str | None = None  # only requests whose path contains this
    method: str | None = None  # only this HTTP method
    execute: bool = False  # timeout: run the request first, then hang
    name: str | None = None  # auth_error: Upbit error name or Binance code ("-2015")
    body: str | None = None  # http_429/418: "json" answers Upbit with a JSON error body
    hits: int = 0

    def matches(self, venue: str, method: str, path: str) -> bool:
        if self.venue != venue:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or self.path in path

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultBook:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, spec: dict[str, Any]) -> list[Fault]:
        """Add a fault from its JSON spec; venue "both" adds one per venue."""
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(KINDS)}")
        venue = spec.get("venue", "both")
        venues = VENUES if venue == "both" else (venue,)
        if any(v not in VENUES for v in venues):
            raise ValueError(f"unknown venue {venue!r}; expected binance, upbit or both")
        count = spec.get("count", 1)
        if count is not None and (not isinstance(count, int) or count < 1):
            raise ValueError("count must be a positive integer or null")
        ratio = spec.get("ratio")
        if kind == "partial_fill":
            ratio = 0.5 if ratio is None else float(ratio)
            if not 0.0 < ratio <= 1.0:
                raise ValueError("ratio must be in (0, 1]")
        seconds = spec.get("seconds")
        if seconds is not None and float(seconds) < 0:
            raise ValueError("seconds must be >= 0")
        added = []
        for v in venues:
            f = Fault(
                id=next(self._ids),
                venue=v,
                kind=kind,
                count=count,
                seconds=None if seconds is None else float(seconds),
                ratio=ratio,
                status=spec.get("status"),
                path=spec.get("path"),
                method=spec.get("method"),
                execute=bool(spec.get("execute", False)),
                name=spec.get("name"),
                body=spec.get("body"),
            )
            self._faults.append(f)
            added.append(f)
        return added

    def clear(self, venue: str | None = None) -> int:
        before = len(self._faults)
        self._faults = [f for f in self._faults if venue not in (None, "both", f.venue)]
        return before - len(self._faults)

    def active(self) -> list[Fault]:
        return list(self._faults)

    def take(self, venue: str, method: str, path: str, kinds: tuple[str, ...]) -> Fault | None:
        """The first matching fault of one of `kinds`, consuming one use of it."""
        for f in self._faults:
            if f.kind in kinds and f.matches(venue, method, path):
                f.hits += 1
                if f.count is not None:
                    f.count -= 1
                    if f.count <= 0:
                        self._faults.remove(f)
                return f
        return None
