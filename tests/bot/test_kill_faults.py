"""A kill that cannot be lost (R-K1, R-K2, R-K6): each ordinary fault that used to make
`arbops kill` fail open, reproduced against a real engine process, real SQLite and
real signals. Each asserts the engine ends HALTED, the HALT survives a restart, and
nothing is claimed that did not happen."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from core.control_channel import request_sync, socket_path_for
from core.errors import ControlChannelError
from tests.helpers.procs import (
    ArbopsProc,
    arbops_env,
    query_one,
    read_json,
    run_cli,
    short_data_dir,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

TRADING = {"ARBOPS_PAPER_FILL_RATIO": "0.3", "ARBOPS_ORDER_TIMEOUT_S": "5",
           "ARBOPS_SIM_JUMP_RATE_PER_MIN": "6"}


@pytest.fixture
def data_dir():
    with short_data_dir("aokf") as d:
        yield d


def _running(data_dir: Path, proc: ArbopsProc) -> bool:
    if not proc.alive():
        raise AssertionError(f"engine exited early ({proc.returncode})\n{proc.output()}")
    try:
        reply = request_sync(socket_path_for(data_dir), "progress", {}, timeout=2.0)
    except (ControlChannelError, OSError):
        return False
    return bool(reply.get("ok") and reply["result"].get("run"))


def start_run(data_dir: Path, seconds: int = 120, **env: str) -> ArbopsProc:
    kpi = data_dir / "out" / "kpi.json"
    proc = ArbopsProc(["run", "--phase", "1", "--duration-seconds", str(seconds),
                       "--kpi-output-path", str(kpi)], data_dir,
                      arbops_env(data_dir, {**TRADING, **env}), name="run")
    try:
        wait_until(lambda: _running(data_dir, proc), 30, what="the run to start",
                   on_timeout=proc.output)
    except BaseException:
        proc.close()
        raise
    return proc


def status(data_dir: Path, **kw: Any) -> dict[str, Any]:
    res = run_cli(["status", "--json"], data_dir, **kw)
    assert res.returncode == 0, res.stdout + res.stderr
    data: dict[str, Any] = json.loads(res.stdout)
    return data


def kpi(data_dir: Path) -> dict[str, Any] | None:
    return read_json(data_dir / "out" / "kpi.json")


def assert_halted_after_restart(data_dir: Path, needle: str) -> None:
    """A new process on the same data dir starts HALTED and refuses a run."""
    st = status(data_dir)
    assert st["engine_running"] is False and st["trading_state"] == "HALTED", st
    assert needle in (st["halted_reason"] or ""), st
    refused = run_cli(["run", "--duration-seconds", "5"], data_dir)
    assert refused.returncode == 2 and "HALTED" in refused.stderr, refused.stderr


def test_kill_typed_in_another_directory_reaches_the_engine(data_dir: Path) -> None:
    """No ARBOPS_DATA_DIR, a different working directory: the engine is found through
    the user's registry, and no ./data appears where the command was typed."""
    elsewhere = data_dir / "elsewhere"
    elsewhere.mkdir()
    with start_run(data_dir) as proc:
        env = arbops_env(data_dir)
        del env["ARBOPS_DATA_DIR"]
        res = run_cli(["kill", "--reason", "from elsewhere"], elsewhere, env, cwd=elsewhere)
        assert res.returncode == 0, res.stdout + res.stderr
        assert f"HALTED {data_dir}: engine answered" in res.stdout, res.stdout
        assert proc.wait(30) == 1, proc.output()
    assert not (elsewhere / "data").exists() and list(elsewhere.iterdir()) == []
    data = kpi(data_dir)
    assert data and data["summary"]["kill_switch_triggered"] is True
    assert "from elsewhere" in data["kill"]["trigger"]
    assert_halted_after_restart(data_dir, "from elsewhere")


def test_a_malformed_unrelated_setting_warns_and_the_kill_goes_through(data_dir: Path) -> None:
    cwd = data_dir / "cwd"
    cwd.mkdir()
    (cwd / ".env").write_text(f"ARBOPS_DATA_DIR={data_dir}\nARBOPS_TAKE_PROFIT_BPS=10bps\n")
    with start_run(data_dir) as proc:
        env = arbops_env(data_dir)
        del env["ARBOPS_DATA_DIR"]  # only the .env names it
        res = run_cli(["kill", "--reason", "typo in env"], cwd, env, cwd=cwd)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "warning: ignoring ARBOPS_TAKE_PROFIT_BPS" in res.stderr, res.stderr
        assert "engine answered" in res.stdout
        assert proc.wait(30) == 1, proc.output()
    assert_halted_after_restart(data_dir, "typo in env")


