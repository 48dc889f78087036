"""Phases of the ramp-up (R-P1) and their KPI gates (R-P2)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Phase 3 may run continuously; its gate is then evaluated every hour (R-S4).
HOURLY_S = 3600.0


@dataclass(slots=True, frozen=True)
class Phase:
    number: int
    duration_s: int
    top_n: int
    notional_usd: float


PHASES: dict[int, Phase] = {
    1: Phase(1, 5 * 60, 10, 50.0),
    2: Phase(2, 30 * 60, 20, 100.0),
    3: Phase(3, 60 * 60, 50, 500.0),
}


@dataclass(slots=True, frozen=True)
class GateThresholds:
    entry_within_s: float = 60.0
    exit_within_s: float = 120.0
    phase1_latency_ms: float = 50.0
    phase1_cpu_percent: float = 50.0
    phase1_memory_mb: float = 200.0
    min_round_trips: int = 5
    min_win_rate: float = 0.5
    min_pnl_usd: float = -10.0
    phase2_latency_ms: float = 30.0


@dataclass(slots=True)
class GateResult:
    phase: int
    passed: bool
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [c["reason"] for c in self.checks if not c["passed"]]

    def as_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "result": "PASS" if self.passed else "FAIL",
                "checks": self.checks, "reasons": self.reasons}


# Every check each gate makes, with what it needs at the runbook defaults: the source
# of the runbook's gate lists (tests/test_runbook_docs.py keeps them equal, and equal
# to what evaluate_gate checks).
GATE_CHECKS: dict[str, tuple[tuple[str, str], ...]] = {
    "phase 1": (
        ("entry_in_first_minute", "the first entry within 60 s of the start"),
        ("exit_in_first_2_minutes", "the first exit within 120 s of the start"),
        ("loop_latency", "average loop latency under 50 ms (ARBOPS_GATE_PHASE1_LATENCY_MS)"),
        ("cpu", "average CPU under 50 % of a core (ARBOPS_GATE_PHASE1_CPU_PERCENT)"),
        ("memory", "peak RSS under 200 MB (ARBOPS_GATE_PHASE1_MEMORY_MB)"),
        ("no_unhandled_exception", "no unhandled exception"),
        ("telegram_test_alert", "with TELEGRAM_BOT_TOKEN set: a test alert delivered before "
                                "the run (/notify test or `arbops notify test`)"),
        ("metrics_served", "with PROMETHEUS_ENABLED=true: /metrics answers with the "
                           "engine's figures"),
    ),
    "phases 2 and 3": (
        ("round_trips", "at least 5 round trips (ARBOPS_GATE_MIN_ROUND_TRIPS)"),
        ("win_rate", "win rate at least 50 % (ARBOPS_GATE_MIN_WIN_RATE)"),
        ("total_pnl", "PnL at least -$10 (ARBOPS_GATE_MIN_PNL_USD)"),
        ("avg_loop_latency", "average loop latency under 30 ms "
                             "(ARBOPS_GATE_PHASE2_LATENCY_MS)"),
    ),
}


def gate_checks_markdown(group: str) -> str:
    """The runbook's list of one gate's checks, generated from GATE_CHECKS."""
    return "\n".join(f"- `{name}`: {what}" for name, what in GATE_CHECKS[group])


def thresholds_from_settings(s: Any) -> GateThresholds:
    return GateThresholds(
        phase1_latency_ms=s.gate_phase1_latency_ms, phase1_cpu_percent=s.gate_phase1_cpu_percent,
        phase1_memory_mb=s.gate_phase1_memory_mb, min_round_trips=s.gate_min_round_trips,
        min_win_rate=s.gate_min_win_rate, min_pnl_usd=s.gate_min_pnl_usd,
        phase2_latency_ms=s.gate_phase2_latency_ms)


def evaluate_gate(phase: int, kpi: dict[str, Any], th: GateThresholds | None = None,
                  observed: dict[str, bool | None] | None = None) -> GateResult:
    """PASS/FAIL with a reason for every check, from the measured KPI figures."""
    th = th or GateThresholds()
    s, perf, trading = kpi["summary"], kpi["performance"], kpi["trading"]
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, observed: Any, threshold: Any, reason: str) -> None:
        checks.append({"name": name, "passed": bool(ok), "observed": observed,
                       "threshold": threshold, "reason": reason})

    lat = perf["loop_latency_ms"]["avg"]
    if phase == 1:
        fe, fx = trading["first_entry_s"], trading["first_exit_s"]
        check("entry_in_first_minute", fe is not None and fe <= th.entry_within_s, fe,
              th.entry_within_s, (f"first entry at {fe:.1f} s" if fe is not None
                                  else "no entry") + f" (needs <= {th.entry_within_s:g} s)")
        check("exit_in_first_2_minutes", fx is not None and fx <= th.exit_within_s, fx,
              th.exit_within_s, (f"first exit at {fx:.1f} s" if fx is not None
                                 else "no exit") + f" (needs <= {th.exit_within_s:g} s)")
        check("loop_latency", lat < th.phase1_latency_ms, lat, th.phase1_latency_ms,
              f"avg loop latency {lat:.2f} ms (needs < {th.phase1_latency_ms})")
        cpu = perf["cpu_percent"]["avg"]
        check("cpu", cpu < th.phase1_cpu_percent, cpu, th.phase1_cpu_percent,
              f"avg CPU {cpu:.1f} % (needs < {th.phase1_cpu_percent})")
        mem = perf["memory_mb"]["max"]
        check("memory", mem < th.phase1_memory_mb, mem, th.phase1_memory_mb,
              f"max RSS {mem:.1f} MB (needs < {th.phase1_memory_mb})")
        errors = kpi["guards"]["unhandled_errors"]
        check("no_unhandled_exception", errors == 0, errors, 0, f"{errors} unhandled errors")
        # Runbook §2.1's list, where configured: the test alert reached Telegram, and
        # the metrics endpoint answers. None = not configured, so not checked.
        for name, ok, what in (
                ("telegram_test_alert", (observed or {}).get("telegram_test_alert"),
                 "a Telegram test alert delivered before the run (/notify test or "
                 "`arbops notify test`)"),
                ("metrics_served", (observed or {}).get("metrics_served"),
                 "Prometheus metrics served")):
            if ok is not None:
                check(name, ok, ok, True, f"{what}: {'yes' if ok else 'no'}")
    else:
        # Strategy PnL: the pre-funded coins' price moves are not the strategy's doing.
        pnl = s.get("strategy_pnl_usd", s.get("total_pnl_usd"))
        rt, wr = s["round_trips_completed"], s["win_rate"]
        check("round_trips", rt >= th.min_round_trips, rt, th.min_round_trips,
              f"{rt} round trips (needs >= {th.min_round_trips})")
        check("win_rate", wr >= th.min_win_rate, wr, th.min_win_rate,
              f"win rate {wr:.0%} (needs >= {th.min_win_rate:.0%})")
        check("total_pnl", pnl >= th.min_pnl_usd, pnl, th.min_pnl_usd,
              f"strategy PnL ${pnl:.2f} (needs >= ${th.min_pnl_usd:.2f})")
        check("avg_loop_latency", lat < th.phase2_latency_ms, lat, th.phase2_latency_ms,
              f"avg loop latency {lat:.2f} ms (needs < {th.phase2_latency_ms})")
    return GateResult(phase, all(c["passed"] for c in checks), checks)
