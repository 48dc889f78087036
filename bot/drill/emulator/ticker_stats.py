"""Rolling open/high/low per book since the emulator started (the '24 h' ticker fields)."""

from __future__ import annotations

import dataclasses

from core.domain.models import MarketSnapshot, OrderBook


@dataclasses.dataclass(slots=True)
class Ohl:
    open: float
    high: float
    low: float
    last: float
    open_ms: int


class TickerStats:
    def __init__(self) -> None:
        self.books: dict[str, dict[str, Ohl]] = {"binance": {}, "upbit": {}}

    def on_snapshot(self, snap: MarketSnapshot) -> None:
        for venue, books in (("binance", snap.binance), ("upbit", snap.upbit)):
            table = self.books[venue]
            for base, book in books.items():
                self._update(table, base, book, snap.ts_ms)
        self._update(self.books["upbit"], "USDT", snap.fx, snap.ts_ms)

    @staticmethod
    def _update(table: dict[str, Ohl], base: str, book: OrderBook, ts_ms: int) -> None:
        if not book.bids or not book.asks:
            return
        mid = book.mid
        o = table.get(base)
        if o is None:
            table[base] = Ohl(mid, mid, mid, mid, ts_ms)
            return
        o.last = mid
        o.high = max(o.high, mid)
        o.low = min(o.low, mid)

    def get(self, venue: str, base: str) -> Ohl | None:
        return self.books[venue].get(base)