def test_a_frozen_engine_is_stopped_and_halted_within_ten_seconds(data_dir: Path) -> None:
    """SIGSTOP: the socket never answers. The CLI writes HALT, stops the process (its pid
    from the instance lock), does the engine's part itself and says what it did."""
    with start_run(data_dir) as proc:
        os.kill(proc.pid, signal.SIGSTOP)
        t0 = time.monotonic()
        res = run_cli(["kill", "--reason", "frozen"], data_dir, timeout=30)
        took = time.monotonic() - t0
        out = res.stdout + res.stderr
        assert res.returncode == 0, out
        assert "did not answer" in out and "stopped (SIGKILL)" in out, out
        assert "Traceback" not in out
        assert took < 10.0, took
        assert proc.wait(5) == -signal.SIGKILL
    flag = query_one(data_dir, "SELECT value FROM flags WHERE key = 'trading_state'")
    assert flag and flag["value"].startswith("HALTED") and "frozen" in flag["value"]
    assert list((data_dir / "incidents").glob("*no-engine.md"))
    assert_halted_after_restart(data_dir, "frozen")


class JournalLock:
    """Another process holding the journal's write lock (BEGIN EXCLUSIVE) for a while."""

    def __init__(self, data_dir: Path, seconds: float) -> None:
        code = ("import sqlite3, sys, time\n"
                "c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n"
                "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True)\n"
                "time.sleep(float(sys.argv[2])); c.execute('COMMIT')\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code,
                                      str(data_dir / "arbops.sqlite3"), str(seconds)],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "locked"

    def wait(self) -> None:
        self.proc.wait(60)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def test_a_locked_journal_never_loses_the_kill(data_dir: Path) -> None:
    """The HALT is in the state file at once; the journal takes it once it can; the run
    still ends with its final KPI, incident and closed run row; a restart is HALTED."""
    with start_run(data_dir) as proc:
        lock = JournalLock(data_dir, 8.0)
        t0 = time.monotonic()
        res = run_cli(["kill", "--reason", "journal locked"], data_dir, timeout=30)
        assert res.returncode == 0, res.stdout + res.stderr
        assert time.monotonic() - t0 < 5.0, "the kill waited on the journal"
        assert "kept by: file" in res.stdout and "journal (pending" in res.stdout, res.stdout
        lock.wait()
        assert proc.wait(60) == 1, proc.output()
    data = kpi(data_dir)
    assert data and data["final"] and data["summary"]["kill_switch_triggered"] is True
    assert Path(data["kill"]["incident"]).is_file()
    steps = {s["step"]: s for s in data["kill"]["steps"]}
    assert steps["persist_flag"]["ok"] and "file" in steps["persist_flag"]["detail"]
    run = query_one(data_dir, "SELECT status FROM runs")
    assert run and run["status"] == "killed"
    flag = query_one(data_dir, "SELECT value FROM flags WHERE key = 'trading_state'")
    assert flag and flag["value"].startswith("HALTED")
    assert_halted_after_restart(data_dir, "journal locked")


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_redis_down_neither_blocks_the_kill_nor_serve(data_dir: Path) -> None:
    redis = {"REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0"}
    (data_dir / "arbops.sqlite3").touch()  # a data dir an engine has used
    t0 = time.monotonic()
    res = run_cli(["kill", "--reason", "redis down"], data_dir, arbops_env(data_dir, redis),
                  timeout=30)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "redis: not written" in out and "Traceback" not in out, out
    assert time.monotonic() - t0 < 10.0
    flag = query_one(data_dir, "SELECT value FROM flags WHERE key = 'trading_state'")
    assert flag and flag["value"].startswith("HALTED")
    with ArbopsProc(["serve"], data_dir, arbops_env(data_dir, redis), name="serve") as serve:
        wait_until(lambda: status(data_dir)["engine_running"], 20, what="serve to answer",
                   on_timeout=serve.output)
        assert status(data_dir)["trading_state"] == "HALTED"
        serve.signal(signal.SIGTERM)
        assert serve.wait(15) == 0, serve.output()


