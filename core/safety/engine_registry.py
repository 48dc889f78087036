"""Where this user's engines run, so `arbops kill` finds them from any directory.

Every engine process (`arbops serve`, a foreground `arbops run`) writes one small
file under `${XDG_STATE_HOME:-~/.local/state}/arbops/engines/` naming its pid and
data dir while it holds that dir's instance lock, and removes it on the way out. An
entry whose process is gone, or whose data dir's lock nobody holds, is stale: it is
ignored and removed. The instance lock stays the truth; this is only the map to it.

Stdlib only: the CLI's kill imports it before anything else.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.safety.instance_lock import probe_holder


@dataclass(frozen=True, slots=True)
class EngineEntry:
    pid: int
    data_dir: Path
    started_at: float
    path: Path  # the registry file


def user_state_dir() -> Path:
    """This user's arbops state on this host, shared by every data dir:
    `${XDG_STATE_HOME:-~/.local/state}/arbops`."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "arbops"


def registry_dir() -> Path:
    return user_state_dir() / "engines"


def _entry_path(data_dir: Path) -> Path:
    key = hashlib.sha256(str(Path(data_dir)).encode()).hexdigest()[:16]
    return registry_dir() / f"{key}.json"


def register(data_dir: Path, pid: int | None = None) -> Path:
    """Record this engine; returns the file to remove at exit."""
    path = _entry_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"pid": pid or os.getpid(), "data_dir": str(data_dir),
                       "started_at": time.time()})
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, body.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def unregister(path: Path, pid: int | None = None) -> None:
    """Remove our entry (only if it is still ours: a newer engine may have replaced it)."""
    with contextlib.suppress(FileNotFoundError, ValueError, OSError):
        if json.loads(path.read_text()).get("pid") == (pid or os.getpid()):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, not ours to judge
    return True


def running_engines() -> list[EngineEntry]:
    """Engines that are up now: process alive and their data dir's lock held."""
    out: list[EngineEntry] = []
    directory = registry_dir()
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
            entry = EngineEntry(int(data["pid"]), Path(data["data_dir"]),
                                float(data.get("started_at", 0.0)), path)
        except (OSError, ValueError, KeyError, TypeError):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if _alive(entry.pid) and probe_holder(entry.data_dir) is not None:
            out.append(entry)
        else:
            with contextlib.suppress(OSError):
                path.unlink()  # stale: the process died without tidying up
    return out
