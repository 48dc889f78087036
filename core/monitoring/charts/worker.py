"""The chart worker: `python -m core.monitoring.charts.worker`, one short-lived process.

Reads one JSON request on stdin, `{"deadline_s": S, "jobs": [{"chart", "format",
"data"}, ...]}`, and writes on stdout one frame per job (4-byte big-endian length,
then the image bytes) and a last frame with its statistics (JSON: import and draw
times, peak RSS, each PNG's plot areas in pixels). Any failure: a one-line reason
on stderr (after the traceback) and exit 1.

matplotlib lives only here, so the service's RSS never carries it, and a drawing
that hangs or leaks dies with the process. An alarm at the deadline (plus a
margin) ends the process even when the parent that should kill it is gone.

Test-only hook: with ARBOPS_CHART_TEST_HANG set, the worker sleeps instead of
drawing, so tests can show that a hung render is cut off (nothing else reads it).
"""
from __future__ import annotations

import json
import math
import os
import resource
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

HANG_ENV = "ARBOPS_CHART_TEST_HANG"
ALARM_MARGIN_S = 5


def _frame(out: Any, data: bytes) -> None:
    out.write(struct.pack(">I", len(data)))
    out.write(data)


def _drawers() -> dict[str, Callable[[Any, Any], Any]]:
    from core.monitoring.charts.backtest_chart import backtest
    from core.monitoring.charts.report_charts import timeline, weekly

    return {"timeline": timeline, "weekly": weekly, "backtest": backtest}


def _peak_rss_kb() -> int:
    """This process's own peak resident memory. VmHWM belongs to the address space
    exec made; ru_maxrss survives exec on Linux, so it reports the parent's peak when
    that is larger (a test run's 300 MB read as the worker's)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def main() -> int:
    t0 = time.perf_counter()
    try:
        request = json.loads(sys.stdin.buffer.read())
        deadline = float(request.get("deadline_s", 60.0))
        signal.alarm(max(1, math.ceil(deadline) + ALARM_MARGIN_S))
        if os.environ.get(HANG_ENV):
            time.sleep(deadline + 3600)  # ended by the parent's kill, or by the alarm
        drawers = _drawers()
        import_s = time.perf_counter() - t0
        out = sys.stdout.buffer
        render_s: list[float] = []
        axes: list[list[list[int]]] = []
        for job in request["jobs"]:
            t = time.perf_counter()
            rendered = drawers[job["chart"]](job["data"], job["format"])
            render_s.append(round(time.perf_counter() - t, 4))
            axes.append(rendered.axes)
            _frame(out, rendered.data)
        peak_kb = _peak_rss_kb()
        stats = {"import_s": round(import_s, 4), "render_s": render_s, "axes": axes,
                 "total_s": round(time.perf_counter() - t0, 4),
                 "peak_rss_mb": round(peak_kb / 1024.0, 1)}
        _frame(out, json.dumps(stats).encode())
        out.flush()
        return 0
    except Exception as exc:  # noqa: BLE001 - the parent reads this line and falls back to text
        traceback.print_exc(file=sys.stderr)  # for the server log; the last line is the reason
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"chart worker: {type(exc).__name__}: {first}"[:500], file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
