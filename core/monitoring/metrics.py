"""Prometheus metrics for the runbook's ten KPIs (R-O1, runbook §3.1).

Design:
- One `CollectorRegistry` per `ArbMetrics` object, never the library's global
  one: two services (or two tests) in one process never share series.
- Gauges are read from the service at scrape time by a custom collector (the
  engine and watchdog measurements, the same numbers the KPI JSON reports);
  nothing is copied on a timer that could drift.
- Counters are the engine's run totals made monotonic across runs: when the
  service moves on to a new engine, the old engine's final totals are folded
  into per-series offsets, so `rate()` and `increase()` never see a reset
  except on a process restart.
- The loop-latency histogram is fed incrementally from
  `engine.latency.samples`, remembering how many samples of which engine were
  already observed (every tick is observed once, none is invented).
- `update()` must run on the thread that runs the engine (the event loop): the
  HTTP endpoint in bot/monitoring_app.py serves from the loop, so a scrape never
  races the engine's dicts.

Three names break Prometheus' naming conventions and are kept because they are
the runbook's (docs/monitoring.md): `arbitrage_loop_latency_ms` and
`arbitrage_memory_mb` (non-base units) and `arbitrage_pnl_usd_total` (a gauge
named like a counter: PnL goes down as well as up).
"""
from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import psutil
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from core.domain.engine_stats import EngineStats
from core.monitoring.perf import ResourceSampler

# Loop latency in ms: sub-millisecond ticks are normal for the paper engine,
# 30/50/100 ms are the phase-2 average, phase-1 and kill thresholds (R-P2, R-K4).
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 50.0, 75.0, 100.0, 150.0, 250.0,
    500.0, 1000.0,
)
TRADING_STATE_CODES = {"ACTIVE": 0, "REDUCING": 1, "HALTED": 2}
ALL_VENUES = "all"  # label value while the engine does not split a figure by venue

# name -> (type, help); the R-O1 list first, then arbops' additions.
METRICS: dict[str, tuple[str, str]] = {
    "arbitrage_loop_latency_ms": ("histogram", "Engine tick wall time in milliseconds"),
    "arbitrage_round_trips_total": ("counter", "Completed round trips (entry+exit, both legs)"),
    "arbitrage_pnl_usd_total": (
        "gauge", ("Strategy PnL in USD, net of fees, each venue at its own price: finished "
                  "runs of this process plus the running one")),
    "arbitrage_win_rate": ("gauge", "Win rate (0..1) of the running run, else the last one"),
    "arbitrage_cpu_percent": ("gauge", "Process CPU as a share of one core, percent"),
    "arbitrage_memory_mb": ("gauge", "Process resident memory (RSS) in MiB"),
    "arbitrage_exchange_errors_total": ("counter", "Venue API errors seen by the engine"),
    "arbitrage_rate_limit_wait_seconds": (
        "gauge", "Longest rate-limit wait (retry-after) the venue asked for in the running run"),
    "arbitrage_open_positions": ("gauge", "Open positions (filled legs; pending entries excluded)"),
    "arbitrage_failed_fills_total": ("counter", "Orders rejected or done with less than asked"),
    # additions
    "arbitrage_rate_limit_hits_total": ("counter", "Rate-limit responses from the venues"),
    "arbitrage_entries_total": ("counter", "Positions entered (both legs filled)"),
    "arbitrage_webhook_refused_total": ("counter", "Telegram webhook requests refused, by reason"),
    "arbitrage_trading_state": ("gauge", "Trading state: 0 ACTIVE, 1 REDUCING, 2 HALTED"),
    "arbitrage_armed": ("gauge", "1 while LIVE trading is armed, else 0"),
    "arbitrage_run_active": ("gauge", "1 while a phase run is active, else 0"),
    "arbitrage_run_info": ("gauge", "1 for the running phase, labelled with its mode and phase"),
    "arbitrage_daily_pnl_usd": (
        "gauge", "PnL of the day in the report time zone (finished runs plus the running one)"),
    "arbitrage_seconds_since_entry": (
        "gauge", "Seconds since the last entry, or since the run started (running run only)"),
    "arbitrage_seconds_since_exit": (
        "gauge", "Seconds since the last exit, or since the run started (running run only)"),
    "arbitrage_heartbeat_age_seconds": (
        "gauge", "Seconds since the engine's last completed tick (running run only)"),
}
# Runbook names that promtool's `check metrics` complains about, and why we keep them.
RUNBOOK_NAME_EXCEPTIONS = {
    "arbitrage_loop_latency_ms": "unit ms is not a base unit (runbook name)",
    "arbitrage_memory_mb": "unit mb is not a base unit (runbook name)",
    "arbitrage_pnl_usd_total": "a gauge named with _total (runbook name; PnL can fall)",
}


