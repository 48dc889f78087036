"""`arbops status`, `stop`, `kill`, `pause`, `resume`, `reset`, `notify`, `audit`,
`logs`, `incident`, `config`: the trading state and what the journal says.

Each asks the running engine through bot.cli.client, or acts in this process when
none runs and the command allows it. Heavy modules are imported inside the
handlers that need them, so `arbops status` and `arbops kill` start fast.
"""
from __future__ import annotations

import asyncio
import sys
import time
from typing import TYPE_CHECKING, Any

from bot.cli import print_json
from bot.cli.client import EngineClient
from core.commands import (
    AuditArgs,
    ConfigArgs,
    ConfirmArgs,
    IncidentArgs,
    LogsArgs,
    NotifyArgs,
    ReasonArgs,
    ResetArgs,
    StatusArgs,
)
from core.errors import BadInput, EngineNotRunning, ExitCode, ServiceError
from core.settings import Settings

if TYPE_CHECKING:
    pass



# --- read-only ------------------------------------------------------------------------
def cmd_status(settings: Settings, args: StatusArgs) -> int:
    status = _status(settings)
    if args.json_output:
        print_json(status)
        return ExitCode.OK
    run = status.get("run")
    print(f"mode {status['mode']}  state {status['trading_state']}  "
          f"engine {'running' if status['engine_running'] else 'not running'}  "
          f"armed {'yes' if status['armed'] else 'no'}  rss {status['rss_mb']} MB")
    if status.get("halted_reason"):
        print(f"halted: {status['halted_reason']}")
    if run:
        print(f"run {run['run_id']}: phase {run['phase']} {run['universe']}  "
              f"{run['elapsed_s']:.0f}/{run['duration_s'] or float('inf'):.0f}s  "
              f"round trips {run['round_trips']}  PnL ${run['pnl_usd']:+.2f}  "
              f"open {run['open_positions']}")
    return ExitCode.OK


def _status(settings: Settings) -> dict[str, Any]:
    """The engine's status, or the journal's when no engine answers (read-only)."""
    try:
        return {**EngineClient(settings).ask("status"), "engine_running": True}
    except EngineNotRunning:
        return asyncio.run(_offline_status(settings))


async def _offline_status(settings: Settings) -> dict[str, Any]:
    """Status from the stores when no engine process answers: the most severe state the
    state file or the journal holds (R-K6), the ARM and the last run from the journal."""
    import psutil

    from core.clock import SystemClock
    from core.journal.sqlite_store import SqliteStore
    from core.safety.live_safety import LiveSafety
    from core.trading.durable_state import most_severe, parse_flag, read_state_file
    from core.trading.state import HALT_FLAG

    db = settings.data_dir / "arbops.sqlite3"
    flag, last = None, None
    arm: dict[str, Any] = {"armed": False, "arm_cap_usd": None, "arm_expires_at": None}
    if db.exists():
        store = await SqliteStore.open(db)
        try:
            flag = await store.get_flag(HALT_FLAG)
            last = await store.last_run()
            arm = await LiveSafety(settings, store, SystemClock()).arm_status()
        finally:
            await store.close()
    worst = most_severe({"file": read_state_file(settings.data_dir), "journal": parse_flag(flag)})
    state = str(worst[1].state) if worst else "ACTIVE"
    return {
        "mode": settings.arbitrage_env,
        "trading_state": state,
        "halted_reason": worst[1].reason if worst and state == "HALTED" else None,
        **arm,
        "run": None,
        "last_run": {k: last[k] for k in ("run_id", "status", "exit_code", "stop_reason")}
        if last else None,
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "engine_running": False,
        "data_dir": str(settings.data_dir),
    }


def cmd_audit(settings: Settings, args: AuditArgs) -> int:
    for row in EngineClient(settings).ask_or_here("audit", args)["rows"]:
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["ts"]))
        print(f"{ts}Z {row['surface']:<8} {row['user_id']:<16} {row['role']:<8} "
              f"{row['command']:<8} {row['args']} -> {row['outcome']}")
    return ExitCode.OK


def cmd_logs(settings: Settings, args: LogsArgs) -> int:
    from datetime import UTC, datetime

    from core.monitoring.log_extract import extract_errors, parse_since

    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    entries = extract_errors(settings.data_dir / "logs", since)
    for entry in entries:
        print(entry)
    print(f"{len(entries)} error entries", file=sys.stderr)
    return ExitCode.OK


def cmd_incident(settings: Settings, args: IncidentArgs) -> int:
    """A blank incident report by hand (runbook §7.1), with the current status."""
    from core.monitoring.incident import open_by_hand

    client = EngineClient(settings)
    path = open_by_hand(settings.data_dir, args.title, client.actor, _status(settings))
    print(f"incident report: {path}")
    return ExitCode.OK


def cmd_config(settings: Settings, args: ConfigArgs) -> int:
    """Which files were read, in order, and everything the service would ignore or
    refuse; exit 2 when there is any, so "settings OK" means the service agrees."""
    import os
    from pathlib import Path

    from core.env_files import resolve_env_files
    from core.settings_check import check_settings

    report = check_settings(settings, resolve_env_files(Path.cwd()), os.environ)
    for line in report.loaded:
        print(line)
    print(f"data dir {settings.data_dir}")
    for name, present in settings.secrets_present.items():
        print(f"  {name}: {'set' if present else 'not set'}")
    for note in report.notes:
        print(f"  {note}")
    if report.errors:
        for error in report.errors:
            print(f"arbops config: {error}", file=sys.stderr)
        print(f"settings NOT OK: {len(report.errors)} problem(s)", file=sys.stderr)
        return ExitCode.REFUSED
    print("settings OK")
    return ExitCode.OK


# --- engine control ---------------------------------------------------------------------
def cmd_stop(settings: Settings, args: ReasonArgs) -> int:
    result = EngineClient(settings).ask_or_here("stop", args)
    print(f"run {result['run_id']}: {result['action']}")
    return ExitCode.OK


def cmd_pause(settings: Settings, args: ReasonArgs) -> int:
    result = EngineClient(settings).ask_or_here("pause", args)
    print(f"trading state {result['trading_state']}")
    return ExitCode.OK


def cmd_resume(settings: Settings, args: ConfirmArgs) -> int:
    result = EngineClient(settings).ask_or_here("resume", args)
    print(f"trading state {result['trading_state']}")
    return ExitCode.OK


def preview_reset(settings: Settings, args: ResetArgs) -> None:
    """What stays open after the reset, shown before the operator confirms it."""
    client = EngineClient(settings)
    try:
        leftovers = client.ask("still_open")
    except EngineNotRunning:
        leftovers = client.here(lambda s: s.still_open())
    print(f"still open per journal: {len(leftovers['open_orders'])} orders, "
          f"{len(leftovers['open_positions'])} positions")


def cmd_reset(settings: Settings, args: ResetArgs) -> int:
    result = EngineClient(settings).ask_or_here("reset", args)
    print(f"trading state {result['trading_state']}")
    return ExitCode.OK


def cmd_notify(settings: Settings, args: NotifyArgs) -> int:
    """`arbops notify test`: a sample alert through the running service's notifier."""
    try:
        result = EngineClient(settings).ask("notify", args)
    except EngineNotRunning:
        raise ServiceError("no service is running: start `arbops serve` (with "
                           "TELEGRAM_BOT_TOKEN) and try again", ExitCode.FAILED) from None
    print(f"test alert queued through {result['notifier']}")
    return ExitCode.OK
