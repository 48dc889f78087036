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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli import print_json
from bot.cli.client import EngineClient
from core.commands import (
    AuditArgs,
    ConfigArgs,
    ConfirmArgs,
    IncidentArgs,
    JsonArgs,
    LogsArgs,
    NoArgs,
    NotifyArgs,
    ReasonArgs,
    ResetArgs,
    StatusArgs,
)
from core.config.settings import Settings
from core.errors import BadInput, EngineNotRunning, ExitCode, ServiceError

if TYPE_CHECKING:
    pass



# --- read-only ------------------------------------------------------------------------
def cmd_status(settings: Settings, args: StatusArgs) -> int:
    status = _status(settings)
    if args.json_output:
        print_json(status)
        return ExitCode.OK
    print("\n".join(status_lines(status, settings)))
    return ExitCode.OK


def status_lines(status: dict[str, Any], settings: Settings) -> list[str]:
    """`arbops status` for people: state, the run or the last one, the surfaces, where."""
    from bot.views import age, streams_line, usd, when, zone

    tz = zone(settings)
    out = [f"mode {status['mode']}  state {status['trading_state']}  "
           f"engine {'running' if status['engine_running'] else 'not running'}  "
           f"armed {'yes' if status['armed'] else 'no'}  rss {status['rss_mb']} MB"]
    if status.get("halted_reason"):
        out.append(f"halted: {status['halted_reason']}")
    run = status.get("run")
    if run:
        total = run["duration_s"]
        out.append(f"run {run['run_id']}: {str(run.get('mode', '')).upper()} phase "
                   f"{run['phase']} {run['universe']}  {age(run['elapsed_s'])} of "
                   f"{age(total) if total else 'continuous'}  round trips "
                   f"{run['round_trips']}  open {run['open_positions']}")
        # The three PnL figures, labelled (docs/monitoring.md, "Three PnL figures").
        out.append(f"  strategy PnL {usd(run['pnl_usd'])}  inventory revaluation "
                   f"{usd(run.get('inventory_pnl_usd'))}  total {usd(run.get('total_pnl_usd'))}")
        streams = streams_line(run.get("venue_streams"))
        if streams:
            out.append("  " + streams)
    last = status.get("last_run")
    if last:
        gate = f", gate {last['gate']}" if last.get("gate") else ""
        ended = f", ended {when(last['ended_at'], tz)}" if last.get("ended_at") else ""
        out.append(f"last run {last['run_id']}: {last.get('status') or 'finished'}, exit "
                   f"{last.get('exit_code') if last.get('exit_code') is not None else '-'}"
                   f"{gate}{ended} ({last.get('stop_reason') or '-'})")
    elif not run:
        out.append("no run recorded in this data dir yet")
    surfaces = status.get("surfaces")
    if surfaces:
        out.append("telegram " + _surface(surfaces.get("telegram") or {}, tz) + "  metrics "
                   + _surface(surfaces.get("metrics") or {}, tz) + "  redis "
                   + _surface(surfaces.get("redis") or {}, tz))
    elif not status["engine_running"]:
        out.append("telegram, metrics: off (no engine running; `arbops serve` starts them)")
    out.append(f"data dir {status.get('data_dir') or settings.data_dir}")
    hint = _other_data_dir_hint(settings, status)
    if hint:
        out.append(hint)
    return out


def _surface(s: dict[str, Any], tz: Any) -> str:
    from bot.views import when

    state = str(s.get("state") or "unknown")
    if state == "retrying":
        return (f"RETRYING since {when(s.get('since'), tz)} ({s.get('failures')} failures; "
                f"last: {s.get('last_error')})")
    if state == "serving" and s.get("url"):
        return f"serving {s['url']}"
    if s.get("ping_ms") is not None:
        return f"{state} (ping {s['ping_ms']} ms)"
    return state


def _other_data_dir_hint(settings: Settings, status: dict[str, Any]) -> str | None:
    """`make demo` writes to .arbops/demo: an empty default data dir points there."""
    if status.get("last_run") or status.get("run"):
        return None
    demo = Path.cwd() / ".arbops" / "demo"
    if demo.resolve() != settings.data_dir.resolve() and (demo / "arbops.sqlite3").exists():
        return (f"`make demo` keeps its runs in {demo}: ARBOPS_DATA_DIR=.arbops/demo "
                "arbops status (or report daily --date today)")
    return None


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
        "last_run": _last_run_row(last),
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "engine_running": False,
        "data_dir": str(settings.data_dir),
    }


def cmd_positions(settings: Settings, args: JsonArgs) -> int:
    from bot.views import positions_lines

    rows = EngineClient(settings).ask_or_here("positions", args).get("rows", [])
    if args.json_output:
        print_json({"rows": rows})
    else:
        print("\n".join(positions_lines(rows, time.time())))
    return ExitCode.OK


def cmd_kpi(settings: Settings, args: JsonArgs) -> int:
    from bot.progress import summary_table

    result = EngineClient(settings).ask_or_here("kpi", args)
    if args.json_output:
        print_json(result)
    elif not result or not result.get("kpi"):
        print(f"no finished run yet in {settings.data_dir}")
    else:
        print(summary_table(result["kpi"], str(result.get("kpi_path") or "-")))
    return ExitCode.OK


def cmd_guards(settings: Settings, args: JsonArgs) -> int:
    from bot.views import guard_lines

    result = EngineClient(settings).ask_or_here("guards", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(guard_lines(result)))
    return ExitCode.OK


def cmd_version(settings: Settings, args: NoArgs) -> int:
    """This CLI's version; the running engine's too when it differs."""
    from core.version import version_info, version_line

    print(version_line())
    try:
        engine = EngineClient(settings).ask("version")
    except EngineNotRunning:
        return ExitCode.OK
    if engine != version_info():
        print(f"the running engine: arbops {engine.get('version')} (commit "
              f"{engine.get('commit')}, Python {engine.get('python')}): restart it to run this one")
    return ExitCode.OK


def _last_run_row(last: dict[str, Any] | None) -> dict[str, Any] | None:
    """The journal's newest run, with its gate's verdict."""
    import json

    if not last:
        return None
    out = {k: last.get(k) for k in ("run_id", "status", "exit_code", "stop_reason",
                                    "ended_at", "kpi_path")}
    try:
        gate = json.loads(last["gate_json"]) if last.get("gate_json") else None
    except ValueError:
        gate = None
    out["gate"] = gate.get("result") if isinstance(gate, dict) else None
    return out


def cmd_audit(settings: Settings, args: AuditArgs) -> int:
    from bot.views import audit_lines, zone

    rows = EngineClient(settings).ask_or_here("audit", args)["rows"]
    print("\n".join(audit_lines(rows, zone(settings))))
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

    from core.config.check import check_settings
    from core.config.env_files import resolve_env_files

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
