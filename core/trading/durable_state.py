"""The trading state kept where no ordinary fault can lose it (R-K6, R-S7).

A HALT (or a pause) is written first to a small file in the data dir - atomically and
fsynced, with no database and no network in the way - and then mirrored to the
journal's flag and, when configured, to Redis, retrying each until it accepts. At
start-up the engine takes the most severe state any store holds: HALTED if any says
HALTED, else REDUCING if any says so. A file that cannot be read counts as HALTED:
an unreadable kill flag must never read as "trade".

`status` says, per store, what it holds or why it does not yet, so a kill can tell
the operator exactly where it is recorded.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from core.clock import Clock
from core.domain.models import TradingState
from core.files import fsync_dir
from core.ports import JournalStore
from core.redaction import redact
from core.trading.state import HALT_FLAG, TradingStateBox

STATE_FILE = "trading_state.json"
_SEVERITY = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}
_MIRROR_TIMEOUT_S = 6.0  # a journal waits up to 5 s on a lock before it says so


# (data dir, state, reason) already warned about in this process
_SAID: set[tuple[str, str, str]] = set()


@dataclass(frozen=True, slots=True)
class StateRecord:
    state: TradingState
    reason: str
    at: float

    def flag(self) -> str:
        """The journal flag's text (`HALTED:<reason>`), the form older versions wrote."""
        return f"{self.state}:{self.reason}"


class ExtraStore:
    """One more place the state is mirrored to (Redis): how to write and read it."""

    def __init__(self, write: Callable[[StateRecord], Awaitable[None]],
                 read: Callable[[], Awaitable[StateRecord | None]]) -> None:
        self.write = write
        self.read = read


def state_file(data_dir: Path) -> Path:
    return Path(data_dir) / STATE_FILE


def write_state_file(data_dir: Path, record: StateRecord) -> None:
    """Atomic and durable: temp file, fsync, rename, fsync the directory. Stdlib only,
    so the CLI's kill can call it before it imports anything else."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = state_file(data_dir)
    tmp = data_dir / f".{STATE_FILE}.{os.getpid()}.tmp"
    body = json.dumps({"state": str(record.state), "reason": redact(record.reason),
                       "at": record.at})
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body.encode("utf-8") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(data_dir)


def read_state_file(data_dir: Path) -> StateRecord | None:
    """The file's state; None when there is no file. Unreadable means HALTED."""
    path = state_file(data_dir)
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return StateRecord(TradingState.HALTED, f"state file unreadable: {exc}", 0.0)
    try:
        data = json.loads(raw)
        return StateRecord(TradingState(data["state"]), str(data.get("reason", "")),
                           float(data.get("at", 0.0)))
    except (ValueError, KeyError, TypeError) as exc:
        return StateRecord(TradingState.HALTED, f"state file unreadable: {exc}", 0.0)


def parse_flag(flag: str | None) -> StateRecord | None:
    """The journal flag back into a record (`HALTED:reason`, or a bare state)."""
    if not flag:
        return None
    name, _, reason = flag.partition(":")
    try:
        state = TradingState(name)
    except ValueError:
        return StateRecord(TradingState.HALTED, f"journal flag unreadable: {flag!r}", 0.0)
    return StateRecord(state, reason or "persisted", 0.0)


def most_severe(records: Mapping[str, StateRecord | None]) -> tuple[str, StateRecord] | None:
    found = [(name, r) for name, r in records.items() if r is not None]
    if not found:
        return None
    return max(found, key=lambda nr: _SEVERITY[nr[1].state])


