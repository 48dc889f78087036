"""Every exception arbops raises on purpose, and the one exit-code vocabulary.

```
ArbopsError                  exit 1 unless a subclass says otherwise
├── Refused                  exit 2: bad input or a safety rule said no; nothing changed
│   ├── BadInput             a command's arguments, a setting, a file
│   │   ├── SettingsError    every bad setting at once
│   │   └── UsageError       a chat command that does not parse
│   ├── ArmRefused           the ARM request itself is invalid (R-S2)
│   ├── GatewayRefusal       an order the gateway will not send (R-S6)
│   ├── RuleViolation        an order the venue would refuse (precision, minimum)
│   ├── InstanceLocked       another engine holds this data dir (R-S5)
│   └── SchemaTooNew         the journal was written by a newer arbops
├── ServiceError             a command that failed (1) or was refused (2): the code says
├── SendUnknown              the venue may or may not have the order
├── ChartFailed              a chart could not be drawn (the report goes out as text)
│   └── ChartTimeout         the chart worker took too long and was killed
├── ControlChannelError      the local socket to a running engine
│   ├── EngineNotRunning     nobody listens on it
│   ├── ControlChannelBusy   another process already serves it
│   ├── SocketPathTooLong    the path does not fit sockaddr_un
│   ├── ControlTimeout       the engine did not answer in time
│   └── CommandError         the engine answered with an error and its exit code
└── ExchangeError            a venue failure the engine understands
    ├── OrderRejected        refused by the venue; never retried
    ├── OrderNotFound        no such order at the venue
    ├── VenueUnavailable     network, timeout, 5xx, maintenance: the outcome is UNKNOWN
    └── RateLimited          429/418 with the venue's Retry-After
```

Surfaces map any ArbopsError to its `exit_code` (CLI) or reply (Telegram, control
channel); anything else reaching a surface is a bug, reported as exit 1 without a
traceback. Standard-library bases are kept where callers catch them (ValueError,
RuntimeError, TimeoutError). Stdlib only: the CLI's fast paths import this module.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import Any


class ExitCode(IntEnum):
    """The process exit codes of every command, and the code of every error reply."""

    OK = 0
    FAILED = 1  # a check or an action that did not succeed
    REFUSED = 2  # bad input, or a refusal by a safety rule


class ArbopsError(Exception):
    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = ExitCode(exit_code)

    @property
    def message(self) -> str:
        return str(self)

    @property
    def code(self) -> int:
        return int(self.exit_code)


class Refused(ArbopsError):
    exit_code = ExitCode.REFUSED


class BadInput(Refused):
    pass


class SettingsError(BadInput):
    """Every bad field at once, each with why; surfaces print it and exit 2."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid settings:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


class UsageError(BadInput):
    """A chat command that does not parse: the reply explains it and nothing changes."""


class ArmRefused(Refused):
    """The ARM request itself is invalid; `failures` names each problem."""

    def __init__(self, failures: Sequence[Any]) -> None:
        super().__init__("ARM refused: " + "; ".join(map(str, failures)))
        self.failures = list(failures)


class GatewayRefusal(Refused):
    def __init__(self, check: str, reason: str) -> None:
        super().__init__(f"{check}: {reason}")
        self.check = check
        self.reason = reason


class RuleViolation(Refused, ValueError):
    """The venue would refuse this order; `rule` names the filter for metrics and tests."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule


class InstanceLocked(Refused, RuntimeError):
    """Another process holds the engine lock. ``holder`` is its {host, pid, since} (may be {})."""

    def __init__(self, holder: dict[str, Any], path: Path | None = None) -> None:
        self.holder = dict(holder or {})
        self.path = path
        where = f" ({path})" if path is not None else ""
        if self.holder:
            who = (
                f"host={self.holder.get('host', '?')} pid={self.holder.get('pid', '?')} "
                f"since={self.holder.get('since', '?')}"
            )
        else:
            who = "unknown holder (lock file has no holder info yet)"
        super().__init__(f"another engine already runs on this data dir{where}: {who}")


class SchemaTooNew(Refused, RuntimeError):
    """The database was written by a newer version of arbops than this one."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than this code knows "
            f"(latest known: {known}); upgrade arbops or restore a backup "
            f"(*.bak-v{known}-*) — refusing to open so the journal is not damaged"
        )
        self.found = found
        self.known = known


class ServiceError(ArbopsError):
    """A command the service refused (2, the default) or could not carry out (1)."""

    exit_code = ExitCode.REFUSED


class SendUnknown(ArbopsError):
    """The venue may or may not have the order; resolve it by client order id."""


class ChartFailed(ArbopsError):
    """A chart was not drawn: its worker process failed, or could not be started."""


class ChartTimeout(ChartFailed, TimeoutError):
    """The chart worker ran past its time and was killed (pid: the process killed)."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid


class ControlChannelError(ArbopsError):
    """Base class of control-channel failures."""


class EngineNotRunning(ControlChannelError):
    """No control socket, or nobody listening on it (connection refused)."""


class ControlChannelBusy(ControlChannelError):
    """Another live process is already serving the control socket."""


class SocketPathTooLong(ControlChannelError, ValueError):
    """The socket path does not fit in ``sockaddr_un.sun_path``."""


class UntrustedListener(ControlChannelError):
    """The control socket, its data dir or the process listening on it belongs to
    another user: its answer is not believed (a refusal, 2)."""

    exit_code = ExitCode.REFUSED


class ControlTimeout(ControlChannelError, TimeoutError):
    """The engine did not answer within the timeout."""


class CommandError(ControlChannelError):
    """An error reply: raised by a handler to answer ``{"ok": false}`` with its code,
    and by the client when the engine answered so."""

    def __init__(self, message: str, code: int = ExitCode.FAILED) -> None:
        super().__init__(message, code)


class ExchangeError(ArbopsError):
    """Base of every venue failure the engine understands."""


class OrderRejected(ExchangeError):
    """The venue refused the order (bad params, funds, rules); never retried."""


class OrderNotFound(ExchangeError):
    pass


class VenueUnavailable(ExchangeError):
    """Network error, timeout, 5xx or maintenance: the outcome of a send is UNKNOWN."""


class RateLimited(ExchangeError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
