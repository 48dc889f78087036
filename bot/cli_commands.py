"""Handlers behind each `arbops` command. Each returns an exit code.

Heavy modules (engine, store, aiogram) are imported inside the handlers that
need them, so `arbops status` and `arbops kill` start fast.
"""
from __future__ import annotations

import asyncio
import getpass
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bot.cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, CliError, print_json
from core.commands import (
    AuditArgs,
    ConfigArgs,
    ConfirmArgs,
    DemoArgs,
    IncidentArgs,
    LogsArgs,
    ReasonArgs,
    ResetArgs,
    RunArgs,
    StatusArgs,
)
from core.control_channel import EngineNotRunning, request_sync, socket_path_for
from core.settings import Settings

ACTOR = f"cli:{getpass.getuser()}"


def _control(settings: Settings, cmd: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = request_sync(socket_path_for(settings.data_dir), cmd, {"actor": ACTOR, **(args or {})},
                         timeout=10.0)
    if not reply.get("ok"):
        raise CliError(str(reply.get("error")), int(reply.get("code", EXIT_FAILED)))
    result: dict[str, Any] = reply["result"]
    return result


# --- read-only ------------------------------------------------------------------------
def cmd_status(settings: Settings, args: StatusArgs) -> int:
    try:
        status = _control(settings, "status")
        status["engine_running"] = True
    except EngineNotRunning:
        status = asyncio.run(_offline_status(settings))
    if args.json_output:
        print_json(status)
        return EXIT_OK
    run = status.get("run")
    print(f"mode {status['mode']}  state {status['trading_state']}  "
          f"engine {'running' if status['engine_running'] else 'not running'}  "
          f"armed {'yes' if status['armed'] else 'no'}  rss {status['rss_mb']} MB")
    if status.get("halted_reason"):
        print(f"halted: {status['halted_reason']}")
    if run:
        print(f"run {run['run_id']}: phase {run['phase']} {run['universe']}  "
              f"{run['elapsed_s']:.0f}/{run['duration_s'] or float('inf'):.0f}s  round trips {run['round_trips']}  "
              f"PnL ${run['pnl_usd']:+.2f}  open {run['open_positions']}")
    return EXIT_OK


async def _offline_status(settings: Settings) -> dict[str, Any]:
    """Status from the journal when no engine process answers."""
    import psutil

    from core.clock import SystemClock
    from core.journal.sqlite_store import SqliteStore
    from core.safety.live_safety import LiveSafety
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
    halted = bool(flag and flag.startswith("HALTED"))
    return {
        "mode": settings.arbitrage_env,
        "trading_state": "HALTED" if halted else "ACTIVE",
        "halted_reason": flag.split(":", 1)[1] if halted and flag and ":" in flag else None,
        **arm,
        "run": None,
        "last_run": {k: last[k] for k in ("run_id", "status", "exit_code", "stop_reason")}
        if last else None,
        "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1),
        "engine_running": False,
        "data_dir": str(settings.data_dir),
    }


def cmd_audit(settings: Settings, args: AuditArgs) -> int:
    async def rows() -> list[dict[str, Any]]:
        from core.journal.sqlite_store import SqliteStore

        store = await SqliteStore.open(settings.data_dir / "arbops.sqlite3")
        try:
            return await store.audit_rows(args.limit)
        finally:
            await store.close()

    for row in asyncio.run(rows()):
        ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row["ts"]))
        print(f"{ts}Z {row['surface']:<8} {row['user_id']:<16} {row['role']:<8} "
              f"{row['command']:<8} {row['args']} -> {row['outcome']}")
    return EXIT_OK


def cmd_logs(settings: Settings, args: LogsArgs) -> int:
    from datetime import UTC, datetime

    from core.monitoring.log_extract import extract_errors, parse_since

    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    entries = extract_errors(settings.data_dir / "logs", since)
    for entry in entries:
        print(entry)
    print(f"{len(entries)} error entries", file=sys.stderr)
    return EXIT_OK


def cmd_incident(settings: Settings, args: IncidentArgs) -> int:
    """A blank incident report by hand (runbook §7.1), with the current status."""
    from core.monitoring.incident import open_by_hand

    try:
        status = _control(settings, "status")
    except EngineNotRunning:
        status = asyncio.run(_offline_status(settings))
    path = open_by_hand(settings.data_dir, args.title, ACTOR, status)
    print(f"incident report: {path}")
    return EXIT_OK


