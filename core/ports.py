"""Ports (Protocols) the engine and service depend on; adapters implement them.

ExchangePort mirrors the subset of ccxt's unified API the engine uses, so the
paper exchange and the ccxt adapters are interchangeable and share one contract
test suite (design.md convention 4).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from core.domain.models import (
    Balance,
    Market,
    MarketSnapshot,
    Order,
    OrderBook,
    OrderRequest,
    SymbolStats,
    Venue,
)


class ExchangePort(Protocol):
    venue: Venue

    async def load_markets(self) -> dict[str, Market]: ...

    async def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook: ...

    async def fetch_balance(self) -> dict[str, Balance]: ...

    async def create_order(self, request: OrderRequest) -> Order: ...

    async def cancel_order(
        self, order_id: str | None, symbol: str, client_order_id: str | None = None
    ) -> Order: ...

    async def cancel_all_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]: ...

    async def fetch_order(
        self, order_id: str | None, symbol: str, client_order_id: str | None = None
    ) -> Order: ...

    async def close(self) -> None: ...


SnapshotListener = Callable[[MarketSnapshot], None]


class MarketData(Protocol):
    """Latest books for the subscribed universe, produced by its own task."""

    def symbol_stats(self) -> list[SymbolStats]: ...

    def subscribe(self, bases: list[str]) -> None: ...

    def latest(self) -> MarketSnapshot | None: ...

    def add_listener(self, listener: SnapshotListener) -> None: ...

    def step(self) -> MarketSnapshot:
        """Advance one market interval and notify listeners (sim/replay)."""
        ...

    async def run(self) -> None:
        """Produce snapshots forever at the configured interval."""
        ...

    async def wait_next(self, after_seq: int) -> MarketSnapshot: ...


class Notifier(Protocol):
    async def notify(self, severity: str, title: str, body: str) -> None: ...
