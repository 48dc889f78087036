"""EngineStats: what the engine has done so far, as one frozen value.

The watchdog (its own thread), the metrics endpoint, status and the KPI all read the
engine through this snapshot instead of its loose counters, so each reader sees one
consistent moment and none can change the engine by accident.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EngineStats:
    started_mono: float  # injected clock at the engine's start
    heartbeat_real: float  # time.monotonic() of the last tick (the watchdog's clock)
    entries: int
    exits: int
    round_trips: int
    wins: int
    failed_fills: int
    errors: int  # unhandled exceptions inside ticks
    consecutive_errors: int
    exchange_errors: int
    rate_limit_hits: int
    rate_limit_wait_s: float
    exchange_errors_by_venue: Mapping[str, int]
    rate_limit_hits_by_venue: Mapping[str, int]
    rate_limit_wait_s_by_venue: Mapping[str, float]
    pnl_usd: float  # strategy PnL: trading's change of the holdings, net of fees
    inventory_pnl_usd: float  # the pre-funded holdings' revaluation
    worst_trade_pnl: float
    open_positions: int  # pairs holding a position (entering ones excluded)
    first_entry_mono: float | None
    first_exit_mono: float | None
    last_entry_mono: float | None
    last_exit_mono: float | None
    last_latency_ms: float

    @property
    def total_pnl_usd(self) -> float:
        """The account's equity change: strategy PnL + inventory revaluation."""
        return self.pnl_usd + self.inventory_pnl_usd

    @property
    def win_rate(self) -> float:
        return self.wins / self.round_trips if self.round_trips else 0.0
