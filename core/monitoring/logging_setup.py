"""Loguru setup with secret redaction.

Every record passes a global patcher that applies core.redaction (every registered
secret value and credential-shaped values), in the message AND in the exception text. The
exception is formatted here (``traceback.format_exception``, no variable dumps), redacted,
stored in ``record["extra"]["exc_text"]`` and removed from ``record["exception"]`` so no
sink can print the raw one.

Log line format (parsed by :mod:`core.monitoring.log_extract`)::

    2026-01-01T00:00:00.000+00:00 | ERROR    | core.trading.engine:run:42 - message
    Traceback (most recent call last):
      ...
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from loguru import logger

from core.redaction import MIN_SECRET_LEN, redact, register_secrets

__all__ = [
    "LOG_FILE_NAME",
    "LOG_FORMAT",
    "MIN_SECRET_LEN",
    "redact",
    "redact_console",
    "register_secrets",
    "setup_logging",
    "teardown_logging",
]

LOG_FILE_NAME = "arbops.log"
LOG_DIR_NAME = "logs"
ROTATION = "10 MB"
RETENTION = 10

LOG_FORMAT = (
    "{time:YYYY-MM-DDTHH:mm:ss.SSSZ!UTC} | {level: <8} | {name}:{function}:{line} - {message}"
)

_handler_ids: list[int] = []


def _patch(record: Any) -> None:
    record["message"] = redact(record["message"])
    extra = record["extra"]
    for k, v in list(extra.items()):
        if isinstance(v, str):
            extra[k] = redact(v)
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        text = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
        extra["exc_text"] = redact(text)
        record["exception"] = None
    else:
        extra.setdefault("exc_text", "")


def redact_console(secrets: list[str]) -> None:
    """Redaction for a process that keeps loguru's default stderr sink (the CLI
    acting offline): the same patcher as `setup_logging`, no sinks changed."""
    register_secrets(secrets)
    logger.configure(patcher=_patch)


def _no_patch(record: Any) -> None:
    pass


def _format(record: Any) -> str:
    if record["extra"].get("exc_text"):
        return LOG_FORMAT + "\n{extra[exc_text]}"
    return LOG_FORMAT + "\n"


def _opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


class _InterceptHandler(logging.Handler):
    """Route stdlib ``logging`` (aiohttp, aiogram, ...) into loguru, hence redaction."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        exc = record.exc_info if record.exc_info and record.exc_info[0] else None
        logger.opt(depth=0, exception=exc).patch(
            lambda r: r.update({"name": record.name, "function": record.funcName,
                                "line": record.lineno})
        ).log(level, record.getMessage())


def teardown_logging() -> None:
    """Undo :func:`setup_logging`: remove its sinks (closes the log file), its stdlib
    intercept handler, the redacting patcher and the registered secrets."""
    while _handler_ids:
        hid = _handler_ids.pop()
        try:
            logger.remove(hid)
        except ValueError:
            pass
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _InterceptHandler):
            root.removeHandler(h)
    logger.configure(patcher=_no_patch)
    register_secrets([])


def setup_logging(
    data_dir: Path,
    level: str,
    secrets: list[str],
    console: bool = True,
    *,
    intercept_stdlib: bool = True,
) -> None:
    """Configure loguru: stderr sink (optional) + ``<data_dir>/logs/arbops.log``.

    File sink: rotation 10 MB, retention 10 files, mode 0600, UTF-8. Secrets (and generic
    credential patterns) are masked as ``***`` in messages and exception text.
    Idempotent: calling again replaces the sinks/secrets set up by the previous call.
    """
    level = level.upper()
    logger.level(level)  # ValueError on an unknown level name, before touching anything
    teardown_logging()
    try:
        logger.remove(0)  # loguru's default stderr sink
    except ValueError:
        pass
    register_secrets(secrets)
    logger.configure(patcher=_patch)

    log_dir = Path(data_dir) / LOG_DIR_NAME
    log_dir.mkdir(parents=True, exist_ok=True)
    common: dict[str, Any] = {
        "level": level,
        "format": _format,
        "backtrace": False,
        "diagnose": False,  # never dump local variables (they hold keys)
    }
    if console:
        _handler_ids.append(logger.add(sys.stderr, colorize=False, **common))
    _handler_ids.append(
        logger.add(
            log_dir / LOG_FILE_NAME,
            rotation=ROTATION,
            retention=RETENTION,
            encoding="utf-8",
            opener=_opener,
            **common,
        )
    )
    if intercept_stdlib:
        root = logging.getLogger()
        root.addHandler(_InterceptHandler())  # root level left as is (WARNING by default)
