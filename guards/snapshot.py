"""The measurements a guard sees at one sample. Built by the watchdog; pure data."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snapshot:
    now: float  # wall-clock seconds (UTC epoch): for the report-zone day
    mono: float  # monotonic seconds: for windows
    run_started_mono: float | None  # None when no run is active
    phase: int | None
    loop_latency_ms: float  # latest tick
    cpu_percent: float  # this process's share of one core
    rss_mb: float
    rss_baseline_mb: float  # measured after start-up
    heartbeat_age_s: float
    pnl_usd: float  # marked to market, this run
    daily_pnl_usd: float  # today in the report zone
    worst_trade_pnl_usd: float  # the worst closed round trip so far (0 if none)
    open_positions: int
    consecutive_errors: int
    unhandled_errors: int
    exchange_errors_total: int
    rate_limit_hits_total: int
    rate_limit_wait_s: float  # the longest wait the venues asked for, latest sample
    failed_fills_total: int
    last_entry_mono: float | None
    last_exit_mono: float | None
