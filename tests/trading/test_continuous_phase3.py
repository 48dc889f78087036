"""Phase 3 may run continuously; its gate is evaluated every hour (R-S4, R-P2).
A failed hour stops the run gracefully, exits 1 and sends the ladder back."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.app import build_service
from core.commands import RunArgs
from core.config.settings import Settings


async def run_continuous(tmp_path: Path, on_progress: Any = None, **gate: Any) -> Any:
    # One tick a second: the hours are what is tested, not the tick rate (10x fewer ticks).
    settings = Settings(data_dir=tmp_path, sim_fast=True, tick_interval_ms=1000, **gate)
    service = await build_service(settings, fast=True)
    try:
        spec = service.plan_run(RunArgs(phase=3, continuous=True, universe="top10", seed=4))
        assert spec.continuous and spec.duration_s == float("inf")
        outcome = await service.run_phase(spec, on_progress)
        events = await service.store.events(kind="ladder_rolled_back")
        gates = await service.store.events(kind="hourly_gate_evaluated")
    finally:
        await service.store.close()
    return outcome, events, gates


@pytest.mark.timeout(180)
async def test_a_failed_hour_stops_the_run_and_rolls_the_ladder_back(tmp_path: Path) -> None:
    outcome, rollbacks, gates = await run_continuous(tmp_path, gate_min_round_trips=100_000)
    kpi = outcome.kpi
    assert outcome.exit_code == 1
    assert kpi["summary"]["stop_reason"].startswith("hourly gate failed")
    assert kpi["gate"]["result"] == "FAIL" and "round trips" in kpi["gate"]["reasons"][0]
    assert len(gates) == 1 and rollbacks and rollbacks[0]["payload"]["actor"] == "hourly-gate"
    assert 3600 <= kpi["run"]["duration_seconds"] < 3700  # one sim hour, then the close
    assert kpi["trading"]["open_positions"] == []


@pytest.mark.timeout(240)
async def test_passing_hours_keep_it_running_until_stopped(tmp_path: Path) -> None:
    def stop_after_two_hours(run: Any) -> None:
        if len(run.hourly_gates) >= 2 and not run.closing:
            run.request_stop("operator stop")

    outcome, rollbacks, gates = await run_continuous(
        tmp_path, stop_after_two_hours, gate_min_round_trips=0, gate_min_win_rate=0.0,
        gate_min_pnl_usd=-1e9)
    assert outcome.exit_code == 0 and not rollbacks
    assert [g["payload"]["result"] for g in gates] == ["PASS", "PASS"]
    assert outcome.kpi["run"]["duration_seconds"] >= 7200
