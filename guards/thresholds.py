"""Every threshold, defaulting to the runbook (§3.1, §3.2, §4.2); each is a setting."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Thresholds:
    # §4.2 code-level kill switch
    daily_loss_usd: float = 300.0
    single_trade_loss_usd: float = 100.0
    max_open_positions: int = 10
    memory_kill_mb: float = 500.0
    max_consecutive_errors: int = 5
    # §3.2 anomaly table
    latency_ms: float = 100.0
    latency_window_s: float = 60.0
    cpu_percent: float = 80.0
    cpu_window_s: float = 120.0
    memory_anomaly_mb: float = 300.0
    pnl_fall_usd: float = 50.0
    pnl_fall_window_s: float = 1800.0
    exchange_errors_per_min: int = 10
    rate_limit_hits: int = 5
    rate_limit_window_s: float = 600.0
    no_entry_alert_s: float = 300.0
    no_exit_alert_s: float = 600.0
    phase1_no_entry_kill_s: float = 180.0
    heartbeat_s: float = 5.0
    rss_growth_mb: float = 150.0  # a leak: growth since the start-up baseline
    # §3.1 targets, as alerts
    exchange_errors_alert_per_min: int = 5
    rate_limit_wait_alert_s: float = 1.0
    max_concurrent: int = 5
