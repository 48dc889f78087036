"""Files that a reader or a crash never sees half-written.

Temp file in the same directory, fsync, rename, then fsync the directory, so
after a crash the path holds either the old content or the new, never a mix,
and a rename that returned has reached the disk.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """`data` as indented JSON at `path`, atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in `directory` durable (the entry, not the data)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_writable(path: Path) -> str | None:
    """Why a KPI file cannot be written there, or None. Nothing is left behind.

    A real probe file is created and removed, because permission bits lie
    (root passes os.access everywhere; /proc refuses new files to everyone).
    """
    if path.exists() and path.is_dir():
        return f"{path} is a directory"
    probe_dir = path.parent if str(path.parent) else Path(".")
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        return f"{probe_dir} is not a directory"
    try:
        fd, tmp = tempfile.mkstemp(prefix=".arbops-probe-", dir=probe_dir)
    except OSError as exc:
        return f"cannot create files in {probe_dir}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(tmp)
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None
