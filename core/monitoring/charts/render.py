"""Drawing charts in a short-lived worker process, with a deadline.

`render_charts` starts `python -m core.monitoring.charts.worker`, hands it the
plain chart data as JSON and reads the images back. matplotlib is imported in that
process only: the service (engine, bot) never loads it, so its RSS does not grow
with charts, and a render that hangs or crashes costs a text-only report, not the
service. Synchronous: callers on the event loop run it with `asyncio.to_thread`
(it blocks a worker thread, never the loop).

- Deadline: the whole process (start, import, drawing) must finish within
  `timeout_s`, or it is killed (ChartTimeout); other failures are ChartFailed.
- At most MAX_WORKERS processes at once (each holds about 70-100 MB while it
  runs), so a burst of /report commands cannot eat the host's memory.
- The worker gets a small environment (no API keys or tokens: it needs none)
  and runs this checkout's code (cwd and PYTHONPATH set to it).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from core.errors import ChartFailed, ChartTimeout
from core.monitoring.charts.data import FORMATS, ChartKind, ImageFormat
from core.monitoring.charts.worker import HANG_ENV

WORKER_MODULE = "core.monitoring.charts.worker"
DEFAULT_TIMEOUT_S = 30.0
MAX_WORKERS = 2
KINDS: tuple[ChartKind, ...] = ("timeline", "weekly", "backtest")
ROOT = Path(__file__).resolve().parents[3]  # the directory that holds core/
_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TEMP", "TMP",
             "SYSTEMROOT", "MPLCONFIGDIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", HANG_ENV)
_slots = threading.BoundedSemaphore(MAX_WORKERS)


@dataclass(frozen=True, slots=True)
class ChartJob:
    chart: ChartKind
    data: Mapping[str, Any]
    fmt: ImageFormat = "png"

    def __post_init__(self) -> None:
        if self.chart not in KINDS:
            raise ValueError(f"unknown chart {self.chart!r} (one of {', '.join(KINDS)})")
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown format {self.fmt!r} (one of {', '.join(FORMATS)})")


@dataclass(slots=True)
class RenderResult:
    images: list[bytes]
    stats: dict[str, Any] = field(default_factory=dict)  # the worker's own figures
    pid: int = 0
    wall_s: float = 0.0  # start of the process to its last byte, as seen from here


def worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP}
    env["PYTHONPATH"] = str(ROOT)
    env["MPLBACKEND"] = "Agg"
    return env


def render_charts(jobs: Sequence[ChartJob], *, timeout_s: float = DEFAULT_TIMEOUT_S,
                  module: str = WORKER_MODULE) -> RenderResult:
    """Every job's image, drawn by one worker process (one start-up for a batch)."""
    if not jobs:
        return RenderResult([])
    request = json.dumps({"deadline_s": timeout_s, "jobs": [
        {"chart": j.chart, "format": j.fmt, "data": j.data} for j in jobs]}).encode()
    started = time.monotonic()
    if not _slots.acquire(timeout=timeout_s):
        raise ChartTimeout(f"no chart worker free within {timeout_s:g} s "
                           f"({MAX_WORKERS} already drawing)")
    try:
        remaining = max(timeout_s - (time.monotonic() - started), 0.1)
        return _run(request, len(jobs), remaining, module, timeout_s)
    finally:
        _slots.release()


def render_chart(chart: ChartKind, data: Mapping[str, Any], fmt: ImageFormat = "png", *,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> bytes:
    return render_charts([ChartJob(chart, data, fmt)], timeout_s=timeout_s).images[0]


def _run(request: bytes, n: int, timeout_s: float, module: str, limit_s: float) -> RenderResult:
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=ROOT, env=worker_env(),
            start_new_session=True)  # a Ctrl+C at the terminal is the service's, not its
    except OSError as exc:
        raise ChartFailed(f"chart worker could not start: {exc}") from exc
    try:
        out, err = proc.communicate(request, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ChartTimeout(f"chart not drawn within {limit_s:g} s: worker {proc.pid} killed",
                           pid=proc.pid) from None
    except BaseException:  # interrupted while waiting (Ctrl+C in the CLI): no orphan left
        proc.kill()
        proc.wait()
        raise
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        why = lines[-1] if lines else "no message"
        logger.warning("chart worker {} failed:\n{}", proc.pid, "\n".join(lines[-40:]))
        raise ChartFailed(f"chart worker exited {proc.returncode}: {why}")
    frames = _frames(out)
    if len(frames) != n + 1:
        raise ChartFailed(f"chart worker returned {len(frames) - 1} image(s) for {n}")
    stats = json.loads(frames[-1])
    return RenderResult(frames[:-1], stats, proc.pid, round(wall, 4))


def _frames(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        (size,) = struct.unpack(">I", data[pos:pos + 4])
        out.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    if pos != len(data):
        raise ChartFailed("chart worker output was cut short")
    return out
