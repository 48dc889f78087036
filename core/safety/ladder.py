"""Ramp-up ladder (R-S4): PAPER phase 1 -> LIVE 1 -> LIVE 2 -> LIVE 3.

The source of truth is the journal: the `runs` table (mode, phase, status, gate_json,
ended_at) plus events: `kill`, `ladder_rollback` (back to paper) and `ladder_override`
(an admin's audited exception). Nothing here keeps its own ladder state, so a restart,
a second surface or a hand-edited run cannot disagree with it.

`decide()` is pure (rows + now in, decision out); `Ladder` only reads the store.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from core.domain.journal_kinds import EventKind
from core.ports import JournalStore
from core.trading.phases import HOURLY_S, GateResult, evaluate_gate

WINDOW_S = 24 * 3600.0
RESET_EVENTS = (EventKind.KILLED, EventKind.LADDER_ROLLED_BACK)
OVERRIDE_EVENT = EventKind.LADDER_OVERRIDDEN


@dataclass(frozen=True, slots=True)
class LadderDecision:
    phase: int
    allowed: bool
    reason: str
    via_override: bool = False


@dataclass(slots=True)
class LadderStatus:
    decisions: dict[int, LadderDecision]
    reset_at: float | None
    reset_reason: str | None
    passed: dict[str, float] = field(default_factory=dict)  # "paper1"/"live2" -> ended_at

    @property
    def next_phase(self) -> int | None:
        allowed = [p for p, d in self.decisions.items() if d.allowed]
        return max(allowed) if allowed else None

    def as_dict(self) -> dict[str, Any]:
        return {"next_phase": self.next_phase, "reset_at": self.reset_at,
                "reset_reason": self.reset_reason, "passed": self.passed,
                "phases": {p: {"allowed": d.allowed, "reason": d.reason,
                               "via_override": d.via_override}
                           for p, d in self.decisions.items()}}


def gate_passed(row: dict[str, Any]) -> bool:
    """A run passed when it completed, ended, and its stored gate says PASS."""
    if row.get("status") != "completed" or row.get("ended_at") is None:
        return False
    raw = row.get("gate_json")
    if not raw:
        return False
    try:
        gate = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return False
    return isinstance(gate, dict) and gate.get("result") == "PASS"


def _last_reset(runs: list[dict[str, Any]], events: list[dict[str, Any]]
                ) -> tuple[float | None, str | None]:
    # A killed live run resets the ladder even if the kill event row is missing.
    points: list[tuple[float, str]] = [(float(e["ts"]), str(e["kind"])) for e in events
                                       if e["kind"] in RESET_EVENTS]
    points += [(float(r.get("ended_at") or r["started_at"]), f"run {r['run_id']} killed")
               for r in runs if r.get("status") == "killed"]
    if not points:
        return None, None
    ts, why = max(points)
    return ts, why


def decide(phase: int, runs: list[dict[str, Any]], events: list[dict[str, Any]], now: float,
           window_s: float = WINDOW_S) -> LadderDecision:
    """May a LIVE run of `phase` start now? Every reason names what is missing."""
    if phase not in (1, 2, 3):
        return LadderDecision(phase, False, f"unknown phase {phase}")
    reset_at, reset_why = _last_reset(runs, events)
    fresh = [r for r in runs if gate_passed(r) and now - float(r["ended_at"]) <= window_s]
    override = _override(phase, runs, events, now, window_s, reset_at)
    if phase == 1:
        ok = any(r["mode"] == "paper" and int(r["phase"]) == 1 for r in fresh)
        need = "a passed PAPER phase 1"
    else:
        # The predecessor must come after the last kill/rollback: those send the ladder
        # back to live phase 1.
        ok = any(r["mode"] == "live" and int(r["phase"]) == phase - 1
                 and (reset_at is None or float(r["ended_at"]) > reset_at) for r in fresh)
        need = f"a passed LIVE phase {phase - 1}"
        if reset_at is not None and not ok:
            need += f" after the ladder reset ({reset_why})"
    if ok:
        return LadderDecision(phase, True, f"{need} within {window_s / 3600:g} h")
    if override is not None:
        return LadderDecision(phase, True, f"admin override by {override}", via_override=True)
    return LadderDecision(phase, False, f"live phase {phase} needs {need} within the last "
                                        f"{window_s / 3600:g} h")


def _override(phase: int, runs: list[dict[str, Any]], events: list[dict[str, Any]],
              now: float, window_s: float, reset_at: float | None) -> str | None:
    """An unused override for this phase within the window and after the last reset.

    One override = one start; a kill or rollback after it cancels it (fail closed).
    """
    for e in sorted(events, key=lambda e: float(e["ts"]), reverse=True):
        if e["kind"] != OVERRIDE_EVENT:
            continue
        p = e["payload"] if isinstance(e["payload"], dict) else json.loads(e["payload"])
        if int(p.get("phase", 0)) != phase or now - float(e["ts"]) > window_s:
            continue
        if reset_at is not None and float(e["ts"]) <= reset_at:
            return None
        used = any(r["mode"] == "live" and int(r["phase"]) == phase
                   and float(r["started_at"]) >= float(e["ts"]) for r in runs)
        return None if used else str(p.get("actor", "?"))
    return None


def status(runs: list[dict[str, Any]], events: list[dict[str, Any]], now: float,
           window_s: float = WINDOW_S) -> LadderStatus:
    reset_at, why = _last_reset(runs, events)
    passed: dict[str, float] = {}
    for r in runs:
        if gate_passed(r):
            key = f"{r['mode']}{r['phase']}"
            passed[key] = max(passed.get(key, 0.0), float(r["ended_at"]))
    return LadderStatus({p: decide(p, runs, events, now, window_s) for p in (1, 2, 3)},
                        reset_at, why, passed)


# --- phase 3 continuous mode: the gate every hour (the scheduler lives elsewhere) ----
def hourly_gate_due(last_eval_mono: float | None, now_mono: float,
                    interval_s: float = HOURLY_S) -> bool:
    return last_eval_mono is None or now_mono - last_eval_mono >= interval_s


def evaluate_hourly(kpi_last_hour: dict[str, Any]) -> GateResult:
    """Phase 3's gate over the last hour's KPI (the phase-2 criteria, R-P2).

    A FAIL means: stop the run gracefully and record a `ladder_rollback`; the caller does it.
    """
    result = evaluate_gate(3, kpi_last_hour)
    return result


class Ladder:
    """Reads runs and events from the journal and applies `decide`."""

    def __init__(self, store: JournalStore, window_s: float = WINDOW_S) -> None:
        self.store = store
        self.window_s = window_s

    async def _rows(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        runs = await self.store.runs()
        events: list[dict[str, Any]] = []
        for kind in (*RESET_EVENTS, OVERRIDE_EVENT):
            events += await self.store.events(kind=kind, limit=1000)
        return runs, events

    async def decide(self, phase: int, now: float) -> LadderDecision:
        runs, events = await self._rows()
        return decide(phase, runs, events, now, self.window_s)

    async def status(self, now: float) -> LadderStatus:
        runs, events = await self._rows()
        return status(runs, events, now, self.window_s)

    async def override(self, phase: int, actor: str, now: float, reason: str = "") -> None:
        """Audited: the two-step confirmation is the surface's job, the record is ours."""
        if phase not in (1, 2, 3):
            raise ValueError(f"unknown phase {phase}")
        await self.store.record_event(now, None, OVERRIDE_EVENT,
                                      {"phase": phase, "actor": actor, "reason": reason})

    async def rollback(self, actor: str, now: float, reason: str = "") -> None:
        await self.store.record_event(now, None, EventKind.LADDER_ROLLED_BACK,
                                      {"actor": actor, "reason": reason})
