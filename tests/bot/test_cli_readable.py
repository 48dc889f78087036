"""Every CLI command prints for people by default (R-U5) (tables and lines, rounded numbers,
times in the report zone, no Python repr) and one JSON object with --json; `status`
and `report` say where the data is and which day they show. The CLI's own main() in
this process (a subprocess per command would cost seconds each) on a data dir holding
one finished fast paper run; --version and the demo hint as real subprocesses."""
from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.app import build_service
from bot.cli import main
from core.commands import COMMANDS, RunArgs
from core.config.settings import Settings
from tests.helpers.procs import arbops_env, run_cli, short_data_dir


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], Ran]:
    for k in list(os.environ):
        if k.startswith("ARBOPS_") or k in ("ARBITRAGE_ENV", "TELEGRAM_BOT_TOKEN"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("ARBOPS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("XDG_STATE_HOME", str(data_dir / ".xdg-state"))
    monkeypatch.chdir(data_dir)

    def run(argv: list[str]) -> Ran:
        capsys.readouterr()
        code = main(argv)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run

pytestmark = [pytest.mark.timeout(120)]

REPR = re.compile(r"\{'|\['|\bNone\b|(?<![A-Za-z])(True|False)(?![A-Za-z])")
# Default output of every read command; the ones that change state or run a session
# have their own tests (they print one line saying what they did).
READS: dict[str, list[str]] = {
    "status": [], "kpi": [], "positions": [], "guards": [], "trades": [], "profit": [],
    "performance": [], "daily": ["3"], "show_config": [], "ladder": [], "balance": [],
    "reconcile": [], "audit": [], "version": [], "preflight": ["--dry-run"],
    "report": ["daily", "--date", "today"], "config": ["check"],
}
NOT_READS = {"demo", "serve", "run", "stop", "kill", "reset", "pause", "resume", "logs",
             "arm", "disarm", "override", "record", "drill", "incident", "notify",
             "backtest"}  # a replay, checked in tests/trading/test_backtest.py
JSON_READS = ("status", "kpi", "positions", "guards", "trades", "profit", "performance",
              "daily", "show_config", "ladder", "balance", "reconcile", "preflight")


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    with short_data_dir("rd") as d:
        async def one_run() -> None:
            # (CPU and memory gate limits out of the way: the gate's verdict on this
            # machine's load is not what these tests are about. A fast run keeps a core
            # busy, and on a loaded machine the process's CPU can read above 100 %.)
            service = await build_service(Settings(
                data_dir=d, sim_fast=True, log_level="WARNING", gate_phase1_cpu_percent=1000.0,
                gate_phase1_memory_mb=4000.0), fast=True)
            try:
                await service.run_phase(service.plan_run(
                    RunArgs(phase=1, duration_seconds=20, seed=7, universe="top10")))
            finally:
                await service.store.close()

        asyncio.run(one_run())
        yield d


def test_every_cli_command_is_either_a_read_checked_here_or_named_elsewhere() -> None:
    cli = {c.name for c in COMMANDS if c.cli}
    assert cli == set(READS) | NOT_READS, cli ^ (set(READS) | NOT_READS)


@pytest.mark.parametrize("name", sorted(READS))
def test_default_output_is_for_people(cli: Callable[[list[str]], Ran], name: str) -> None:
    res = cli([name, *READS[name]])
    assert res.returncode in (0, 1), res.stderr
    assert res.stdout.strip(), res.stderr
    assert not REPR.search(res.stdout), res.stdout
    assert not res.stdout.lstrip().startswith("{"), res.stdout
    assert "Traceback" not in res.stdout + res.stderr


@pytest.mark.parametrize("name", JSON_READS)
def test_json_is_one_object_on_stdout(cli: Callable[[list[str]], Ran], name: str) -> None:
    extra = [a for a in READS[name] if a.startswith("-")] + (["3"] if name == "daily" else [])
    res = cli([name, *extra, "--json"])
    assert res.returncode in (0, 1), res.stderr
    assert isinstance(json.loads(res.stdout), dict)


def test_the_figures_are_rounded_and_the_times_zoned(cli: Callable[[list[str]], Ran]) -> None:
    trades = cli(["trades"]).stdout
    assert "times in Asia/Seoul (KST)" in trades
    assert re.search(r"[+-]\$\d+\.\d\d\b", trades), trades
    assert not re.search(r"\d\.\d{5,}", trades), trades  # no 15-digit floats
    ladder = cli(["ladder"]).stdout
    assert "paper1:" in ladder and "KST" in ladder and not re.search(r"\b1\d{9}\b", ladder)
    kpi = cli(["kpi"]).stdout
    assert "phase 1 gate" in kpi and "✓ entry_in_first_minute" in kpi


def test_status_shows_the_last_run_the_surfaces_and_the_data_dir(
        cli: Callable[[list[str]], Ran], data_dir: Path) -> None:
    out = cli(["status"]).stdout
    assert re.search(r"last run \S+-paper-p1-\S+: completed, exit 0, gate PASS", out), out
    assert "telegram, metrics: off (no engine running" in out
    assert f"data dir {data_dir}" in out


def test_after_make_demo_status_and_report_say_where_to_look() -> None:
    with short_data_dir("dm") as cwd, short_data_dir("em") as empty:
        demo = cwd / ".arbops" / "demo"
        demo.mkdir(parents=True)
        (demo / "arbops.sqlite3").write_bytes(b"")  # what `make demo` leaves behind
        env = arbops_env(empty)
        out = run_cli(["status"], empty, env, cwd=cwd).stdout
        assert "ARBOPS_DATA_DIR=.arbops/demo arbops status" in out, out
        rep = run_cli(["report", "daily"], empty, env, cwd=cwd)
        assert rep.returncode == 1
        assert "ARBOPS_DATA_DIR=.arbops/demo arbops report daily --date today" in rep.stderr


def test_report_daily_names_its_day_and_zone(cli: Callable[[list[str]], Ran]) -> None:
    res = cli(["report", "daily"])
    assert res.returncode == 0, res.stderr
    assert re.search(r"the last complete day in Asia/Seoul \(\d{4}-\d\d-\d\d\); --date today",
                     res.stderr), res.stderr


def test_version(data_dir: Path) -> None:
    res = run_cli(["--version"], data_dir)
    assert res.returncode == 0
    assert re.fullmatch(r"arbops \S+ \(commit \S+, Python 3\.\d+\.\d+\)\n", res.stdout)


def test_demo_ends_saying_where_its_data_went(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.cli.runs import demo_epilogue

    monkeypatch.chdir(tmp_path)
    text = demo_epilogue(Settings(data_dir=tmp_path / ".arbops" / "demo"))
    assert f"are in {tmp_path / '.arbops' / 'demo'}" in text
    assert "ARBOPS_DATA_DIR=.arbops/demo .venv/bin/arbops report daily --date today" in text
    assert "ARBOPS_DATA_DIR=.arbops/demo .venv/bin/arbops status" in text
