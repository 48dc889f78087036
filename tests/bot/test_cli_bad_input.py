"""Bad input to the real `arbops` console script: exit 2, a clear message on stderr,
no traceback, nothing written (exit codes: core/errors.py ExitCode). Fast: nothing here trades."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.procs import arbops_env, run_cli, short_data_dir, table_count

pytestmark = pytest.mark.timeout(60)

RUN = ["run", "--phase", "1", "--duration-seconds", "2"]


@pytest.fixture
def data_dir():
    with short_data_dir("aobad") as d:
        yield d


def _kpi_files(root: Path) -> list[Path]:
    """Every file that looks like a KPI file or its atomic-write temp file."""
    return [p for p in root.rglob("*") if p.is_file() and (".json" in p.name)]


def _assert_refused(res, *needles: str) -> None:
    out = res.stdout + res.stderr
    assert res.returncode == 2, f"exit {res.returncode}\n{out}"
    assert "Traceback" not in out, out
    for needle in needles:
        assert needle.lower() in res.stderr.lower(), f"{needle!r} not on stderr:\n{res.stderr}"


def _assert_nothing_written(data_dir: Path, kpi_dir: Path) -> None:
    assert _kpi_files(kpi_dir) == [], _kpi_files(kpi_dir)
    assert _kpi_files(data_dir) == [], _kpi_files(data_dir)
    assert table_count(data_dir, "runs") == 0
    assert table_count(data_dir, "kpi_snapshots") == 0


@pytest.mark.parametrize(
    ("extra_args", "env", "needles"),
    [
        pytest.param(["--universe", "top7"], {}, ["--universe", "top7"], id="unknown-universe"),
        pytest.param(["--duration-minutes", "-1"], {}, ["--duration-minutes"],
                     id="negative-duration"),
        pytest.param(["--data-source", "foo"], {}, ["--data-source"], id="unknown-data-source"),
        pytest.param(["--phase", "4"], {}, ["--phase"], id="phase-out-of-range"),
        pytest.param([], {"ARBOPS_TICK_INTERVAL_MS": "abc"}, ["ARBOPS_TICK_INTERVAL_MS"],
                     id="malformed-tick-interval"),
        pytest.param([], {"PROMETHEUS_PORT": "0"}, ["PROMETHEUS_PORT"], id="prometheus-port-0"),
        pytest.param(["--mode", "live"], {}, ["live"], id="mode-live"),
    ],
)
def test_run_bad_input_is_refused_cleanly(data_dir, extra_args, env, needles):
    kpi_dir = data_dir / "kpiout"
    kpi = kpi_dir / "k.json"
    args = [*RUN, "--kpi-output-path", str(kpi)]
    if "--duration-minutes" in extra_args:
        args = ["run", "--phase", "1", "--kpi-output-path", str(kpi)]
    res = run_cli([*args, *extra_args], data_dir, arbops_env(data_dir, env))
    _assert_refused(res, *needles)
    kpi_dir.mkdir(exist_ok=True)
    _assert_nothing_written(data_dir, kpi_dir)


def test_kpi_path_under_proc_is_refused(data_dir):
    res = run_cli([*RUN, "--kpi-output-path", "/proc/x.json"], data_dir, timeout=30)
    try:
        _assert_refused(res, "--kpi-output-path")
        assert table_count(data_dir, "runs") == 0
    finally:
        assert not Path("/proc/x.json").exists()


def test_kpi_path_under_a_regular_file_is_refused(data_dir):
    # Unwritable for root too: the parent "directory" is a file.
    blocker = data_dir / "afile"
    blocker.write_text("x")
    res = run_cli([*RUN, "--kpi-output-path", str(blocker / "sub" / "k.json")], data_dir)
    _assert_refused(res, "--kpi-output-path", "not a directory")
    assert blocker.read_text() == "x"
    assert table_count(data_dir, "runs") == 0


def test_kpi_path_that_is_a_directory_is_refused(data_dir):
    target = data_dir / "adir"
    target.mkdir()
    res = run_cli([*RUN, "--kpi-output-path", str(target)], data_dir)
    _assert_refused(res, "--kpi-output-path", "directory")
    assert list(target.iterdir()) == []
    assert table_count(data_dir, "runs") == 0


def test_both_durations_are_refused(data_dir):
    res = run_cli(["run", "--duration-seconds", "5", "--duration-minutes", "1"], data_dir)
    _assert_refused(res, "--duration-minutes or --duration-seconds")
    assert table_count(data_dir, "runs") == 0


def test_unknown_command_and_unknown_flag_exit_2(data_dir):
    for argv in (["frobnicate"], ["run", "--no-such-flag"]):
        res = run_cli(argv, data_dir)
        _assert_refused(res, "error")


def test_preflight_dry_run_writes_its_report_and_is_not_ready(data_dir):
    report_path = data_dir / "pf.json"
    res = run_cli(["preflight", "--dry-run", "--output", str(report_path)], data_dir)
    assert res.returncode == 1, res.stdout + res.stderr  # SKIPs never make it ready
    report = json.loads(report_path.read_text())
    assert report["summary"]["ready_for_live"] is False
    assert report["summary"]["skipped"] > 0
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("argv", [["--help"], ["status", "--help"], ["run", "--help"]])
def test_help_exits_0(data_dir, argv):
    res = run_cli(argv, data_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "usage: arbops" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    assert not (data_dir / "arbops.sqlite3").exists()


def test_top_level_help_lists_the_contract_commands(data_dir):
    res = run_cli(["--help"], data_dir)
    for name in ("run", "status", "stop", "kill", "reset", "pause", "resume", "preflight"):
        assert name in res.stdout