def test_an_exception_inside_a_running_phase_is_a_kill(data_dir: Path) -> None:
    """"Too many open files" in the run loop: HALT, the kill procedure, the alert, the
    run row closed as killed; not just a line in the log."""
    kpi_path = data_dir / "out" / "kpi.json"
    res = run_cli(["run", "--phase", "1", "--duration-seconds", "60", "--kpi-output-path",
                   str(kpi_path)], data_dir,
                  arbops_env(data_dir, {**TRADING, "ARBOPS_FAULT_CRASH_AT": "raise:run_loop:40"}),
                  timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout
    data = read_json(kpi_path)
    assert data and data["final"] and data["summary"]["kill_switch_triggered"] is True
    assert "Too many open files" in data["kill"]["trigger"]
    assert Path(data["kill"]["incident"]).is_file()
    run = query_one(data_dir, "SELECT status, exit_code FROM runs")
    assert run == {"status": "killed", "exit_code": 1}
    assert_halted_after_restart(data_dir, "Too many open files")


def test_a_flood_of_idle_control_connections_does_not_starve_the_engine(data_dir: Path) -> None:
    with start_run(data_dir) as proc:
        held = []
        try:
            for _ in range(200):
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(socket_path_for(data_dir)))
                held.append(s)
            time.sleep(1.0)
            assert proc.alive(), proc.output()
        finally:
            for s in held:
                s.close()
        wait_until(lambda: _running(data_dir, proc), 10, what="the engine answering again")
        res = run_cli(["kill", "--reason", "after the flood"], data_dir)
        assert res.returncode == 0 and "engine answered" in res.stdout, res.stdout + res.stderr
        assert proc.wait(30) == 1


def test_the_venues_unreachable_offline_kill_says_what_it_could_not_do(data_dir: Path) -> None:
    port = _closed_port()
    venues = {"UPBIT_API_BASE": f"http://127.0.0.1:{port}",
              "BINANCE_API_BASE": f"http://127.0.0.1:{port}",
              "UPBIT_ACCESS_KEY": "k" * 40, "UPBIT_SECRET_KEY": "s" * 40,
              "BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}
    (data_dir / "arbops.sqlite3").touch()
    t0 = time.monotonic()
    res = run_cli(["kill", "--reason", "venues down"], data_dir, arbops_env(data_dir, venues),
                  timeout=40)
    out = res.stdout + res.stderr
    assert res.returncode == 1, out  # HALTED, but orders may still be open: not a success
    assert "Traceback" not in out
    assert "upbit: FAILED" in out and "binance: FAILED" in out, out
    assert "its orders may still be open" in out
    assert time.monotonic() - t0 < 30.0
    assert_halted_after_restart(data_dir, "venues down")


def test_pause_is_kept_across_a_restart(data_dir: Path) -> None:
    def serve() -> ArbopsProc:
        proc = ArbopsProc(["serve"], data_dir, arbops_env(data_dir), name="serve")
        wait_until(lambda: status(data_dir)["engine_running"], 20, what="serve",
                   on_timeout=proc.output)
        return proc

    with serve() as first:
        assert run_cli(["pause", "--reason", "maintenance"], data_dir).returncode == 0
        first.signal(signal.SIGTERM)
        assert first.wait(15) == 0
    assert status(data_dir)["trading_state"] == "REDUCING"
    with serve() as second:
        assert status(data_dir)["trading_state"] == "REDUCING"
        second.signal(signal.SIGTERM)
        assert second.wait(15) == 0


@pytest.mark.timeout(30)
def test_the_watchdog_picks_up_a_halt_written_to_the_data_dir(data_dir: Path) -> None:
    """A kill whose socket request cannot get through still reaches the engine: the HALT
    in the state file is seen by the watchdog within a sample."""
    from core.domain.models import TradingState
    from core.trading.durable_state import StateRecord, write_state_file

    with start_run(data_dir) as proc:
        write_state_file(data_dir, StateRecord(TradingState.HALTED, "written by hand",
                                               time.time()))
        assert proc.wait(20) == 1, proc.output()
    data = kpi(data_dir)
    assert data and data["summary"]["kill_switch_triggered"] is True
    assert "written by hand" in data["kill"]["trigger"]