class DurableState:
    def __init__(self, data_dir: Path, store: JournalStore, box: TradingStateBox, clock: Clock,
                 extras: Mapping[str, ExtraStore] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.store = store
        self.box = box
        self.clock = clock
        self.extras = dict(extras or {})
        self.status: dict[str, str] = {"file": "-", "journal": "-",
                                       **{name: "-" for name in self.extras}}
        self._target: StateRecord | None = None
        self._mirror_task: asyncio.Task[None] | None = None
        self._settled = asyncio.Event()

    # --- writing ------------------------------------------------------------------
    def record(self, state: TradingState, reason: str) -> bool:
        """Write the file now (synchronously: it must not wait for anything) and start
        mirroring to the other stores. Returns whether the file holds it."""
        target = StateRecord(state, reason, self.clock.time())
        self._target = target
        try:
            write_state_file(self.data_dir, target)
            self.status["file"] = str(state)
            ok = True
        except OSError as exc:
            self.status["file"] = f"FAILED: {exc}"
            logger.error("could not write the trading state file: {}", exc)
            ok = False
        for name in ("journal", *self.extras):
            self.status[name] = "pending"
        self._start_mirror()
        return ok

    def _start_mirror(self) -> None:
        self._settled.clear()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a thread): the next record() or load() mirrors it
        if self._mirror_task is not None and not self._mirror_task.done():
            self._mirror_task.cancel()
        self._mirror_task = loop.create_task(self._mirror(), name="state-mirror")

    async def _mirror(self) -> None:
        """Each store until it accepts; the newest record wins, older ones stop."""
        delay = 0.2
        while True:
            target = self._target
            if target is None:
                return
            pending = [n for n in ("journal", *self.extras) if self.status[n] != str(target.state)]
            for name in pending:
                try:
                    await asyncio.wait_for(self._write(name, target), _MIRROR_TIMEOUT_S)
                    if self._target is target:
                        self.status[name] = str(target.state)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - a store that fails is retried
                    self.status[name] = f"pending: {type(exc).__name__}: {exc}"[:200]
            if self._target is not target:
                continue
            if all(self.status[n] == str(target.state) for n in ("journal", *self.extras)):
                self._settled.set()
                return
            logger.warning("trading state {} not yet in every store: {}", target.state,
                           self.status)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _write(self, name: str, target: StateRecord) -> None:
        if name == "journal":
            if target.state is TradingState.ACTIVE:
                await self.store.clear_flag(HALT_FLAG)
            else:
                await self.store.set_flag(HALT_FLAG, target.flag(), target.at)
        else:
            await self.extras[name].write(target)

    async def settle(self, timeout_s: float) -> dict[str, str]:
        """Wait up to `timeout_s` for every store to hold the last record; what each holds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout_s)
        return dict(self.status)

    def holds(self) -> list[str]:
        """The stores that hold the current target state."""
        want = str(self._target.state) if self._target else None
        return [name for name, st in self.status.items() if st == want]

    # --- reading --------------------------------------------------------------------
    async def load(self) -> StateRecord | None:
        """At start-up: the most severe state any store holds, applied to the box and
        written back to the stores that lack it. None when every store says ACTIVE."""
        found: dict[str, StateRecord | None] = {"file": read_state_file(self.data_dir)}
        found["journal"] = parse_flag(await self.store.get_flag(HALT_FLAG))
        for name, extra in self.extras.items():
            try:
                found[name] = await asyncio.wait_for(extra.read(), _MIRROR_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - an unreachable mirror holds nothing
                logger.warning("could not read the trading state from {}: {}", name, exc)
                found[name] = None
        worst = most_severe(found)
        if worst is None or worst[1].state is TradingState.ACTIVE:
            return None
        source, rec = worst
        self.box.set(rec.state, rec.reason, self.clock.time())
        said = (str(self.data_dir), str(rec.state), rec.reason)
        if said not in _SAID:  # a CLI that opens the journal twice says it once
            _SAID.add(said)
            logger.warning("trading state is {} (kept by the {}): {}", rec.state, source,
                           rec.reason)
        if any(r is None or r.state is not rec.state for r in found.values()):
            self.record(rec.state, rec.reason)
        else:
            self._target = rec
            for name in self.status:
                self.status[name] = str(rec.state)
            self._settled.set()
        return rec

    async def close(self) -> None:
        task, self._mirror_task = self._mirror_task, None
        if task is not None and not task.done():
            # A mirror still pending when the process ends is not lost: the file holds
            # the state and start-up writes it to the others.
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
