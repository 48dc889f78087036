"""Phase 1's gate includes runbook §2.1's list where configured (R-P2)."""
from __future__ import annotations

from typing import Any

from core.trading.phases import evaluate_gate


def kpi() -> dict[str, Any]:
    return {"summary": {"round_trips_completed": 3, "win_rate": 1.0, "total_pnl_usd": 1.0},
            "performance": {"loop_latency_ms": {"avg": 1.0}, "cpu_percent": {"avg": 5.0},
                            "memory_mb": {"max": 50.0}},
            "trading": {"first_entry_s": 5.0, "first_exit_s": 20.0},
            "guards": {"unhandled_errors": 0}}


def test_not_configured_is_not_checked() -> None:
    g = evaluate_gate(1, kpi(), observed={"telegram_test_alert": None, "metrics_served": None})
    assert g.passed and {c["name"] for c in g.checks}.isdisjoint(
        {"telegram_test_alert", "metrics_served"})


def test_configured_but_missing_fails_naming_it() -> None:
    g = evaluate_gate(1, kpi(), observed={"telegram_test_alert": False, "metrics_served": True})
    assert not g.passed
    assert [c["name"] for c in g.checks if not c["passed"]] == ["telegram_test_alert"]
    assert "notify test" in g.reasons[0]


def test_both_delivered_passes() -> None:
    assert evaluate_gate(1, kpi(), observed={"telegram_test_alert": True,
                                             "metrics_served": True}).passed


def phase2(strategy: float, inventory: float) -> dict[str, Any]:
    k = kpi()
    k["summary"] = {"round_trips_completed": 6, "win_rate": 0.5, "strategy_pnl_usd": strategy,
                    "inventory_pnl_usd": inventory, "total_pnl_usd": strategy + inventory}
    return k


def test_the_phase_gates_judge_strategy_pnl_not_the_inventory() -> None:
    """-$11 of strategy PnL fails the -$10 floor even when the coins held rose $500;
    +$1 passes even when they fell $500 (the desk holds them whatever it trades)."""
    rich = evaluate_gate(2, phase2(-11.0, 500.0))
    assert not rich.passed
    assert [c["name"] for c in rich.checks if not c["passed"]] == ["total_pnl"]
    assert rich.checks[2]["observed"] == -11.0 and "strategy PnL $-11.00" in rich.reasons[0]
    assert evaluate_gate(3, phase2(1.0, -500.0)).passed