def _engine_of(service: Any) -> Any:
    run = getattr(service, "current", None)
    return getattr(run, "engine", None) if run is not None else None


def _by_venue(split: Mapping[str, float], total: float) -> dict[str, float]:
    """Per-venue figures when the engine has them, else one `exchange="all"` series."""
    if split:
        return {str(k): float(v) for k, v in split.items()}
    return {ALL_VENUES: float(total)}


def _counter_values(st: EngineStats) -> dict[tuple[str, str], float]:
    """(metric, exchange label or '') -> the engine's run total."""
    out: dict[tuple[str, str], float] = {
        ("arbitrage_round_trips_total", ""): float(st.round_trips),
        ("arbitrage_failed_fills_total", ""): float(st.failed_fills),
        ("arbitrage_entries_total", ""): float(st.entries),
    }
    for venue, v in _by_venue(st.exchange_errors_by_venue, st.exchange_errors).items():
        out[("arbitrage_exchange_errors_total", venue)] = v
    for venue, v in _by_venue(st.rate_limit_hits_by_venue, st.rate_limit_hits).items():
        out[("arbitrage_rate_limit_hits_total", venue)] = v
    return out


class LatencyHistogram:
    """Cumulative bucket counts, sum and count; exported by the collector.

    Kept by hand rather than with prometheus_client's Histogram so the family has
    no `_created` series (one more name promtool would flag) and no lock.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket (not cumulative); last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def family(self) -> HistogramMetricFamily:
        buckets, acc = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += n
            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), acc))
        return HistogramMetricFamily("arbitrage_loop_latency_ms",
                                     METRICS["arbitrage_loop_latency_ms"][1],
                                     buckets=buckets, sum_value=self.sum)


class ArbMetrics:
    """The registry, the latency histogram and the run tracker for one service."""

    def __init__(self, service: Any, *, process_metrics: bool = True) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = LatencyHistogram(LATENCY_BUCKETS_MS)
        self._engine: Any = None
        self._seen = 0  # samples of self._engine already observed
        self._offsets: dict[tuple[str, str], float] = {}
        self._pnl_offset = 0.0  # final PnL of finished engines
        self._last_win_rate = 0.0
        self._idle = ResourceSampler()
        self._proc = psutil.Process()
        self.registry.register(_ServiceCollector(self))
        if process_metrics:
            ProcessCollector(registry=self.registry)

    # --- tracking runs ----------------------------------------------------------------
    def update(self) -> Any:
        """Observe new latency samples and fold finished engines; returns the current one."""
        current = _engine_of(self.service)
        if self._engine is not None and current is not self._engine:
            self._drain(self._engine)
            final = self._engine.stats()
            for key, value in _counter_values(final).items():
                self._offsets[key] = self._offsets.get(key, 0.0) + value
            self._pnl_offset += final.pnl_usd
            self._last_win_rate = final.win_rate
            self._engine, self._seen = None, 0  # drop the reference: its memory goes
        if current is not None:
            self._engine = current
            self._drain(current)
        return current

    def _drain(self, engine: Any) -> None:
        samples = engine.latency.samples
        n = len(samples)
        observe = self.latency.observe
        for i in range(self._seen, n):
            observe(samples[i])
        self._seen = n

    def counters(self) -> dict[tuple[str, str], float]:
        values = dict(self._offsets)
        if self._engine is not None:
            for key, value in _counter_values(self._engine.stats()).items():
                values[key] = values.get(key, 0.0) + value
        return values

    def pnl_total(self) -> float:
        return self._pnl_offset + (self._engine.stats().pnl_usd if self._engine else 0.0)

    def generate(self) -> bytes:
        from prometheus_client import generate_latest

        self.update()
        return generate_latest(self.registry)


def _armed(service: Any) -> bool:
    probe = getattr(service, "is_armed", None)
    if callable(probe):
        return bool(probe())
    status = getattr(service, "status", None)
    return bool(status().get("armed")) if callable(status) else False


class _ServiceCollector(Collector):
    def __init__(self, metrics: ArbMetrics) -> None:
        self.m = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # names are dynamic per scrape; skip registry duplicate checks

    def collect(self) -> Iterator[Metric]:
        m = self.m
        service = m.service
        engine = m.update()
        now = service.clock.time()

        def gauge(name: str, value: float, labels: dict[str, str] | None = None) -> Metric:
            fam = GaugeMetricFamily(name, METRICS[name][1], labels=list(labels or {}))
            fam.add_metric(list((labels or {}).values()), float(value))
            return fam

        yield m.latency.family()
        counters = m.counters()
        for name in ("arbitrage_round_trips_total", "arbitrage_failed_fills_total",
                     "arbitrage_entries_total"):
            fam = CounterMetricFamily(name.removesuffix("_total"), METRICS[name][1])
            fam.add_metric([], counters.get((name, ""), 0.0))
            yield fam
        for name in ("arbitrage_exchange_errors_total", "arbitrage_rate_limit_hits_total"):
            fam = CounterMetricFamily(name.removesuffix("_total"), METRICS[name][1],
                                      labels=["exchange"])
            series = {k[1]: v for k, v in counters.items() if k[0] == name}
            for venue, value in sorted(series.items() or [(ALL_VENUES, 0.0)]):
                fam.add_metric([venue], value)
            yield fam

        refused = CounterMetricFamily("arbitrage_webhook_refused",
                                      METRICS["arbitrage_webhook_refused_total"][1],
                                      labels=["reason"])
        for reason, n in sorted(getattr(service, "webhook_refusals", {}).items()):
            refused.add_metric([reason], float(n))
        yield refused

        yield gauge("arbitrage_pnl_usd_total", m.pnl_total())
        st = engine.stats() if engine is not None else None
        yield gauge("arbitrage_win_rate", st.win_rate if st else m._last_win_rate)
        cpu = engine.resources.last.cpu_percent if engine else m._idle.sample().cpu_percent
        yield gauge("arbitrage_cpu_percent", cpu)
        yield gauge("arbitrage_memory_mb", m._proc.memory_info().rss / 2**20)
        waits = (_by_venue(st.rate_limit_wait_s_by_venue, st.rate_limit_wait_s) if st
                 else {ALL_VENUES: 0.0})
        wait_fam = GaugeMetricFamily("arbitrage_rate_limit_wait_seconds",
                                     METRICS["arbitrage_rate_limit_wait_seconds"][1],
                                     labels=["exchange"])
        for venue, value in sorted(waits.items()):
            wait_fam.add_metric([venue], value)
        yield wait_fam
        yield gauge("arbitrage_open_positions", st.open_positions if st else 0)

        state = str(getattr(service.state, "state", "ACTIVE"))
        yield gauge("arbitrage_trading_state", TRADING_STATE_CODES.get(state, 2))
        yield gauge("arbitrage_armed", 1 if _armed(service) else 0)
        yield gauge("arbitrage_run_active", 1 if engine else 0)
        daily = getattr(service, "daily_pnl", None)
        if callable(daily):
            yield gauge("arbitrage_daily_pnl_usd",
                        daily(now, st.pnl_usd if st else 0.0))
        if st is not None:
            run = service.current
            yield gauge("arbitrage_run_info", 1,
                        {"mode": str(run.spec.mode), "phase": str(run.spec.phase)})
            mono = service.clock.monotonic()
            since_entry = mono - (st.last_entry_mono if st.last_entry_mono is not None
                                  else st.started_mono)
            since_exit = mono - (st.last_exit_mono if st.last_exit_mono is not None
                                 else st.started_mono)
            yield gauge("arbitrage_seconds_since_entry", max(since_entry, 0.0))
            yield gauge("arbitrage_seconds_since_exit", max(since_exit, 0.0))
            yield gauge("arbitrage_heartbeat_age_seconds",
                        max(time.monotonic() - st.heartbeat_real, 0.0))


__all__ = ["ALL_VENUES", "LATENCY_BUCKETS_MS", "METRICS", "RUNBOOK_NAME_EXCEPTIONS", "ArbMetrics"]
