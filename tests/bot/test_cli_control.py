"""The CLI against a real `arbops run` subprocess over the local control channel
(the status JSON contract, exit codes; one engine per data dir; HALTED persists
until reset; REDUCING via pause)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.control_channel import request_sync, socket_path_for
from core.errors import ControlChannelError
from tests.helpers.procs import (
    ArbopsProc,
    arbops_env,
    query,
    read_json,
    run_cli,
    short_data_dir,
    table_count,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

STATUS_KEYS = {"mode", "trading_state", "armed", "arm_cap_usd", "arm_expires_at", "run",
               "halted_reason", "rss_mb"}
RUN_KEYS = {"phase", "universe", "started_at", "round_trips", "pnl_usd"}


@pytest.fixture
def data_dir():
    with short_data_dir("aoctl") as d:
        yield d


def _engine_status(data_dir: Path) -> dict | None:
    """The running engine's status (straight over the socket), or None."""
    try:
        reply = request_sync(socket_path_for(data_dir), "status", timeout=2.0)
    except (ControlChannelError, OSError):
        return None
    return reply.get("result") if reply.get("ok") else None


def start_run(data_dir: Path, kpi: Path, seconds: int = 60, **env: str) -> ArbopsProc:
    proc = ArbopsProc(
        ["run", "--phase", "1", "--duration-seconds", str(seconds), "--kpi-output-path", str(kpi)],
        data_dir, arbops_env(data_dir, env), name="run",
    )
    wait_until(
        lambda: (not proc.alive()) or ((s := _engine_status(data_dir)) and s.get("run")),
        20, what="the engine to report a run", on_timeout=proc.output,
    )
    assert proc.alive(), f"run exited early ({proc.returncode})\n{proc.output()}"
    return proc


def status_json(data_dir: Path) -> dict:
    res = run_cli(["status", "--json"], data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout)  # exactly one JSON object, nothing else on stdout


