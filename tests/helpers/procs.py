"""Helpers for end-to-end tests that drive the real `arbops` console script.

* :func:`short_data_dir` - a fresh data dir directly under /tmp (the control
  socket path ``<data_dir>/control.sock`` must stay under 108 bytes).
* :func:`arbops_env` - an environment with every arbops / runbook variable of
  the calling shell removed (``ARBITRAGE_ENV`` unset means paper), plus yours.
* :class:`ArbopsProc` - ``arbops ...`` as a real subprocess (stdout/stderr go to
  files in the data dir), with signal, wait and cleanup helpers.
* :func:`run_cli` - a short ``arbops ...`` command, run to completion.
* :func:`wait_until` - poll a predicate until a deadline (no fixed long sleeps).
* :func:`query` / :func:`query_one` - read the SQLite journal
  (``<data_dir>/arbops.sqlite3``) read-only (``mode=ro`` URI).

Subprocesses run with ``cwd`` set to the data dir so no ``.env`` file of the
repository or the caller is picked up.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

T = TypeVar("T")

ARBOPS = str(Path(sys.executable).with_name("arbops"))
PYTHON = sys.executable
DB_NAME = "arbops.sqlite3"

# Variables the settings read (runbook names as-is; arbops' own are ARBOPS_*).
_SCRUB_EXACT = {
    "ARBITRAGE_ENV", "LIVE_ARM_ACK", "LIVE_ARM_AT", "LIVE_MAX_NOTIONAL_USD",
    "UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY", "BINANCE_API_KEY", "BINANCE_API_SECRET",
    "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "TELEGRAM_ALLOWED_USERS", "TELEGRAM_API_BASE",
    "UPBIT_API_BASE", "BINANCE_API_BASE", "REDIS_URL", "PROMETHEUS_ENABLED",
    "PROMETHEUS_PORT", "POSTGRES_DSN",
}


@contextlib.contextmanager
def short_data_dir(prefix: str = "ao") -> Iterator[Path]:
    """A fresh, short data dir under /tmp, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def arbops_env(data_dir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without arbops settings, plus ARBOPS_DATA_DIR and `extra`."""
    env = {
        k: v for k, v in os.environ.items()
        if k.upper() not in _SCRUB_EXACT and not k.upper().startswith("ARBOPS_")
    }
    env["ARBOPS_DATA_DIR"] = str(data_dir)
    # The user's engine registry and default data dir: per test, never the real home.
    env["XDG_STATE_HOME"] = str(Path(data_dir) / ".xdg-state")
    env["XDG_DATA_HOME"] = str(Path(data_dir) / ".xdg-data")
    env["PYTHONUNBUFFERED"] = "1"
    # Machinery tests trade on the rehearsal market (tests/conftest.py says why).
    env["ARBOPS_SIM_PROFILE"] = "rehearsal"
    if extra:
        env.update(extra)
    return env


class ArbopsProc:
    """`arbops <args>` as a real subprocess; output goes to files (no pipe deadlocks)."""

    _seq = 0

    def __init__(
        self, args: Sequence[str], data_dir: Path, env: Mapping[str, str] | None = None,
        *, name: str | None = None, log_dir: Path | None = None,
    ) -> None:
        ArbopsProc._seq += 1
        self.args = list(args)
        self.data_dir = data_dir
        self.env = dict(env) if env is not None else arbops_env(data_dir)
        logs = log_dir or data_dir / "_test_logs"
        logs.mkdir(parents=True, exist_ok=True)
        stem = name or f"p{ArbopsProc._seq}"
        self.out_path = logs / f"{stem}.out"
        self.err_path = logs / f"{stem}.err"
        self._out = open(self.out_path, "wb")  # noqa: SIM115 - closed in close()
        self._err = open(self.err_path, "wb")  # noqa: SIM115
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [ARBOPS, *self.args], env=self.env, cwd=str(data_dir),
            stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> float:
        """Send `sig`; returns the monotonic time it was sent."""
        self.proc.send_signal(sig)
        return time.monotonic()

    def wait(self, timeout: float) -> int:
        """Exit code, or AssertionError (with the output) if still running after `timeout`."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"arbops {' '.join(self.args)} still running after {timeout} s\n{self.output()}"
            ) from None

    def stdout(self) -> str:
        self._out.flush()
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        self._err.flush()
        return self.err_path.read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()[-6000:]}\n--- stderr ---\n{self.stderr()[-6000:]}"

    def close(self) -> None:
        """Kill if still running, reap, close the log files. Idempotent."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        for fh in (self._out, self._err):
            if not fh.closed:
                fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_cli(
    args: Sequence[str], data_dir: Path, env: Mapping[str, str] | None = None,
    *, timeout: float = 30.0, cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short `arbops` command to completion; text stdout/stderr captured."""
    return subprocess.run(
        [ARBOPS, *args], env=dict(env) if env is not None else arbops_env(data_dir),
        cwd=str(cwd or data_dir), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


def run_python(code: str, env: Mapping[str, str], cwd: Path, *, timeout: float = 60.0
               ) -> subprocess.CompletedProcess[str]:
    """`python -c code` in the venv's interpreter."""
    return subprocess.run(
        [PYTHON, "-c", code], env=dict(env), cwd=str(cwd), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def wait_until(
    predicate: Callable[[], T], timeout: float, *, interval: float = 0.1, what: str = "condition",
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; return it. AssertionError at the
    deadline (with `on_timeout()` appended, e.g. the process output)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            extra = f"\n{on_timeout()}" if on_timeout is not None else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what} "
                                 f"(last value {last!r}){extra}")
        time.sleep(interval)


# --- the journal ---------------------------------------------------------------------
def db_path(data_dir: Path) -> Path:
    return data_dir / DB_NAME


def query(data_dir: Path, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]] | None:
    """Rows of `sql` on the journal, read-only; None if the journal is not there or not
    readable yet (missing file, schema not created, busy)."""
    path = db_path(data_dir)
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
    except sqlite3.Error:
        return None
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params).fetchall()]
    except sqlite3.OperationalError:
        return None
    finally:
        conn.close()


def query_one(data_dir: Path, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    rows = query(data_dir, sql, params)
    return rows[0] if rows else None


def table_count(data_dir: Path, table: str) -> int:
    """Row count of `table` (0 when the journal or table does not exist)."""
    row = query_one(data_dir, f"SELECT count(*) AS n FROM {table}")
    return int(row["n"]) if row else 0


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file, or None while it does not exist (files are written atomically)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


__all__ = [
    "ARBOPS", "ArbopsProc", "arbops_env", "db_path", "query", "query_one", "read_json",
    "run_cli", "run_python", "short_data_dir", "table_count", "wait_until",
]
