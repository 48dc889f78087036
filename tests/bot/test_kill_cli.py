"""`arbops kill` end to end (R-K1, R-K2, R-K5, R-S7): real subprocesses, real signals.

`arbops serve` runs the engine; `arbops run` starts a phase inside it (it delegates
to the service and follows it). The serve's paper orders fill 30 % per market step
(ARBOPS_PAPER_FILL_RATIO=0.3) so the kill lands while a position is open and an
order is partly filled. Within 10 s of `arbops kill` the final KPI, the incident
report and a flat journal must be there; HALTED survives a restart of the serve
until `arbops reset`. `arbops kill` with no service running halts on its own.

The CLI kill latency (process start -> "HALTED" printed) is measured against a
running serve and printed (not asserted): run pytest with -s to see it.
"""
from __future__ import annotations

import json
import signal
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from core.control_channel import request_sync, socket_path_for
from core.errors import ControlChannelError
from tests.helpers.procs import (
    ARBOPS,
    ArbopsProc,
    arbops_env,
    query,
    query_one,
    read_json,
    run_cli,
    short_data_dir,
    wait_until,
)

pytestmark = [pytest.mark.slow]

TRADING_ENV = {
    "ARBOPS_PAPER_FILL_RATIO": "0.3",
    "ARBOPS_ORDER_TIMEOUT_S": "5",
    "ARBOPS_SIM_JUMP_RATE_PER_MIN": "6",
}
KILL_DEADLINE_S = 10.0
INCIDENT_SECTIONS = ("Time (UTC)", "## Symptom", "## Actions and results", "## Log lines",
                     "## Cause", "## Prevention")


@pytest.fixture
def data_dir():
    with short_data_dir("aokill") as d:
        yield d


def start_serve(data_dir: Path, name: str) -> ArbopsProc:
    proc = ArbopsProc(["serve"], data_dir, arbops_env(data_dir, TRADING_ENV), name=name)
    try:
        wait_until(lambda: _serving(data_dir, proc), 20, interval=0.05,
                   what="`arbops serve` answering on its control socket", on_timeout=proc.output)
        status = status_json(data_dir)
        assert status["engine_running"] is True, status
    except BaseException:
        proc.close()
        raise
    return proc


def _serving(data_dir: Path, proc: ArbopsProc) -> bool:
    if not proc.alive():
        raise AssertionError(f"serve exited early ({proc.returncode})\n{proc.output()}")
    try:
        reply = request_sync(socket_path_for(data_dir), "progress", {},
                             timeout=2.0)
    except (ControlChannelError, OSError):
        return False
    return bool(reply.get("ok"))


