"""Kill latency: in-process (arrival -> HALTED -> cancels sent -> flat verified)
and the CLI path (`arbops kill` process start -> HALTED printed) against a
running `arbops serve`. Medians over several runs; see docs/performance.md.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.app import build_service
from core.commands import RunArgs
from core.config.settings import Settings
from core.domain.models import TradingState

RUNS = int(os.environ.get("BENCH_KILL_RUNS", "5"))
ARBOPS = str(Path(sys.executable).with_name("arbops"))


async def in_process(seed: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        settings = Settings(data_dir=Path(tmp), sim_fast=True, sim_seed=seed,
                            paper_fill_ratio=0.3, sim_jump_rate_per_min=6, log_level="WARNING")
        service = await build_service(settings, fast=True)
        marks: dict[str, float] = {}

        def progress(run: Any) -> None:
            e = run.engine
            if "arrival" in marks or e is None:
                return
            if any(p["working_orders"] for p in e.open_positions()) and e.open_positions():
                marks["arrival"] = time.perf_counter()
                run.kill("benchmark")
                if service.state.state is TradingState.HALTED:
                    marks["halted"] = service.state.changed_perf

        try:
            spec = service.plan_run(RunArgs(phase=1, duration_seconds=600))
            outcome = await service.run_phase(spec, progress)
        finally:
            await service.store.close()
    steps = {s["step"]: s["t"] for s in outcome.kpi["kill"]["steps"]}
    a = marks["arrival"]
    return {"halted_us": (marks["halted"] - a) * 1e6,
            "cancels_ms": (steps["cancel_all"] - a) * 1e3,
            "flat_ms": (steps["verify_flat"] - a) * 1e3}


def cli_kill(runs: int) -> list[float]:
    times = []
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        env = {**os.environ, "ARBOPS_DATA_DIR": tmp, "ARBOPS_LOG_LEVEL": "WARNING"}
        serve = subprocess.Popen([ARBOPS, "serve"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                if subprocess.run([ARBOPS, "status", "--json"], env=env, capture_output=True, check=False,
                                  text=True).stdout.count('"engine_running": true'):
                    break
                time.sleep(0.1)
            for _ in range(runs):
                from core.control_channel import request_sync, socket_path_for

                request_sync(socket_path_for(Path(tmp)), "run",
                             {"duration_seconds": 120})
                time.sleep(1.0)
                t0 = time.perf_counter()
                out = subprocess.run([ARBOPS, "kill", "--reason", "bench"], env=env, check=False,
                                     capture_output=True, text=True)
                times.append((time.perf_counter() - t0) * 1000)
                assert "HALTED" in out.stdout, out
                for _ in range(100):
                    st = json.loads(subprocess.run([ARBOPS, "status", "--json"], env=env, check=False,
                                                   capture_output=True, text=True).stdout)
                    if st["run"] is None:
                        break
                    time.sleep(0.1)
                subprocess.run([ARBOPS, "reset", "--confirm", "RESET"], env=env, check=False,
                               capture_output=True)
        finally:
            serve.terminate()
            serve.wait(timeout=15)
    return times


def _wait_running(env: dict[str, str], data_dir: Path) -> None:
    from core.control_channel import request_sync, socket_path_for

    for _ in range(300):
        try:
            reply = request_sync(socket_path_for(data_dir), "progress", {}, timeout=1.0)
            if reply.get("ok") and reply["result"].get("run"):
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.1)
    raise RuntimeError("the run never started")


def kill_under(fault: str) -> tuple[float, float]:
    """`arbops kill` against a running phase with `fault` (none, frozen, locked):
    process start -> HALTED in the state file, and -> the CLI's exit, in ms."""
    from core.domain.models import TradingState
    from core.trading.durable_state import read_state_file

    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        d = Path(tmp)
        env = {**os.environ, "ARBOPS_DATA_DIR": tmp, "ARBOPS_LOG_LEVEL": "WARNING",
               "XDG_STATE_HOME": f"{tmp}/.state"}
        run = subprocess.Popen([ARBOPS, "run", "--duration-seconds", "300"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lock = None
        try:
            _wait_running(env, d)
            if fault == "frozen":
                os.kill(run.pid, 19)  # SIGSTOP
            elif fault == "locked":
                code = ("import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],timeout=30,"
                        "isolation_level=None)\nc.execute('BEGIN EXCLUSIVE');print(1,flush=True)"
                        "\ntime.sleep(12)\nc.execute('COMMIT')\n")
                lock = subprocess.Popen([sys.executable, "-c", code, f"{tmp}/arbops.sqlite3"],
                                        stdout=subprocess.PIPE, text=True)
                assert lock.stdout is not None and lock.stdout.readline()
            t0 = time.perf_counter()
            cli = subprocess.Popen([ARBOPS, "kill", "--reason", "bench"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            persisted = None
            while persisted is None:
                rec = read_state_file(d)
                if rec is not None and rec.state is TradingState.HALTED:
                    persisted = (time.perf_counter() - t0) * 1000
                time.sleep(0.0005)
            cli.wait(60)
            return persisted, (time.perf_counter() - t0) * 1000
        finally:
            if lock is not None:
                lock.kill()
                lock.wait()
                assert lock.stdout is not None
                lock.stdout.close()
            run.kill()
            run.wait(15)


def main() -> None:
    from loguru import logger

    logger.remove()
    rows = [asyncio.run(in_process(seed)) for seed in range(1, RUNS + 1)]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    cli = cli_kill(RUNS)
    print(f"kill latency, {RUNS} runs, medians; paper exchange, {os.cpu_count()} cores")
    print("| path | median | min | max |")
    print("|---|---|---|---|")
    for key, label, unit in (("halted_us", "arrival -> HALTED", "us"),
                             ("cancels_ms", "arrival -> every cancel sent", "ms"),
                             ("flat_ms", "arrival -> flat verified", "ms")):
        vals = [r[key] for r in rows]
        print(f"| {label} | {med[key]:.1f} {unit} | {min(vals):.1f} | {max(vals):.1f} |")
    print(f"| `arbops kill` process start -> HALTED printed | {statistics.median(cli):.0f} ms "
          f"| {min(cli):.0f} | {max(cli):.0f} |")
    print("\n`arbops kill` against a running phase: process start -> HALT persisted (state file)"
          " / -> the command's exit, ms")
    print("| engine | persisted median | min | max | CLI done median |")
    print("|---|---|---|---|---|")
    for fault, label in (("none", "healthy"), ("frozen", "frozen (SIGSTOP)"),
                         ("locked", "SQLite locked by another process")):
        timed = [kill_under(fault) for _ in range(RUNS)]
        pers = [t[0] for t in timed]
        done = [t[1] for t in timed]
        print(f"| {label} | {statistics.median(pers):.0f} | {min(pers):.0f} | {max(pers):.0f} "
              f"| {statistics.median(done):.0f} |")


if __name__ == "__main__":
    main()
