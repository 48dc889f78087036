"""What a handler gets (Ctx) and what it returns (Reply, or Plan for risky commands)."""
from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.commands import Role

if TYPE_CHECKING:
    from bot.telegram.confirm import PendingStore
    from bot.telegram.live_status import LiveStatus
    from bot.telegram.sender import Sender
    from core.config.settings import Settings
    from core.ports import Notifier
    from core.service import OperatorService



@dataclass(slots=True)
class Reply:
    text: str  # HTML; every dynamic part already escaped
    outcome: str = "ok"
    markup: Any = None
    live_run: str | None = None  # keep this message updated while that run lasts


@dataclass(slots=True)
class Plan:
    """A command that adds risk, parsed and checked but not executed.

    `impact` (HTML) states exactly what Confirm will do; `execute` runs only from
    the Confirm button of the same user, once, before the nonce expires.
    """

    command: str
    args: dict[str, Any]
    impact: str
    execute: Callable[[Ctx], Awaitable[Reply]]


@dataclass(slots=True)
class Ctx:
    service: OperatorService
    settings: Settings
    user_id: int
    role: Role
    chat_id: int | None
    notifier: Notifier | None = None
    deps: TelegramDeps | None = None  # the running app's (pending store, live status)

    @property
    def actor(self) -> str:
        return f"telegram:{self.user_id}"


@dataclass(slots=True)
class AuditNote:
    """One audit row per update, recorded once as soon as the outcome is known."""

    user_id: int | None
    chat_id: int | None
    command: str
    args: Any
    role: str = "none"
    outcome: str = "ignored"
    t0: float = field(default_factory=time.perf_counter)
    received: float | None = None  # wall clock when this update reached the bot
    latency_ms: float | None = None
    recorded: bool = False

    def done(self, outcome: str) -> None:
        self.outcome = outcome[:300]
        if self.latency_ms is None:
            self.latency_ms = (time.perf_counter() - self.t0) * 1000


@dataclass(slots=True)
class TelegramDeps:
    """Everything the middleware and handlers share, injected as workflow data `deps`."""

    service: OperatorService
    settings: Settings
    users: dict[int, Role]
    pending: PendingStore
    sender: Sender
    notifier: Notifier | None = None
    live: LiveStatus | None = None
    now: Callable[[], float] = time.time  # wall clock, compared with message.date
    stale_after_s: float = 60.0
    # TELEGRAM_CHAT_ID and ARBOPS_TELEGRAM_ALLOWED_CHATS; private chats are always allowed
    allowed_chats: frozenset[int] = frozenset()
    secrets: tuple[str, ...] = ()
    inflight: set[Any] = field(default_factory=set)  # handler tasks, awaited on stop
