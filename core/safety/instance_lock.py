"""One engine per data dir (R-S5 file-lock fallback).

``flock(LOCK_EX | LOCK_NB)`` on ``<data_dir>/engine.lock``. The kernel drops the lock
when the holder's process dies, so a leftover file is harmless: only the lock matters,
the file's JSON content ({host, pid, since}) is just for the error message.

stdlib only (used on the fast CLI paths).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Self

from core.errors import InstanceLocked

__all__ = ["LOCK_NAME", "InstanceLock", "InstanceLocked", "lock_path_for", "probe_holder"]

LOCK_NAME = "engine.lock"


def lock_path_for(data_dir: Path) -> Path:
    """``<data_dir>/engine.lock``."""
    return Path(data_dir) / LOCK_NAME


def _resolve(path: Path) -> Path:
    path = Path(path)
    return path / LOCK_NAME if path.is_dir() else path


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = b""
        while chunk := os.read(fd, 65536):
            data += chunk
        obj = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_holder_retrying(fd: int, attempts: int = 10, delay: float = 0.02) -> dict:
    # The winner takes the lock, then writes its info: we may look in between.
    holder: dict = {}
    for _ in range(attempts):
        holder = _read_holder(fd)
        if holder:
            break
        time.sleep(delay)
    return holder


class InstanceLock:
    """Exclusive, non-blocking, per-data-dir engine lock.

    ``path`` is the lock file (``<data_dir>/engine.lock``); passing the data dir itself
    also works. Use ``acquire()``/``release()`` or ``with InstanceLock(p): ...``.
    """

    def __init__(self, path: Path) -> None:
        self.path = _resolve(path)
        self._fd: int | None = None
        self.holder: dict | None = None  # our own info while held

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> dict:
        """Take the lock or raise :class:`InstanceLocked`; returns our holder info."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this InstanceLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # O_CLOEXEC by default
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder_retrying(fd)
            os.close(fd)
            raise InstanceLocked(holder, self.path) from None
        except BaseException:
            os.close(fd)
            raise
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
            with contextlib.suppress(OSError):
                os.fsync(fd)
        except BaseException:
            os.close(fd)  # closing drops the lock
            raise
        self._fd = fd
        self.holder = info
        return info

    def release(self) -> None:
        """Drop the lock (idempotent). The file stays; that is fine."""
        fd, self._fd = self._fd, None
        self.holder = None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:  # pragma: no cover - safety net
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def probe_holder(path: Path) -> dict | None:
    """Who holds the lock? ``None`` if nobody (no engine), else the holder info ({} if unknown).

    Takes a shared lock for an instant to test; harmless to a running engine, but an
    engine starting in that very instant could see it as held.
    """
    path = _resolve(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder_retrying(fd, attempts=3)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