def cmd_config(settings: Settings, args: ConfigArgs) -> int:
    print(f"settings OK (ARBITRAGE_ENV={settings.arbitrage_env}, data dir {settings.data_dir})")
    for name, present in settings.secrets_present.items():
        print(f"  {name}: {'set' if present else 'not set'}")
    if settings.postgres_dsn is not None:
        print("  POSTGRES_DSN is set but not used: arbops keeps its journal in SQLite")
    return EXIT_OK


# --- engine control ---------------------------------------------------------------------
def cmd_stop(settings: Settings, args: ReasonArgs) -> int:
    try:
        result = _control(settings, "stop", {"reason": f"stop: {args.reason}"})
    except EngineNotRunning:
        raise CliError("no engine is running on this data dir", EXIT_FAILED) from None
    print(f"run {result['run_id']}: {result['action']}")
    return EXIT_OK


def cmd_kill(settings: Settings, args: ReasonArgs) -> int:
    t0 = time.perf_counter()
    try:
        result = _control(settings, "kill", {"reason": args.reason})
        print(f"HALTED ({(time.perf_counter() - t0) * 1000:.0f} ms): {result['message']}")
        return EXIT_OK
    except EngineNotRunning:
        pass
    result = asyncio.run(_offline_kill(settings, args.reason))
    print(f"HALTED (no engine running): flag persisted; {len(result['open_orders'])} open "
          "orders in the journal")
    venues = result["venues"]
    if "resolved" in venues:
        print(f"  venues: {len(venues['resolved'])} journal order(s) resolved, "
              f"{len(venues['foreign_cancelled'])} other order(s) cancelled, cancel-all "
              f"{venues['cancel_all']}; unresolved: {venues['unresolved'] or 'none'}")
    else:
        print(f"  venues: {venues['venues']}")
    for intent in result["open_orders"]:
        print(f"  still open per journal: {intent['venue']} {intent['symbol']} "
              f"{intent['side']} {intent['client_order_id']}")
    return EXIT_OK


async def _offline_kill(settings: Settings, reason: str) -> dict[str, Any]:
    from bot.app import build_service

    service = await build_service(settings)
    try:
        await service.kill(reason, ACTOR)
        venues = await service.cancel_on_venues()
        return {**await service.still_open(), "venues": venues}
    finally:
        await service.store.close()


def cmd_pause(settings: Settings, args: ReasonArgs) -> int:
    try:
        result = _control(settings, "pause", {"reason": args.reason})
    except EngineNotRunning:
        raise CliError("no engine is running on this data dir: nothing to pause",
                       EXIT_FAILED) from None
    print(f"trading state {result['trading_state']}")
    return EXIT_OK


def cmd_resume(settings: Settings, args: ConfirmArgs) -> int:
    _confirm("RESUME", "resume entries (back to ACTIVE)", args.confirm)
    try:
        result = _control(settings, "resume", {"reason": args.reason})
    except EngineNotRunning:
        raise CliError("no engine is running on this data dir: nothing to resume",
                       EXIT_FAILED) from None
    print(f"trading state {result['trading_state']}")
    return EXIT_OK


def cmd_reset(settings: Settings, args: ResetArgs) -> int:
    try:
        leftovers = _control(settings, "still_open")
        running = True
    except EngineNotRunning:
        running = False
        leftovers = asyncio.run(_offline(settings, lambda s: s.still_open()))
    print(f"still open per journal: {len(leftovers['open_orders'])} orders, "
          f"{len(leftovers['open_positions'])} positions")
    _confirm("RESET", "leave HALTED and allow trading again", args.confirm)
    result = (_control(settings, "reset") if running
              else asyncio.run(_offline(settings, lambda s: s.reset(ACTOR))))
    print(f"trading state {result['trading_state']}")
    return EXIT_OK


async def _offline(settings: Settings, fn: Any) -> Any:
    from bot.app import build_service
    from core.service import ServiceError

    service = await build_service(settings)
    try:
        return await fn(service)
    except ServiceError as exc:
        raise CliError(str(exc), exc.code) from None
    finally:
        await service.store.close()


def _confirm(phrase: str, impact: str, given: str | None) -> None:
    """Second step for risk-adding commands: type the phrase shown on screen."""
    if given is not None:
        if given != phrase:
            raise CliError(f"confirmation phrase does not match (expected {phrase})")
        return
    if not sys.stdin.isatty():
        raise CliError(f"this command needs confirmation: pass --confirm {phrase} "
                       "or run it in a terminal")
    typed = input(f"This will {impact}. Type {phrase} to confirm: ").strip()
    if typed != phrase:
        raise CliError("not confirmed; nothing changed")


# --- runs -----------------------------------------------------------------------------
def cmd_run(settings: Settings, args: RunArgs) -> int:
    return _run(settings, args, show_progress=sys.stderr.isatty())