def stop_and_wait(proc: ArbopsProc, data_dir: Path, timeout: float = 15) -> int:
    res = run_cli(["stop"], data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    return proc.wait(timeout)


def test_status_json_of_a_running_engine_then_stop(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    with start_run(data_dir, kpi) as proc:
        status = status_json(data_dir)
        assert status.keys() >= STATUS_KEYS, status.keys()
        assert status["mode"] == "paper"
        assert status["trading_state"] == "ACTIVE"
        assert status["armed"] is False
        assert status["halted_reason"] is None
        assert status["engine_running"] is True
        assert isinstance(status["rss_mb"], float | int) and 10 < status["rss_mb"] < 500
        run = status["run"]
        assert run.keys() >= RUN_KEYS, run.keys()
        assert run["phase"] == 1
        assert run["universe"] == "top10"
        assert run["started_at"].startswith("20")
        assert isinstance(run["round_trips"], int)
        assert isinstance(run["pnl_usd"], float | int)
        # the journal agrees on the run being open
        rows = query(data_dir, "SELECT run_id, status FROM runs")
        assert rows == [{"run_id": run["run_id"], "status": "running"}]

        code = stop_and_wait(proc, data_dir)
        assert code == 0, proc.output()
        data = read_json(kpi)
        assert data is not None, proc.output()
        assert data["final"] is True
        assert data["summary"]["exit_code"] == 0
        assert data["summary"]["kill_switch_triggered"] is False
        assert "stop" in data["summary"]["stop_reason"]
        assert data["trading"]["open_positions"] == []
        assert data["run"]["run_id"] == run["run_id"]
        assert "Traceback" not in proc.stdout() + proc.stderr()

    after = status_json(data_dir)
    assert after["engine_running"] is False
    assert after["trading_state"] == "ACTIVE"  # a graceful stop leaves no HALT
    assert after["run"] is None
    assert after["last_run"]["run_id"] == run["run_id"]
    assert after["last_run"]["exit_code"] == 0
    assert not socket_path_for(data_dir).exists()


def test_second_run_on_the_same_data_dir_is_refused(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    second_kpi = data_dir / "out2" / "kpi.json"
    with start_run(data_dir, kpi) as first:
        res = run_cli(["run", "--duration-seconds", "5", "--kpi-output-path", str(second_kpi)],
                      data_dir, timeout=30)
        out = res.stdout + res.stderr
        assert res.returncode == 2, out
        assert "already" in res.stderr, res.stderr
        assert "Traceback" not in out
        assert not second_kpi.exists()
        assert not (data_dir / "out2").exists() or list((data_dir / "out2").iterdir()) == []
        assert not (data_dir / "kpi").exists()  # no default-path KPI either
        assert table_count(data_dir, "runs") == 1
        assert first.alive()
        # the first engine still answers
        assert status_json(data_dir)["engine_running"] is True
        assert stop_and_wait(first, data_dir) == 0, first.output()


def test_second_run_refusal_names_the_holder_pid(data_dir):
    with start_run(data_dir, data_dir / "out" / "kpi.json") as first:
        try:
            res = run_cli(["run", "--duration-seconds", "5"], data_dir, timeout=30)
            assert res.returncode == 2, res.stdout + res.stderr
            assert f"pid={first.pid}" in res.stderr or f"pid {first.pid}" in res.stderr, \
                res.stderr
        finally:
            run_cli(["stop"], data_dir)
            first.wait(15)


def test_offline_status_kill_refuses_run_until_reset(data_dir):
    status = status_json(data_dir)
    assert status.keys() >= STATUS_KEYS
    assert status["engine_running"] is False
    assert status["trading_state"] == "ACTIVE"
    assert status["run"] is None

    import asyncio

    from core.journal.sqlite_store import SqliteStore

    async def journal() -> None:  # a data dir an engine has used
        await (await SqliteStore.open(data_dir / "arbops.sqlite3")).close()

    asyncio.run(journal())
    res = run_cli(["kill", "--reason", "e2e-test"], data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "HALTED" in res.stdout

    status = status_json(data_dir)
    assert status["trading_state"] == "HALTED"
    assert "e2e-test" in status["halted_reason"]

    kpi = data_dir / "out" / "kpi.json"
    res = run_cli(["run", "--duration-seconds", "5", "--kpi-output-path", str(kpi)], data_dir)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "HALTED" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert not kpi.exists()
    assert table_count(data_dir, "runs") == 0

    # reset needs its confirmation phrase; without a TTY it is refused and nothing changes
    res = run_cli(["reset"], data_dir)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--confirm RESET" in res.stderr
    res = run_cli(["reset", "--confirm", "WRONG"], data_dir)
    assert res.returncode == 2, res.stdout + res.stderr
    assert status_json(data_dir)["trading_state"] == "HALTED"

    res = run_cli(["reset", "--confirm", "RESET"], data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "ACTIVE" in res.stdout
    status = status_json(data_dir)
    assert status["trading_state"] == "ACTIVE"
    assert status["halted_reason"] is None


def test_pause_shows_reducing_and_resume_without_confirmation_is_refused(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    with start_run(data_dir, kpi) as proc:
        res = run_cli(["pause", "--reason", "e2e"], data_dir)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "REDUCING" in res.stdout
        assert status_json(data_dir)["trading_state"] == "REDUCING"

        # resume adds risk: it needs the typed phrase, and stdin is not a terminal here
        res = run_cli(["resume"], data_dir)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "confirm" in res.stderr.lower()
        assert "Traceback" not in res.stdout + res.stderr
        assert status_json(data_dir)["trading_state"] == "REDUCING"

        assert stop_and_wait(proc, data_dir) == 0, proc.output()
        data = read_json(kpi)
        assert data is not None and data["final"] is True


def test_resume_with_the_confirmation_flag_from_a_script(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    with start_run(data_dir, kpi) as proc:
        try:
            assert run_cli(["pause"], data_dir).returncode == 0
            res = run_cli(["resume", "--confirm", "RESUME"], data_dir)
            assert res.returncode == 0, res.stdout + res.stderr
            assert status_json(data_dir)["trading_state"] == "ACTIVE"
        finally:
            run_cli(["stop"], data_dir)
            proc.wait(15)


def test_pause_with_no_engine_fails_cleanly(data_dir):
    res = run_cli(["pause"], data_dir)
    out = res.stdout + res.stderr
    assert "Traceback" not in out, out
    assert res.returncode in (1, 2)
    assert "not running" in res.stderr or "no engine" in res.stderr


def test_stop_with_no_engine_fails_cleanly(data_dir):
    res = run_cli(["stop"], data_dir)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "no engine is running" in res.stderr
    assert "Traceback" not in res.stdout + res.stderr


def test_stop_twice_is_graceful_like_telegrams_stop(data_dir):
    """`arbops stop` typed twice (issue: the socket used to call the escalating stop):
    the second one says the run is already closing, and the run still ends as a
    graceful stop - exit 0, no kill switch, nothing left open, no HALT."""
    kpi = data_dir / "out" / "kpi.json"
    with start_run(data_dir, kpi) as proc:
        first = run_cli(["stop", "--reason", "first"], data_dir)
        second = run_cli(["stop", "--reason", "second"], data_dir)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "closing" in first.stdout
        if second.returncode == 0:  # the run may already be gone when the second arrives
            assert "already closing" in second.stdout
        else:
            assert second.returncode == 1 and "no " in second.stderr, second.stderr
        assert proc.wait(20) == 0, proc.output()
    data = read_json(kpi)
    assert data["summary"]["kill_switch_triggered"] is False
    assert data["summary"]["exit_code"] == 0
    assert "emergency" not in str(data["summary"]["stop_reason"])
    assert status_json(data_dir)["trading_state"] == "ACTIVE"
