"""`arbops record` and the `replay` data source (R-M8), through the real console script:
recordings written from the sim and from the emulator over ccxt, replays that are
deterministic, and bad recordings refused with a clear message."""
from __future__ import annotations

import asyncio
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from core.trading.universe import select_universe
from core.venues.replay_market import FORMAT_VERSION, Recorder, recording_seconds
from core.venues.sim_market import SimMarket
from tests.helpers.procs import arbops_env, run_cli, short_data_dir
from tests.venues.support import BASES, emu_env, emulator

ARBOPS = str(Path(sys.executable).with_name("arbops"))
FAST = {"ARBOPS_SIM_FAST": "1"}


def read_recording(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline())
        return header, [json.loads(line) for line in fh]


def make_recording(path: Path, snapshots: int, interval_s: float = 0.1, seed: int = 11) -> Path:
    """A recording of the sim, stepped on a manual clock (no waiting)."""
    clock = ManualClock()
    market = SimMarket(seed=seed, interval_s=interval_s, clock=clock)
    bases = select_universe(market.symbol_stats(), 10)
    market.subscribe(bases)
    rec = Recorder(path, "sim", [s for s in market.symbol_stats() if s.base in bases],
                   interval_s)
    market.add_listener(rec)
    for _ in range(snapshots):
        clock.advance(interval_s)
        market.step()
    rec.close()
    return path


def kpi_of(stdout: str) -> dict[str, Any]:
    line = next(x for x in stdout.splitlines() if x.startswith("KPI JSON: "))
    return json.loads(Path(line.removeprefix("KPI JSON: ").strip()).read_text())


def test_record_sim_writes_a_recording_and_too_short_is_refused() -> None:
    with short_data_dir("arr") as d:
        env = arbops_env(d)
        out = run_cli(["record", "--seconds", "3", "--data-source", "sim",
                       "--universe", "top10"], d, env, timeout=60)
        assert out.returncode == 0, out.stderr[-3000:]
        files = sorted((d / "recordings").glob("*.jsonl.gz"))
        assert len(files) == 1 and files[0].name.endswith("-sim.jsonl.gz")
        assert f"to {files[0]}" in out.stdout and "recorded" in out.stdout
        header, lines = read_recording(files[0])
        assert header["version"] == FORMAT_VERSION and header["source"] == "sim"
        assert header["interval_s"] == pytest.approx(0.1)
        bases = {s["base"] for s in header["stats"]}
        assert len(bases) == 10
        assert 20 <= len(lines) <= 40, len(lines)  # ~10 snapshots a second for 3 s
        assert f"recorded {len(lines)} snapshots" in out.stdout
        seqs = [ln["seq"] for ln in lines]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        for ln in lines:
            assert ln["fx"]["s"] == "USDT/KRW" and ln["fx"]["b"] and ln["fx"]["a"]
            assert set(ln["u"]) == bases and set(ln["n"]) == bases
        assert recording_seconds(files[0]) == pytest.approx(len(lines) * 0.1)
        # Three seconds cannot hold a run plus its closing margin: refused, exit 2.
        run = run_cli(["run", "--data-source", "replay", "--duration-seconds", "60"], d,
                      arbops_env(d, FAST), timeout=60)
        assert run.returncode == 2, (run.stdout, run.stderr[-2000:])
        assert "holds only 3 s of market data" in run.stderr
        assert "Traceback" not in run.stderr


def _replay(d: Path, rec: Path) -> dict[str, Any]:
    out = run_cli(["run", "--data-source", "replay", "--replay-path", str(rec),
                   "--duration-seconds", "60", "--universe", "top10"], d, arbops_env(d, FAST),
                  timeout=90)
    assert out.returncode in (0, 1), out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return kpi_of(out.stdout)


def _fills(d: Path, run_id: str) -> list[tuple[Any, ...]]:
    import sqlite3

    con = sqlite3.connect(d / "arbops.sqlite3")
    try:
        return con.execute("SELECT venue, symbol, side, price, amount, fee FROM fills "
                           "WHERE run_id=? ORDER BY ts, rowid", (run_id,)).fetchall()
    finally:
        con.close()


def test_replay_is_deterministic() -> None:
    with short_data_dir("ard") as d, short_data_dir("ard") as d2:
        rec = make_recording(d / "recordings" / "20260101T000000Z-sim.jsonl.gz", 400)
        a, b = _replay(d, rec), _replay(d, rec)  # twice on the same data dir
        assert a["run"]["run_id"] != b["run"]["run_id"]
        assert a["run"]["data_source"] == b["run"]["data_source"] == "replay"
        # Recording 40 s, minus the 10 s closing margin.
        assert a["run"]["duration_seconds"] == pytest.approx(b["run"]["duration_seconds"])
        assert a["run"]["duration_seconds"] >= 30
        assert a["summary"]["round_trips_completed"] > 0, "nothing traded: weak check"
        for key in ("round_trips_completed", "total_pnl_usd", "win_rate", "failed_fills_count",
                    "max_drawdown_usd", "exit_code", "stop_reason"):
            assert a["summary"][key] == b["summary"][key], key
        for key in ("ticks", "entries", "exits", "wins", "fees_usd", "inventory_change"):
            assert a["trading"][key] == b["trading"][key], key
        assert a["exit_reasons"] == b["exit_reasons"]
        assert a["reconciliation"]["ok"] is b["reconciliation"]["ok"] is True
        # And the journal, in a fresh data dir: the same fills, price for price.
        c = _replay(d2, rec)
        assert c["summary"] == {**a["summary"]}
        fa, fc = _fills(d, a["run"]["run_id"]), _fills(d2, c["run"]["run_id"])
        assert fa and fa == fc