def cmd_demo(settings: Settings, args: DemoArgs) -> int:
    print(f"arbops demo: paper phase 1 on the simulated market ({args.universe}, "
          f"{args.seconds:.0f} s, seed {args.seed if args.seed is not None else settings.sim_seed})")
    run_args = RunArgs(phase=1, mode="paper", universe=args.universe,
                       duration_seconds=args.seconds, seed=args.seed)
    return _run(settings, run_args, show_progress=True)


def _run(settings: Settings, args: RunArgs, show_progress: bool) -> int:
    from core.files import check_writable

    if args.kpi_output_path is not None:
        problem = check_writable(args.kpi_output_path)
        if problem:
            raise CliError(f"--kpi-output-path: {problem}")
    try:
        return _run_in_service(settings, args)
    except EngineNotRunning:
        pass
    return asyncio.run(_run_async(settings, args, show_progress))


def _run_in_service(settings: Settings, args: RunArgs) -> int:
    """One engine per data dir: with `arbops serve` up, the phase runs inside it."""
    from bot.progress import summary_table

    payload = args.model_dump(mode="json", exclude_none=True)
    started = _control(settings, "run", payload)
    print(f"run {started['run_id']} started in the running service; following it "
          "(Ctrl+C stops following, not the run)")
    poll = {"actor": ACTOR + "-poll"}
    while True:
        time.sleep(1.0)
        status = _control(settings, "status", poll)
        run = status.get("run")
        if run is None or run.get("run_id") != started["run_id"]:
            break
        print(f"  {run['elapsed_s']:.0f}/{run['duration_s'] or float('inf'):.0f}s  round trips "
              f"{run['round_trips']}  PnL ${run['pnl_usd']:+.2f}", file=sys.stderr)
    last = _control(settings, "last_run", poll)["last_run"]
    if last is None or last["run_id"] != started["run_id"]:
        raise CliError("the run ended without a result; see `arbops logs errors`", EXIT_FAILED)
    print(summary_table(last["kpi"], last["kpi_path"]))
    return int(last["exit_code"])


async def _run_async(settings: Settings, args: RunArgs, show_progress: bool) -> int:
    from bot.app import build_service, start_watchdog
    from bot.progress import ProgressLine, summary_table
    from core.control_channel import ControlServer
    from core.monitoring.logging_setup import setup_logging
    from core.safety.instance_lock import InstanceLock, InstanceLocked
    from core.service import ServiceError

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(settings.data_dir, settings.log_level, settings.secret_values(),
                  console=not show_progress)
    lock = InstanceLock(settings.data_dir)
    try:
        lock.acquire()
    except InstanceLocked as exc:
        raise CliError(str(exc)) from None
    service = await build_service(settings, fast=settings.sim_fast)
    from core.safety.redis_state import FileEngineLock

    if service.safety.redis is None:
        service.safety.lock = FileEngineLock(existing=lock)  # one lock per data dir
    server = ControlServer(socket_path_for(settings.data_dir), service.control)
    progress = ProgressLine() if show_progress else None
    watchdog = start_watchdog(service)
    from bot.monitoring_app import start_metrics

    metrics = await start_metrics(service, settings)
    try:
        try:
            spec = service.plan_run(args)
        except ServiceError as exc:
            raise CliError(str(exc), exc.code) from None
        await server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, service, sig)
        try:
            outcome = await service.run_phase(spec, progress)
        except ServiceError as exc:
            raise CliError(str(exc), exc.code) from None
        if progress:
            progress.finish()
        print(summary_table(outcome.kpi, str(outcome.kpi_path)))
        print(f"KPI JSON: {outcome.kpi_path}")
        return outcome.exit_code
    finally:
        if metrics is not None:
            await metrics.stop()
        watchdog.stop()
        await server.stop()
        await service.store.close()
        lock.release()


def _on_signal(service: Any, sig: signal.Signals) -> None:
    if service.current is not None:
        service.current.request_stop(f"signal {sig.name}")


def cmd_serve(settings: Settings, args: Any) -> int:
    from bot.serve import serve

    return asyncio.run(serve(settings))


__all__ = ["EXIT_REFUSED", "Path"]


def cmd_notify(settings: Settings, args: Any) -> int:
    """`arbops notify test`: a sample alert through the running service's notifier."""
    try:
        result = _control(settings, "notify_test")
    except EngineNotRunning:
        raise CliError("no service is running: start `arbops serve` (with TELEGRAM_BOT_TOKEN) "
                       "and try again", EXIT_FAILED) from None
    print(f"test alert queued through {result['notifier']}")
    return EXIT_OK
