"""Measured performance figures: loop latency, process CPU and RSS (R-P3).

Nothing here is a constant: latency is the wall time of each tick's work, CPU
is this process's share of one core between samples, memory is the RSS.
"""
from __future__ import annotations

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


class LatencyStats:
    __slots__ = ("last_ms", "samples", "total")

    def __init__(self) -> None:
        self.samples = array("d")
        self.total = 0.0
        self.last_ms = 0.0

    def record(self, ms: float) -> None:
        self.samples.append(ms)
        self.total += ms
        self.last_ms = ms

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
