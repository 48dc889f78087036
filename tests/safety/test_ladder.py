"""R-S4 ramp-up ladder: pure decisions over runs and events, plus the journal reader."""
from __future__ import annotations

import json

from core.journal.sqlite_store import SqliteStore
from core.safety.ladder import Ladder, decide, evaluate_hourly, hourly_gate_due, status

NOW = 1_767_225_600.0
H = 3600.0
PASS = json.dumps({"result": "PASS"})
FAIL = json.dumps({"result": "FAIL"})


def run(mode, phase, ended_ago, gate=PASS, status="completed", rid=None):
    ended = NOW - ended_ago
    return {"run_id": rid or f"{mode}{phase}-{ended_ago}", "mode": mode, "phase": phase,
            "status": status, "started_at": ended - 300, "ended_at": ended, "gate_json": gate}


def ev(kind, ago, **payload):
    return {"kind": kind, "ts": NOW - ago, "payload": payload, "run_id": None}


def allowed(phase, runs, events=()):
    return decide(phase, list(runs), list(events), NOW).allowed


def test_empty_journal_allows_nothing():
    d = decide(1, [], [], NOW)
    assert not d.allowed and "PAPER phase 1" in d.reason
    assert not allowed(2, []) and not allowed(3, [])


def test_paper_then_live_steps():
    runs = [run("paper", 1, 2 * H)]
    assert allowed(1, runs) and not allowed(2, runs)
    runs.append(run("live", 1, H))
    assert allowed(2, runs) and not allowed(3, runs)
    runs.append(run("live", 2, 0.5 * H))
    assert allowed(3, runs)


def test_window_24h():
    assert allowed(1, [run("paper", 1, 24 * H)])
    assert not allowed(1, [run("paper", 1, 24 * H + 1)])
    assert not allowed(2, [run("paper", 1, H), run("live", 1, 25 * H)])


def test_failed_gate_or_unclean_run_does_not_count():
    assert not allowed(1, [run("paper", 1, H, gate=FAIL)])
    assert not allowed(1, [run("paper", 1, H, gate=None)])
    assert not allowed(1, [run("paper", 1, H, status="killed")])
    assert not allowed(2, [run("paper", 1, H), run("paper", 1, H)])  # paper never climbs


def test_kill_or_rollback_resets_to_live_phase_1():
    runs = [run("paper", 1, 3 * H), run("live", 1, 2 * H), run("live", 2, H)]
    assert allowed(3, runs)
    for reset in (ev("killed", 0.5 * H, reason="x"), ev("ladder_rolled_back", 0.5 * H, actor="op")):
        assert not allowed(2, runs, [reset]) and not allowed(3, runs, [reset])
        assert allowed(1, runs, [reset])
    killed = run("live", 1, 0.2 * H, status="killed", gate=None)
    assert not allowed(2, [*runs, killed]) and allowed(1, [*runs, killed])
    # a live 1 passed after the reset climbs again
    assert allowed(2, [*runs, run("live", 1, 0.1 * H)], [ev("killed", 0.5 * H)])


def test_override_is_single_use():
    runs = [run("paper", 1, H)]
    o = ev("ladder_overridden", 0.5 * H, phase=3, actor="admin:1")
    d = decide(3, runs, [o], NOW)
    assert d.allowed and d.via_override and "admin:1" in d.reason
    used = {**run("live", 3, 0.1 * H), "started_at": NOW - 0.2 * H}
    assert not allowed(3, [*runs, used], [o])
    assert not allowed(2, runs, [o])  # the override names one phase


def test_status_and_hourly_gate():
    st = status([run("paper", 1, H)], [], NOW)
    assert st.next_phase == 1 and st.as_dict()["phases"][2]["allowed"] is False
    assert hourly_gate_due(None, 0.0)
    assert not hourly_gate_due(100.0, 100.0 + 3599)
    assert hourly_gate_due(100.0, 100.0 + 3600)
    kpi = {"summary": {"round_trips_completed": 6, "win_rate": 0.6, "total_pnl_usd": 1.0},
           "performance": {"loop_latency_ms": {"avg": 3.0}}, "trading": {}}
    assert evaluate_hourly(kpi).passed
    kpi["summary"]["win_rate"] = 0.3
    assert evaluate_hourly(kpi).reasons == ["win rate 30% (needs >= 50%)"]


async def test_ladder_reads_the_journal(tmp_path):
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        ladder = Ladder(store)
        await store.create_run("p1", "paper", 1, "top10", "sim", NOW - 600)
        await store.finish_run("p1", NOW - 300, "completed", None, 0, None, gate_json=PASS)
        assert (await ladder.decide(1, NOW)).allowed
        assert not (await ladder.decide(2, NOW)).allowed
        await ladder.override(2, "admin:7", NOW - 10, "tested on paper twice")
        d = await ladder.decide(2, NOW)
        assert d.allowed and d.via_override
        await ladder.rollback("op", NOW - 5)
        st = await ladder.status(NOW)
        assert st.reset_reason == "ladder_rolled_back"
        assert not st.decisions[2].allowed  # a rollback cancels an earlier override
    finally:
        await store.close()
