"""`arbops kill`: HALT every engine this user runs, whatever else is wrong (R-K1, R-K2, R-K6).

For each data dir where an engine may run (ARBOPS_DATA_DIR when it is set, else every
engine in the user's registry plus the default data dir):

1. the HALT is written to the dir's state file first - no database, no network;
2. the engine is asked over its control socket, for at most ASK_TIMEOUT_S;
3. an engine that does not answer is stopped (SIGTERM, then SIGKILL; its pid from the
   instance lock), and then, as when none runs,
4. this process does the engine's part: the journal's flag and Redis, the journal's
   orders resolved and every open order cancelled on the venues, an incident report;
   each step bounded, each outcome said, nothing claimed that did not happen.

Exit 0 when every target is HALTED and persisted and nothing failed; 1 otherwise
(a venue that could not be reached, no engine found anywhere).
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.commands import ReasonArgs
from core.config.settings import DEFAULT_DATA_DIR, Settings, absolute_data_dir
from core.control_channel import ask, local_actor, socket_path_for, verify_listener_path
from core.domain.models import TradingState
from core.errors import ArbopsError, EngineNotRunning, ExitCode, UntrustedListener
from core.redaction import redact
from core.safety.engine_registry import running_engines
from core.safety.instance_lock import probe_holder
from core.trading.durable_state import StateRecord, read_state_file, write_state_file

ASK_TIMEOUT_S = 3.0  # a healthy engine answers a kill in milliseconds
TERM_WAIT_S = 2.0
KILL_WAIT_S = 2.0
STEP_TIMEOUT_S = 6.0  # any one journal, Redis or venue step of the offline procedure
VENUE_TIMEOUT_MS = 4_000


@dataclass
class TargetResult:
    data_dir: Path
    ok: bool = True
    found: bool = False  # an engine ran there, or a journal exists
    refused: bool = False  # the data dir or its listener belongs to another user
    already: bool = False  # the state file said HALTED before this kill
    lines: list[str] = field(default_factory=list)

    def say(self, line: str, ok: bool = True) -> None:
        self.lines.append(line)
        self.ok = self.ok and ok


def cmd_kill(settings: Settings, args: ReasonArgs) -> int:
    actor = local_actor()
    why = f"{args.reason} (by {actor})"
    targets, note = kill_targets(settings)
    results = [kill_one(settings.model_copy(update={"data_dir": d}), args.reason, why)
               for d in targets]
    for r in results:
        for line in r.lines:
            print(redact(line), file=sys.stderr if r.refused else sys.stdout)
    if note:
        print(note)
    if any(r.refused for r in results):
        return ExitCode.REFUSED
    if not any(r.found for r in results):
        print("no engine found: none registered for this user, and no journal in "
              + ", ".join(str(r.data_dir) for r in results)
              + " (HALT written there anyway)")
        return ExitCode.FAILED
    return ExitCode.OK if all(r.ok for r in results) else ExitCode.FAILED


def kill_targets(settings: Settings) -> tuple[list[Path], str]:
    """The data dirs to halt, and a note about running engines left out."""
    engines = running_engines()
    explicit = settings.data_dir != absolute_data_dir(DEFAULT_DATA_DIR)
    if explicit:
        others = [e for e in engines if e.data_dir != settings.data_dir]
        note = "".join(f"\nnot halted (ARBOPS_DATA_DIR names another): engine pid {e.pid} "
                       f"in {e.data_dir}" for e in others)
        return [settings.data_dir], note.strip()
    dirs = [e.data_dir for e in engines]
    if settings.data_dir not in dirs:
        dirs.append(settings.data_dir)
    return dirs, ""


def kill_one(settings: Settings, reason: str, why: str) -> TargetResult:
    d = settings.data_dir
    res = TargetResult(d)
    try:
        verify_listener_path(socket_path_for(d))
    except UntrustedListener as exc:
        return _refused(res, exc)
    res.found = (d / "arbops.sqlite3").exists()
    _write_file(res, why)
    t0 = time.perf_counter()
    try:
        reply = ask(socket_path_for(d), "kill", {"reason": reason}, ASK_TIMEOUT_S)
    except UntrustedListener as exc:
        return _refused(res, exc)
    except EngineNotRunning:
        if probe_holder(d) is None:
            res.lines.insert(0, f"HALTED {d}: no engine was running")
            _offline(settings, why, res)
            return res
        reply = None  # a lock holder with no socket: as stuck as one that does not answer
        problem = "holds the lock but has no control socket"
    except ArbopsError as exc:  # timeout, broken channel, an error reply
        reply, problem = None, f"did not answer in {ASK_TIMEOUT_S:g} s ({exc})"
    if reply is not None:
        res.found = True
        ms = (time.perf_counter() - t0) * 1000
        res.lines.insert(0, f"HALTED {d}: engine answered in {ms:.0f} ms: {reply.get('message')}")
        stores = reply.get("stores") or {}
        res.say("  kept by: " + _stores_text(stores))
        return res
    res.found = True
    res.lines.insert(0, f"HALTED {d}: the engine {problem}")
    _stop_engine(d, res)
    _offline(settings, why, res)
    return res


def _refused(res: TargetResult, exc: UntrustedListener) -> TargetResult:
    """Nothing stopped, nothing believed: another user's data dir or engine."""
    res.refused = True
    res.lines.insert(0, f"NOT HALTED {res.data_dir}: {exc}")
    res.ok = False
    return res