def status_json(data_dir: Path) -> dict[str, Any]:
    res = run_cli(["status", "--json"], data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def stop_serve(proc: ArbopsProc) -> int:
    proc.signal(signal.SIGTERM)
    return proc.wait(15)


def open_position_and_partial_order(data_dir: Path, *procs: ArbopsProc) -> dict[str, Any] | None:
    for p in procs:
        if not p.alive():
            raise AssertionError(f"{p.args} exited early ({p.returncode})\n{p.output()}")
    pos = query_one(data_dir, "SELECT position_id FROM positions WHERE state = 'open' LIMIT 1")
    if not pos:
        return None
    intents = query(data_dir, "SELECT client_order_id, amount, filled FROM order_intents "
                              "WHERE state = 'OPEN'") or []
    partial = [i for i in intents
               if i["amount"] is not None and 0 < float(i["filled"]) < float(i["amount"])]
    return {"position": pos, "partial": partial[0]} if partial else None


def live_journal(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        "intents": query(data_dir, "SELECT client_order_id, state, filled, amount "
                                   "FROM order_intents WHERE state IN ('OPEN', 'PENDING')") or [],
        "positions": query(data_dir, "SELECT position_id, state FROM positions "
                                     "WHERE state IN ('open', 'entering', 'exiting')") or [],
    }


def final_killed_kpi(data_dir: Path, run_id: str) -> dict[str, Any] | None:
    data = read_json(data_dir / "kpi" / f"{run_id}.json")
    # the final file is rewritten once the incident report exists (its last write)
    if (data and data["final"] and data["summary"]["kill_switch_triggered"]
            and data.get("kill", {}).get("incident")):
        return data
    return None


def incident_files(data_dir: Path) -> list[Path]:
    d = data_dir / "incidents"
    return sorted(d.glob("*.md")) if d.exists() else []


def timed_kill(data_dir: Path, reason: str) -> tuple[float, int, str]:
    """`arbops kill`: seconds from process start to "HALTED" on stdout, exit code, output."""
    t0 = time.monotonic()
    proc = subprocess.Popen([ARBOPS, "kill", "--reason", reason], env=arbops_env(data_dir),
                            cwd=str(data_dir), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        latency = time.monotonic() - t0
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = first + out + err
    assert "HALTED" in first, text
    return latency, proc.returncode, text


# --- kill against a running serve with a phase in flight ---------------------------------
@pytest.mark.timeout(150)
def test_kill_through_a_running_serve(data_dir: Path) -> None:
    serve = start_serve(data_dir, "serve1")
    runner: ArbopsProc | None = None
    try:
        runner = ArbopsProc(["run", "--phase", "1", "--duration-seconds", "120"], data_dir,
                            name="run")
        seen = wait_until(lambda: open_position_and_partial_order(data_dir, serve, runner),
                          60, interval=0.05,
                          what="an open position and a partly filled order",
                          on_timeout=lambda: serve.output() + runner.output())
        run_row = query_one(data_dir, "SELECT run_id FROM runs WHERE ended_at IS NULL")
        assert run_row, "the phase runs inside the serve"
        run_id = run_row["run_id"]

        mid_run_latency, code, text = timed_kill(data_dir, "test")
        sent = time.monotonic() - mid_run_latency
        assert code == 0, text
        assert "HALTED" in text and "cancelling and flattening" in text
        assert mid_run_latency < 5.0, f"`arbops kill` took {mid_run_latency:.2f} s\n{text}"

        kpi = wait_until(lambda: final_killed_kpi(data_dir, run_id), KILL_DEADLINE_S,
                         interval=0.05, what="the final KPI with kill_switch_triggered",
                         on_timeout=serve.output)
        wait_until(lambda: incident_files(data_dir), KILL_DEADLINE_S, interval=0.05,
                   what="the incident report")
        journal = wait_until(
            lambda: not any(live_journal(data_dir).values()),
            max(0.5, KILL_DEADLINE_S - (time.monotonic() - sent)), interval=0.1,
            what="a journal with no working order and no live position",
            on_timeout=lambda: json.dumps(live_journal(data_dir)))
        assert journal
        status = status_json(data_dir)
        assert time.monotonic() - sent <= KILL_DEADLINE_S, "all of this within 10 s of the kill"
        assert status["trading_state"] == "HALTED"
        assert status["engine_running"] is True and status["run"] is None
        assert "test" in (status["halted_reason"] or "")

        # the KPI
        summary = kpi["summary"]
        assert summary["exit_code"] == 1 and summary["kill_switch_triggered"] is True
        assert "kill: test" in summary["stop_reason"]
        assert kpi["trading"]["still_open_on_venues"] == []
        assert kpi["guards"]["trading_state"] == "HALTED"
        steps = {s["step"]: s for s in kpi["kill"]["steps"]}
        for name in ("halt", "persist_flag", "cancel_all", "verify_flat", "final_kpi", "notify"):
            assert name in steps and steps[name]["ok"], (name, kpi["kill"]["steps"])
        # the partly filled order was cancelled (or filled), not left working
        partial = query_one(data_dir, "SELECT state FROM order_intents WHERE client_order_id = ?",
                            (seen["partial"]["client_order_id"],))
        assert partial["state"] in ("CANCELED", "FILLED")
        pos = query_one(data_dir, "SELECT state FROM positions WHERE position_id = ?",
                        (seen["position"]["position_id"],))
        assert pos["state"] in ("closed", "flat")
        run = query_one(data_dir, "SELECT status, exit_code FROM runs WHERE run_id = ?", (run_id,))
        assert run == {"status": "killed", "exit_code": 1}
        flag = query_one(data_dir, "SELECT value FROM flags WHERE key = 'trading_state'")
        assert flag and flag["value"].startswith("HALTED")

        # the incident report
        files = incident_files(data_dir)
        assert len(files) == 1 and files[0].name.endswith(f"_{run_id}.md"), files
        text_md = files[0].read_text()
        for section in INCIDENT_SECTIONS:
            assert section in text_md, section

        # the follower sees the run end killed
        assert runner.wait(10) == 1, runner.output()

        # kill again: harmless
        again = run_cli(["kill", "--reason", "again"], data_dir)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "HALTED" in again.stdout
        assert len(incident_files(data_dir)) == 1
        assert status_json(data_dir)["trading_state"] == "HALTED"
        assert serve.alive()

        # a restart keeps HALTED
        assert stop_serve(serve) == 0, serve.output()
        assert "Traceback" not in serve.stdout() + serve.stderr()
    finally:
        if runner is not None:
            runner.close()
        serve.close()

    serve2 = start_serve(data_dir, "serve2")
    try:
        status = status_json(data_dir)
        assert status["trading_state"] == "HALTED" and status["engine_running"] is True
        refused = run_cli(["run", "--duration-seconds", "5"], data_dir)
        assert refused.returncode == 2 and "HALTED" in refused.stderr, refused.stderr

        reset = run_cli(["reset", "--confirm", "RESET"], data_dir)
        assert reset.returncode == 0, reset.stdout + reset.stderr
        assert "ACTIVE" in reset.stdout
        assert status_json(data_dir)["trading_state"] == "ACTIVE"
        flag = query_one(data_dir, "SELECT value FROM flags WHERE key = 'trading_state'")
        assert not (flag and flag["value"].startswith("HALTED"))

        # kill latency against a running serve: 5 fresh kills (each followed by a reset)
        latencies = []
        for i in range(5):
            latency, code, text = timed_kill(data_dir, f"latency {i}")
            assert code == 0, text
            latencies.append(latency)
            reset = run_cli(["reset", "--confirm", "RESET"], data_dir)
            assert reset.returncode == 0, reset.stdout + reset.stderr
        print(f"\nCLI kill latency (process start -> 'HALTED' printed), running serve: "
              f"median {statistics.median(latencies) * 1000:.0f} ms over 5 "
              f"({', '.join(f'{x * 1000:.0f}' for x in latencies)} ms); "
              f"mid-run kill above: {mid_run_latency * 1000:.0f} ms")
        assert stop_serve(serve2) == 0, serve2.output()
    finally:
        serve2.close()


# --- kill with no service running ---------------------------------------------------------
def _journal(data_dir: Path) -> None:
    """A data dir an engine has used: its journal exists."""
    import asyncio

    from core.journal.sqlite_store import SqliteStore

    async def make() -> None:
        await (await SqliteStore.open(data_dir / "arbops.sqlite3")).close()

    asyncio.run(make())


@pytest.mark.timeout(60)
def test_kill_with_no_service_running_halts_on_its_own(data_dir: Path) -> None:
    _journal(data_dir)
    res = run_cli(["kill", "--reason", "offline test"], data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "HALTED" in res.stdout and "no engine was running" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr

    flag = query_one(data_dir, "SELECT value FROM flags WHERE key = 'trading_state'")
    assert flag and flag["value"].startswith("HALTED") and "offline test" in flag["value"]
    files = incident_files(data_dir)
    assert len(files) == 1, files
    text = files[0].read_text()
    for section in INCIDENT_SECTIONS:
        assert section in text, section
    assert "offline test" in text

    status = status_json(data_dir)
    assert status["trading_state"] == "HALTED" and status["engine_running"] is False

    refused = run_cli(["run", "--duration-seconds", "5"], data_dir)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "HALTED" in refused.stderr
    assert query(data_dir, "SELECT run_id FROM runs") == []

    again = run_cli(["kill", "--reason", "offline again"], data_dir)
    assert again.returncode == 0 and "HALTED" in again.stdout
    assert len(incident_files(data_dir)) == 1  # already HALTED: no second report


@pytest.mark.timeout(60)
def test_kill_where_nothing_ever_ran_says_so_and_exits_1(data_dir: Path) -> None:
    """No engine registered and no journal: the CLI never claims it halted an engine,
    but the HALT is written to the data dir all the same (fail closed)."""
    res = run_cli(["kill", "--reason", "nothing here"], data_dir)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no engine found" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    assert not (data_dir / "arbops.sqlite3").exists()
    status = status_json(data_dir)
    assert status["trading_state"] == "HALTED" and "nothing here" in status["halted_reason"]
