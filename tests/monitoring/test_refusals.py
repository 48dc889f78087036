"""RefusalTally: counted at once, summarised at most once per interval (injected clock)."""
from __future__ import annotations

from core.monitoring.refusals import RefusalTally


def test_first_at_once_then_one_summary_per_interval():
    now = [100.0]
    tally = RefusalTally(interval_s=60, clock=lambda: now[0])
    first = tally.add("wrong secret token", "10.0.0.1")
    assert first is not None and first.counts == {"wrong secret token": 1}
    for i in range(500):
        assert tally.add("wrong secret token" if i % 2 else "not a JSON update",
                         f"10.0.0.{i % 9}") is None
    now[0] += 60
    summary = tally.add("wrong secret token", "10.0.0.1")
    assert summary is not None
    assert summary.counts == {"wrong secret token": 251, "not a JSON update": 250}
    assert len(summary.peers) == RefusalTally.MAX_PEERS and summary.text().endswith("...)")
    assert tally.totals == {"wrong secret token": 252, "not a JSON update": 250}
    assert tally.flush() is None  # nothing pending after a summary


def test_flush_reports_what_is_pending():
    now = [0.0]
    tally = RefusalTally(interval_s=60, clock=lambda: now[0])
    tally.add("a", "p")
    tally.add("b", "p")
    summary = tally.flush()
    assert summary is not None and summary.counts == {"b": 1} and summary.total == 1