def _write_file(res: TargetResult, why: str) -> None:
    current = read_state_file(res.data_dir)
    if current is not None and current.state is TradingState.HALTED:
        res.already = True
        res.say(f"  state file: already HALTED ({current.reason})")
        return
    try:
        write_state_file(res.data_dir, StateRecord(TradingState.HALTED, why, time.time()))
        res.say("  state file: HALTED")
    except OSError as exc:
        res.say(f"  state file: FAILED ({exc})", ok=False)


def _stop_engine(d: Path, res: TargetResult) -> None:
    """SIGTERM, then SIGKILL, the process holding the dir's instance lock."""
    holder = probe_holder(d) or {}
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") not in (None, socket.gethostname()):
        res.say(f"  engine not stopped: its pid is not known on this host ({holder})", ok=False)
        return
    for sig, wait in ((signal.SIGTERM, TERM_WAIT_S), (signal.SIGKILL, KILL_WAIT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            res.say(f"  engine pid {pid} is gone")
            return
        except PermissionError as exc:
            res.say(f"  engine pid {pid} not stopped: {exc}", ok=False)
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if probe_holder(d) is None:
                res.say(f"  engine pid {pid} stopped ({sig.name})")
                return
            time.sleep(0.05)
    res.say(f"  engine pid {pid} still holds the lock after SIGKILL", ok=False)


def _offline(settings: Settings, why: str, res: TargetResult) -> None:
    """The engine's part of the kill, done here: each step bounded and reported."""
    from core.monitoring.logging_setup import redact_console

    redact_console(settings.secret_values())
    try:
        asyncio.run(_offline_steps(settings, why, res))
    except Exception as exc:  # noqa: BLE001 - said, never a traceback
        res.say(f"  offline procedure FAILED: {type(exc).__name__}: {exc}", ok=False)


async def _offline_steps(settings: Settings, why: str, res: TargetResult) -> None:
    from core.journal.sqlite_store import SqliteStore

    store: Any = None
    db = settings.data_dir / "arbops.sqlite3"
    actions: list[dict[str, Any]] = [{"step": "halt", "ok": True, "detail": "state file"}]
    try:
        if db.exists():
            try:
                store = await asyncio.wait_for(SqliteStore.open(db), STEP_TIMEOUT_S)
                await _journal_halt(store, why)
                res.say("  journal: HALTED")
                actions.append({"step": "persist_flag", "ok": True, "detail": "journal"})
            except Exception as exc:  # noqa: BLE001 - the file holds the HALT already
                res.say(f"  journal: not written ({_short(exc)}); the state file holds the "
                        "HALT and the next start copies it there")
                actions.append({"step": "persist_flag", "ok": False, "detail": _short(exc)})
                store = None if store is None else store
        await _redis_halt(settings, why, res)
        actions.append(await _cancel_on_venues(settings, store, res))
        await _still_open(store, res)
    finally:
        if store is not None:
            await store.close()
    if not res.already:  # one incident per kill, not one per repeated `arbops kill`
        _incident(settings, why, actions, res)


async def _journal_halt(store: Any, why: str) -> None:
    from core.domain.journal_kinds import EventKind
    from core.trading.state import HALT_FLAG

    now = time.time()
    await asyncio.wait_for(store.set_flag(HALT_FLAG, f"HALTED:{why}", now), STEP_TIMEOUT_S)
    await asyncio.wait_for(store.record_event(now, None, EventKind.KILLED, {"reason": why}),
                           STEP_TIMEOUT_S)


async def _redis_halt(settings: Settings, why: str, res: TargetResult) -> None:
    if settings.redis_url is None:
        return
    from core.safety.redis_state import RedisState, account_id

    redis = RedisState.from_url(settings.redis_url.get_secret_value(), settings.redis_key_prefix,
                                account_id(settings), timeout_s=2.0)
    try:
        await asyncio.wait_for(redis.set_kill(why), STEP_TIMEOUT_S)
        res.say("  redis: HALTED")
    except Exception as exc:  # noqa: BLE001 - the other stores hold it
        res.say(f"  redis: not written ({_short(exc)})")
    finally:
        try:
            await asyncio.wait_for(redis.close(), 2.0)
        except Exception:  # noqa: BLE001 - closing an unreachable client
            pass


async def _cancel_on_venues(settings: Settings, store: Any, res: TargetResult) -> dict[str, Any]:
    keys = ("UPBIT_ACCESS_KEY", "UPBIT_SECRET_KEY", "BINANCE_API_KEY", "BINANCE_API_SECRET")
    if not all(settings.secrets_present[k] for k in keys):
        res.say("  venues: no venue keys configured (paper venues end with their run)")
        return {"step": "cancel_all", "ok": True, "detail": "no venue keys"}
    from bot.app import real_venues
    from core.venues.recovery import recover_live

    venues = real_venues(settings, timeout_ms=VENUE_TIMEOUT_MS)
    problems: list[str] = []
    try:
        if store is not None:
            try:
                for ex in venues.values():
                    await asyncio.wait_for(ex.load_markets(), STEP_TIMEOUT_S)
                report = await asyncio.wait_for(recover_live(store, venues, time.time()),
                                                STEP_TIMEOUT_S)
                res.say(f"  journal orders: {len(report.resolved)} resolved, "
                        f"{len(report.foreign_cancelled)} other order(s) cancelled"
                        + (f", unresolved: {report.unresolved}" if report.unresolved else ""),
                        ok=report.complete)
            except Exception as exc:  # noqa: BLE001 - cancel-all below still runs
                res.say(f"  journal orders: not resolved ({_short(exc)})", ok=False)
        for venue, ex in venues.items():
            try:
                cancelled = await asyncio.wait_for(ex.cancel_all_orders(), STEP_TIMEOUT_S)
                left = await asyncio.wait_for(ex.fetch_open_orders(), STEP_TIMEOUT_S)
                res.say(f"  {venue}: {len(cancelled)} order(s) cancelled, {len(left)} open",
                        ok=not left)
                if left:
                    problems.append(f"{venue}: {len(left)} open")
            except Exception as exc:  # noqa: BLE001 - the next venue still gets its cancels
                res.say(f"  {venue}: FAILED ({_short(exc)}); its orders may still be open",
                        ok=False)
                problems.append(f"{venue}: {_short(exc)}")
    finally:
        for ex in venues.values():
            try:
                await asyncio.wait_for(ex.close(), 2.0)
            except Exception:  # noqa: BLE001 - closing a client that failed
                pass
    return {"step": "cancel_all", "ok": not problems,
            "detail": "; ".join(problems) or "every open order cancelled"}


async def _still_open(store: Any, res: TargetResult) -> None:
    if store is None:
        return
    from core.domain.journal_kinds import UNRESOLVED_INTENTS

    try:
        intents = await asyncio.wait_for(store.intents_in_states(list(UNRESOLVED_INTENTS)),
                                         STEP_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - said
        res.say(f"  journal: could not list open orders ({_short(exc)})")
        return
    res.say(f"  still open per journal: {len(intents)} order(s)", ok=not intents)
    for i in intents:
        res.say(f"    {i['venue']} {i['symbol']} {i['side']} {i['client_order_id']}")


def _incident(settings: Settings, why: str, actions: list[dict[str, Any]],
              res: TargetResult) -> None:
    from core.monitoring.incident import write_incident

    try:
        path = write_incident(settings.data_dir, run_id="no-engine", title=f"kill: {why}",
                              trigger=why, metrics={"engine": "not answering or not running"},
                              actions=actions)
        res.say(f"  incident report: {path}")
    except OSError as exc:
        res.say(f"  incident report not written: {exc}", ok=False)


def _stores_text(stores: dict[str, str]) -> str:
    held = [k for k, v in stores.items() if v == "HALTED"]
    rest = [f"{k} ({v})" for k, v in stores.items() if v != "HALTED"]
    return ", ".join(held) + (("; not yet: " + "; ".join(rest)) if rest else "")


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:200]
