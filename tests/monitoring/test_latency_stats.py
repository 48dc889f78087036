"""LatencyStats.live_summary (the histogram read by status screens) against the
exact, sorted summary() used in the KPI: avg and max equal, p50/p99 within the
histogram's 1 % bucket width."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.monitoring.perf import LatencyStats

latencies = st.lists(st.floats(min_value=0.0, max_value=5_000.0, allow_nan=False,
                               allow_infinity=False), min_size=1, max_size=400)


@settings(max_examples=300, deadline=None)
@given(latencies)
def test_live_summary_matches_the_exact_one_within_a_bucket(values: list[float]) -> None:
    stats = LatencyStats()
    for v in values:
        stats.record(v)
    exact, live = stats.summary(), stats.live_summary()
    assert live["avg"] == pytest.approx(exact["avg"], abs=1e-4)
    assert live["max"] == pytest.approx(exact["max"], abs=1e-4)
    ordered = sorted(values)
    for q in ("p50", "p99"):
        rank = round((len(values) - 1) * (0.50 if q == "p50" else 0.99))
        at_rank = ordered[rank]
        # the value at that rank, to the bucket's 1 % (or the 1 us floor bucket)
        assert abs(live[q] - at_rank) <= max(at_rank * 0.0101, 0.0011) + 1e-4, (q, at_rank)
        assert ordered[0] - 1e-4 <= live[q] <= ordered[-1] + 1e-4


def test_empty_stats_report_zeros() -> None:
    assert LatencyStats().live_summary() == {"avg": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
