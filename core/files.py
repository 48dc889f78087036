"""Files that a reader or a crash never sees half-written.

Temp file in the same directory, fsync, rename, then fsync the directory, so
after a crash the path holds either the old content or the new, never a mix,
and a rename that returned has reached the disk. And private to their owner:
files 0600, directories 0700 (the journal holds the audit and the positions).
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from core.redaction import redact


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """`data` as indented JSON at `path`, atomically and durably, secrets masked
    (core.redaction); the file is private to the owner (0600, from mkstemp)."""
    text = redact(json.dumps(data, indent=2, sort_keys=False)) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
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


# --- data at rest: private to the user that runs arbops -----------------------------
PRIVATE_UMASK = 0o077  # files 0600, directories 0700, whatever creates them
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_umask() -> int:
    """Set the process umask so every file and directory it creates (SQLite's journal
    and WAL, logs, KPI, incidents, recordings) is its owner's alone. Returns the old one."""
    return os.umask(PRIVATE_UMASK)


def write_private_text(path: Path, text: str) -> None:
    """`text` at `path`, created 0600 whatever the umask (an existing file is narrowed)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fd = -1
            fh.write(text)
    finally:
        if fd >= 0:
            os.close(fd)


def secure_data_dir(data_dir: Path) -> None:
    """Create the data dir 0700 and narrow what an older version left readable: the
    dir to 0700, every file in it that this user owns to at most 0600."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    uid = os.getuid()
    for path in (data_dir, *data_dir.rglob("*")):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if st.st_uid != uid or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            continue  # symlinks and sockets are not narrowed; other users' files not ours
        keep = PRIVATE_DIR_MODE if stat.S_ISDIR(st.st_mode) else PRIVATE_FILE_MODE
        mode = stat.S_IMODE(st.st_mode)
        if mode & ~keep:
            os.chmod(path, mode & keep)


def loose_paths(data_dir: Path) -> list[str]:
    """Every path under the data dir (itself included) that another local user may
    read or write, with its mode: empty when the data at rest is private."""
    data_dir = Path(data_dir)
    if not data_dir.exists():
        return []
    out = []
    for path in (data_dir, *sorted(data_dir.rglob("*"))):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
            continue
        if stat.S_IMODE(st.st_mode) & 0o077:
            out.append(f"{path} ({stat.S_IMODE(st.st_mode):04o})")
    return out
