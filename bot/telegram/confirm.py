"""Pending confirmations for commands that add risk (R-U1).

The button carries only an opaque random nonce; the server keeps what it
stands for {nonce, user, chat, action, args, expires, used}. Only the same
user in the same chat may confirm, a nonce works once, and an expired,
unknown, forged or reused nonce changes nothing. Check-and-mark happens with
no await in between, so two presses racing on the event loop cannot both win.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from bot.telegram.context import Plan

CONFIRM, CANCEL = "ok", "no"


class Claim(Enum):
    OK = "ok"
    UNKNOWN = "unknown or forged confirmation: nothing changed"
    USED = "this confirmation was already used: nothing changed"
    EXPIRED = "this confirmation expired: nothing changed; send the command again"
    WRONG_USER = "only the user who sent the command can confirm it: nothing changed"
    WRONG_CHAT = "this confirmation belongs to another chat: nothing changed"


@dataclass(slots=True)
class Pending:
    id: int
    nonce: str
    user_id: int
    chat_id: int | None
    plan: Plan
    created: float
    expires: float
    used: bool = False
    message_id: int | None = None
    epoch: int = 0  # the trading state's epoch when this was asked

    @property
    def args(self) -> dict[str, Any]:
        return self.plan.args


class PendingStore:
    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_items: int = 256) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_items = max_items
        self._items: dict[str, Pending] = {}
        self._next_id = 1

    def create(self, user_id: int, chat_id: int | None, plan: Plan, epoch: int = 0) -> Pending:
        self._purge()
        now = self.clock()
        nonce = secrets.token_urlsafe(18)  # 24 chars; callback_data stays < 64 bytes
        p = Pending(self._next_id, nonce, user_id, chat_id, plan, now, now + self.ttl_s,
                    epoch=epoch)
        self._next_id += 1
        self._items[nonce] = p
        return p

    def peek(self, nonce: str) -> Pending | None:
        return self._items.get(nonce)

    def claim(self, nonce: str, user_id: int, chat_id: int | None) -> tuple[Claim, Pending | None]:
        """Validate and consume (mark used) in one synchronous step."""
        p = self._items.get(nonce)
        if p is None:
            return Claim.UNKNOWN, None
        if p.user_id != user_id:
            return Claim.WRONG_USER, p
        if p.chat_id != chat_id:  # a press with no chat (an inline message) binds nothing
            return Claim.WRONG_CHAT, p
        if p.used:
            return Claim.USED, p
        p.used = True
        if self.clock() >= p.expires:
            return Claim.EXPIRED, p
        return Claim.OK, p

    def _purge(self) -> None:
        now = self.clock()
        # Keep used/expired entries a while so a late press says "used"/"expired".
        for nonce in [n for n, p in self._items.items() if now > p.expires + 10 * self.ttl_s]:
            del self._items[nonce]
        while len(self._items) >= self.max_items:
            del self._items[next(iter(self._items))]


def parse_callback(data: str | None) -> tuple[str, str] | None:
    """'ok:<nonce>' / 'no:<nonce>' -> (choice, nonce); anything else None."""
    if not data or ":" not in data or len(data) > 64:
        return None
    choice, _, nonce = data.partition(":")
    if choice not in (CONFIRM, CANCEL) or not nonce:
        return None
    return choice, nonce
