"""Ports (Protocols) the engine and service depend on; adapters implement them.

ExchangePort mirrors the subset of ccxt's unified API the engine uses, so the
paper exchange and the ccxt adapters are interchangeable and share one contract
test suite (docs/architecture.md).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

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

Num = float | int | Decimal | str  # stored as exact text: repr(float) or Decimal


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


class JournalStore(Protocol):
    """The order journal (R-S6) as the service, engine and safety rails use it; the
    SQLite store implements it, and a test double may."""

    path: Path

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int: ...

    async def checkpoint(self) -> None: ...

    async def create_run(self, run_id: str, mode: str, phase: int, universe: str,
                         data_source: str, started_at: float,
                         max_notional_usd: Num | None = None, status: str = "running") -> None: ...

    async def finish_run(self, run_id: str, ended_at: float, status: str,
                         stop_reason: str | None, exit_code: int, kpi_path: str | None,
                         gate_json: str | None = None) -> None: ...

    async def get_run(self, run_id: str) -> dict[str, Any] | None: ...

    async def runs(self) -> list[dict[str, Any]]: ...

    async def last_run(self) -> dict[str, Any] | None: ...

    async def record_intents(self, intents: Sequence[dict[str, Any]]) -> None: ...

    async def update_intent(self, client_order_id: str, state: str,
                            exchange_order_id: str | None = None, filled: Num | None = None,
                            reason: str | None = None,
                            updated_at: float | None = None) -> None: ...

    async def get_intent(self, client_order_id: str) -> dict[str, Any] | None: ...

    async def intents_in_states(self, states: Sequence[str],
                                run_id: str | None = None) -> list[dict[str, Any]]: ...

    async def record_fill(self, venue: str, trade_id: str, client_order_id: str, run_id: str,
                          symbol: str, side: str, price: Num, amount: Num, cost: Num, fee: Num,
                          fee_currency: str, fx: Num | None, position_id: str | None,
                          ts: float) -> bool: ...

    async def fills(self, run_id: str) -> list[dict[str, Any]]: ...

    async def upsert_position(self, position_id: str, run_id: str, base: str, direction: str,
                              qty: Num, state: str, opened_at: float,
                              entry_premium_bps: float | None, expected_edge_bps: float | None,
                              break_even_bps: float | None, closed_at: float | None = None,
                              exit_reason: str | None = None, pnl_usd: Num | None = None,
                              fees_usd: Num | None = None) -> None: ...

    async def positions(self, run_id: str | None,
                        states: list[str] | None = None) -> list[dict[str, Any]]: ...

    async def save_kpi(self, run_id: str, final: bool, ts: float, json_text: str) -> int: ...

    async def latest_kpi(self, run_id: str | None = None) -> dict[str, Any] | None: ...

    async def audit(self, ts: float, user_id: str | int | None, role: str | None,
                    chat_id: str | int | None, surface: str | None, command: str, args: Any,
                    outcome: str | None, latency_ms: float | None) -> None: ...

    async def audit_rows(self, limit: int = 50) -> list[dict[str, Any]]: ...

    async def set_flag(self, key: str, value: str, ts: float) -> None: ...

    async def get_flag(self, key: str) -> str | None: ...

    async def clear_flag(self, key: str) -> None: ...

    async def record_event(self, ts: float, run_id: str | None, kind: str,
                           payload: Mapping[str, Any]) -> None: ...

    async def events(self, run_id: str | None = None, kind: str | None = None,
                     limit: int = 100) -> list[dict[str, Any]]: ...
