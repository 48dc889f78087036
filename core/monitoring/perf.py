"""Measured performance figures: loop latency, process CPU and RSS (R-P3).

Nothing here is a constant: latency is the wall time of each tick's work, CPU
is this process's share of one core between samples, memory is the RSS.
"""
from __future__ import annotations

import math
import time
from array import array
from dataclasses import dataclass

import psutil


def percentile(sorted_values: list[float] | array, q: float) -> float:
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


# The live histogram of LatencyStats: buckets 1 % wide from 1 us up (a bucket's
# upper bound is 1.01 x its lower one), so a percentile read from it is within 1 %
# of the sample at that rank, whatever the number of samples.
HIST_STEP = 0.01
HIST_FLOOR_MS = 0.001
_INV_LOG_STEP = 1.0 / math.log1p(HIST_STEP)


class LatencyStats:
    """Every tick's latency (`samples`, for the KPI and the metrics) plus a histogram.

    `summary()` sorts every sample: exact, for the run's KPI, but O(n log n) - about
    5 ms after an hour at 10 ticks/s and 230 ms after a day. `live_summary()` reads
    the histogram instead, in time bounded by the number of distinct buckets: for
    status screens that may be asked for at any time, on the event loop.
    """

    __slots__ = ("_buckets", "last_ms", "max_ms", "min_ms", "samples", "total")

    def __init__(self) -> None:
        self.samples = array("d")
        self.total = 0.0
        self.last_ms = 0.0
        self.max_ms = 0.0
        self.min_ms = math.inf
        self._buckets: dict[int, int] = {}

    def record(self, ms: float) -> None:
        self.samples.append(ms)
        self.total += ms
        self.last_ms = ms
        if ms > self.max_ms:
            self.max_ms = ms
        if ms < self.min_ms:
            self.min_ms = ms
        b = int(math.log(ms / HIST_FLOOR_MS) * _INV_LOG_STEP) if ms > HIST_FLOOR_MS else 0
        self._buckets[b] = self._buckets.get(b, 0) + 1

    def live_summary(self) -> dict[str, float]:
        """The keys of summary(): avg and max exact, p50 and p99 from the histogram
        (the centre of the bucket holding that rank, kept within the exact min..max)."""
        n = len(self.samples)
        if not n:
            return {"avg": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
        ranks = {0.50: round((n - 1) * 0.50), 0.99: round((n - 1) * 0.99)}
        found: dict[float, float] = {}
        seen = 0
        for b in sorted(self._buckets):
            seen += self._buckets[b]
            for q, rank in ranks.items():
                if q not in found and rank < seen:
                    centre = HIST_FLOOR_MS * (1.0 + HIST_STEP) ** (b + 0.5)
                    found[q] = min(max(centre, self.min_ms), self.max_ms)
            if len(found) == len(ranks):
                break
        return {
            "avg": round(self.total / n, 4),
            "p50": round(found[0.50], 4),
            "p99": round(found[0.99], 4),
            "max": round(self.max_ms, 4),
        }

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"avg": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
        s = sorted(self.samples)
        return {
            "avg": round(self.total / len(s), 4),
            "p50": round(percentile(s, 0.50), 4),
            "p99": round(percentile(s, 0.99), 4),
            "max": round(s[-1], 4),
        }


MIN_CPU_INTERVAL_S = 0.25


@dataclass(slots=True)
class ResourceSample:
    cpu_percent: float
    rss_mb: float


class ResourceSampler:
    """CPU as this process's share of one core over the last interval, and RSS."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        t = self._proc.cpu_times()
        self._last_cpu = t.user + t.system
        self._last_wall = time.perf_counter()
        self.cpu = array("d")
        self.rss = array("d")
        self.last = ResourceSample(0.0, self.rss_now())

    def rss_now(self) -> float:
        return self._proc.memory_info().rss / (1024 * 1024)

    def sample(self) -> ResourceSample:
        t = self._proc.cpu_times()
        cpu_now = t.user + t.system
        wall = time.perf_counter()
        dt = wall - self._last_wall
        rss = self.rss_now()
        self.rss.append(rss)
        if dt < MIN_CPU_INTERVAL_S and (self.cpu or dt < 0.05):
            # CPU times tick in 10 ms steps: over a shorter interval the ratio is
            # noise (hundreds of percent), so only memory is sampled - unless this
            # would leave a short run with no CPU figure at all.
            s = ResourceSample(self.last.cpu_percent, rss)
            self.last = s
            return s
        cpu = 100.0 * (cpu_now - self._last_cpu) / dt
        self._last_cpu, self._last_wall = cpu_now, wall
        s = ResourceSample(cpu, rss)
        self.cpu.append(s.cpu_percent)
        self.last = s
        return s

    def summary(self) -> dict[str, dict[str, float]]:
        if not self.rss:
            self.sample()
        cpu = self.cpu or array("d", [self.last.cpu_percent])
        return {
            "cpu_percent": {
                "avg": round(sum(cpu) / len(cpu), 3),
                "max": round(max(cpu), 3),
            },
            "memory_mb": {
                "avg": round(sum(self.rss) / len(self.rss), 3),
                "max": round(max(self.rss), 3),
            },
        }
