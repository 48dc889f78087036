"""`arbops report daily|weekly [--date D] | run RUN_ID  [--png PATH] [--json]` (R-O4).

Reads the journal directly (read-only), so it works whether or not `arbops
serve` is running, and prints the same report the scheduler pushes. `--png` has
the chart drawn by a worker process; when it cannot be drawn the report is still
printed, the reason goes to stderr and the exit code is 1 (the file asked for is
not there).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from core.config.settings import Settings
from core.errors import BadInput, ExitCode, ServiceError


def cmd_report(settings: Settings, args: Any, *, now: float | None = None) -> int:
    from bot.app import DB_NAME
    from core.monitoring.reports import build_report, resolve_date

    kind = str(getattr(args, "kind", "daily"))
    tz = ZoneInfo(settings.report_timezone)
    t = time.time() if now is None else now
    day = None
    if kind != "run":
        try:
            day = resolve_date(getattr(args, "date", None), kind, t, tz)
        except ValueError as exc:
            raise BadInput(f"bad --date: {exc}") from None
    db = Path(settings.data_dir) / DB_NAME
    if not db.exists():
        demo = Path.cwd() / ".arbops" / "demo" / DB_NAME
        where = (f"; `make demo` wrote to {demo.parent}: ARBOPS_DATA_DIR=.arbops/demo "
                 f"arbops report {kind} --date today" if demo.exists() else "")
        raise ServiceError(f"no journal at {db}: nothing has run in this data dir yet{where}",
                           ExitCode.FAILED)
    if day is not None and getattr(args, "date", None) is None and \
            not getattr(args, "json_output", False):
        period = "week" if kind == "weekly" else "day"
        print(f"arbops report: the last complete {period} in {settings.report_timezone} "
              f"({day}); --date today for today so far", file=sys.stderr)
    png = getattr(args, "png", None)
    built = build_report(kind, db, day, tz, t, png_path=Path(png) if png else None,
                         run_id=getattr(args, "run_id", None),
                         chart_timeout_s=settings.report_chart_timeout_s)
    if getattr(args, "json_output", False):
        print(json.dumps(built.as_dict(), indent=2, default=str))
    else:
        print(built.text)
        if built.png_path is not None:
            print(f"Chart: {built.png_path}")
    if built.chart_error is not None:
        print(f"arbops report: no chart written: {built.chart_error}", file=sys.stderr)
        return ExitCode.FAILED
    return ExitCode.OK
