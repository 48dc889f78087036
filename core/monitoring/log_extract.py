"""Runbook §5.3 ``grep -i 'error|exception|fail'`` as a function.

Reads ``arbops.log`` and its rotated siblings (``arbops.<date>.log``) oldest first and
returns the matching records; a record is a header line plus the continuation lines
that follow it (tracebacks, multi-line messages), joined with ``\\n``.

stdlib only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = ["ERROR_RE", "extract_errors", "iter_records", "log_files", "parse_since"]

LOG_FILE_NAME = "arbops.log"
ERROR_RE = re.compile(r"error|exception|fail", re.IGNORECASE)
_ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})

# 2026-01-01T00:00:00.000+00:00 | ERROR    | name:function:line - message
_HEADER_RE = re.compile(
    r"^(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
    r"\s*\|\s*(?P<level>[A-Z]+)\s*\|\s*(?P<rest>.*)$"
)
# arbops.2026-01-01_00-00-00_123456.log, arbops.2026-01-01_00-00-00_123456.2.log
_ROTATED_RE = re.compile(
    r"^arbops\.(?P<date>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_\d+)(?:\.(?P<n>\d+))?\.log$"
)
_RELATIVE_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def log_files(log_dir: Path) -> list[Path]:
    """Rotated files oldest first, then the live ``arbops.log``."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return []
    rotated: list[tuple[str, int, Path]] = []
    for p in log_dir.iterdir():
        m = _ROTATED_RE.match(p.name)
        if m and p.is_file():
            rotated.append((m["date"], int(m["n"] or 1), p))
    rotated.sort(key=lambda t: (t[0], t[1]))
    files = [p for _, _, p in rotated]
    live = log_dir / LOG_FILE_NAME
    if live.is_file():
        files.append(live)
    return files


def _parse_ts(text: str) -> datetime | None:
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def iter_records(path: Path):
    """Yield ``(timestamp | None, level | None, message_text, lines)`` per record."""
    cur: list[str] | None = None
    ts: datetime | None = None
    level: str | None = None
    text_parts: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for raw in f:
            line = raw.rstrip("\n").rstrip("\r")
            m = _HEADER_RE.match(line)
            if m:
                if cur is not None:
                    yield ts, level, "\n".join(text_parts), cur
                cur = [line]
                ts = _parse_ts(m["ts"].replace(" ", "T", 1))
                level = m["level"]
                rest = m["rest"]
                # Match on the message, not on "name:function:line" (core.failover!).
                _, sep, msg = rest.partition(" - ")
                text_parts = [msg if sep else rest]
            else:
                if cur is None:  # orphan continuation lines at the top of a file
                    cur, ts, level, text_parts = [], None, None, []
                cur.append(line)
                text_parts.append(line)
    if cur is not None:
        yield ts, level, "\n".join(text_parts), cur


def extract_errors(log_dir: Path, since: datetime | None = None) -> list[str]:
    """Error-looking records from ``log_dir`` (oldest first), one string per record.

    A record matches if its level is ERROR/CRITICAL, or its message or continuation
    lines match ``error|exception|fail`` (case-insensitive). Trailing empty lines of a
    record are dropped. ``since`` (naive = UTC) drops older records; records without a
    timestamp are kept only when ``since`` is None.
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    out: list[str] = []
    for path in log_files(log_dir):
        for ts, level, text, lines in iter_records(path):
            if since is not None and (ts is None or ts < since):
                continue
            if (level in _ERROR_LEVELS) or ERROR_RE.search(text):
                while lines and not lines[-1].strip():
                    lines = lines[:-1]
                if lines:
                    out.append("\n".join(lines))
    return out


def parse_since(text: str, now: datetime) -> datetime:
    """``--since`` value → datetime.

    Accepts relative ``<n>s|m|h|d|w`` (e.g. ``30m``, ``2h``, ``1d``: that long before
    ``now``) and ISO dates/datetimes (``2026-01-01``, ``2026-01-01T09:30``,
    ``2026-01-01 09:30:00+09:00``, trailing ``Z``). Naive values take ``now``'s timezone
    (UTC if ``now`` is naive). Raises ValueError with a usage hint otherwise, or if the
    result lies in the future.
    """
    tz = now.tzinfo or UTC
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    s = (text or "").strip()
    if not s:
        raise ValueError("empty --since value; use e.g. 30m, 2h, 1d or 2026-01-01T09:00")
    m = _RELATIVE_RE.match(s)
    if m:
        delta = timedelta(**{_UNITS[m[2].lower()]: int(m[1])})
        return now - delta
    try:
        ts = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(
            f"invalid --since value {text!r}: use a relative age like 30m, 2h, 1d, 1w "
            "or an ISO date/datetime like 2026-01-01 or 2026-01-01T09:00:00+09:00"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=tz)
    if ts > now:
        raise ValueError(f"--since {text!r} is in the future (now is {now.isoformat()})")
    return ts