@pytest.mark.parametrize("problem", ["missing", "missing_path", "not_gzip", "empty",
                                     "header_not_json"])
def test_bad_recording_is_refused_with_a_clear_message(problem: str) -> None:
    with short_data_dir("arb") as d:
        path = d / "recordings" / "bad.jsonl.gz"
        path.parent.mkdir(parents=True)
        args = ["run", "--data-source", "replay", "--duration-seconds", "60"]
        if problem == "missing":
            expect = "no recording at"
        elif problem == "missing_path":
            args += ["--replay-path", str(d / "nope.jsonl.gz")]
            expect = "no recording at"
        elif problem == "not_gzip":
            path.write_bytes(b"this is not a recording\n")
            expect = "is not a usable recording"
        elif problem == "empty":
            with gzip.open(path, "wt") as fh:
                fh.write("")
            expect = "is not a usable recording"
        else:
            with gzip.open(path, "wt") as fh:
                fh.write("{version: 1\n")
            expect = "is not a usable recording"
        out = run_cli(args, d, arbops_env(d, FAST), timeout=60)
        assert out.returncode == 2, (out.stdout, out.stderr[-2000:])
        assert expect in out.stderr
        assert "Traceback" not in out.stderr


def _corrupt(path: Path, problem: str) -> None:
    with gzip.open(path, "rt") as fh:
        lines = fh.read().splitlines()
    if problem == "future_version":
        header = json.loads(lines[0])
        header["version"] = FORMAT_VERSION + 1
        lines[0] = json.dumps(header)
    elif problem == "bad_line":
        lines[len(lines) // 4] = "{not json"
    if problem == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


@pytest.mark.parametrize("problem", ["future_version", "truncated", "bad_line"])
def test_corrupt_recording_is_refused_before_the_run(problem: str) -> None:
    with short_data_dir("arc") as d:
        path = make_recording(d / "recordings" / "c.jsonl.gz", 400)
        _corrupt(path, problem)
        out = run_cli(["run", "--data-source", "replay", "--duration-seconds", "60"], d,
                      arbops_env(d, FAST), timeout=60)
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert out.returncode == 2, (out.stdout, out.stderr[-2000:])
        assert str(path) in out.stderr


def test_fast_replay_of_a_one_second_recording_completes() -> None:
    with short_data_dir("ar1") as d:
        make_recording(d / "recordings" / "r.jsonl.gz", 40, interval_s=1.0)
        out = run_cli(["run", "--data-source", "replay", "--duration-seconds", "60"], d,
                      arbops_env(d, FAST), timeout=60)
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert out.returncode in (0, 1)
        kpi = kpi_of(out.stdout)
        assert kpi["final"] is True and kpi["summary"]["stop_reason"] == "duration_elapsed"


def test_live_on_a_recording_is_refused() -> None:
    with short_data_dir("arl") as d:
        make_recording(d / "recordings" / "r.jsonl.gz", 400)
        out = run_cli(["run", "--mode", "live", "--data-source", "replay",
                       "--duration-seconds", "60"], d, arbops_env(d, FAST), timeout=60)
        assert out.returncode == 2, (out.stdout, out.stderr[-2000:])
        assert "live" in out.stderr and "Traceback" not in out.stderr
        assert not (d / "kpi").exists()


async def test_record_real_data_from_the_emulator() -> None:
    async with emulator(interval_s=0.1, autostep=True) as emu:
        with short_data_dir("are") as d:
            out_path = d / "rec" / "emu.jsonl.gz"
            env = arbops_env(d, {**emu_env(emu), "ARBOPS_REAL_POLL_INTERVAL_S": "0.2"})
            proc = await asyncio.create_subprocess_exec(
                ARBOPS, "record", "--seconds", "2", "--data-source", "real", "--universe",
                "top10", "--output", str(out_path), cwd=str(d), env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            try:
                stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                raise
            assert proc.returncode == 0, stderr.decode()[-3000:]
            assert f"to {out_path}" in stdout.decode()
            header, lines = read_recording(out_path)
            assert header["source"] == "real" and header["interval_s"] == pytest.approx(0.2)
            bases = {s["base"] for s in header["stats"]}
            assert bases == set(BASES)
            assert 3 <= len(lines) <= 12, len(lines)
            for ln in lines:
                assert ln["fx"]["s"] == "USDT/KRW" and ln["fx"]["b"]
                assert set(ln["u"]) == bases and set(ln["n"]) == bases
                assert ln["n"]["BTC"]["s"] == "BTC/USDT" and ln["u"]["BTC"]["s"] == "BTC/KRW"
            # The books came from the emulator over HTTP, and they moved.
            assert lines[0]["n"]["BTC"] != lines[-1]["n"]["BTC"]
            reqs = emu.core.requests
            assert any(r["path"] == "/v1/orderbook" for r in reqs)
            assert any(r["path"] == "/api/v3/depth" for r in reqs)


def test_record_real_with_unreachable_venues_fails_cleanly() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    with short_data_dir("aru") as d:
        env = arbops_env(d, {"UPBIT_API_BASE": url, "BINANCE_API_BASE": url})
        out = run_cli(["record", "--seconds", "2", "--data-source", "real"], d, env,
                      timeout=60)
        assert out.returncode == 1, out.stderr[-2000:]
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert not list((d / "recordings").glob("*")) if (d / "recordings").exists() else True
