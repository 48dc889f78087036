"""Is the Bot API reachable? Every request of the bot's session says so.

A request middleware on the one session (polling, replies, alerts) records the last
answer and the first failure of the current streak, so `arbops status` can say
"connected", "retrying since 12:01:07 (3 failures: ...)" instead of a log line an
operator never sees. The clock is injected for tests.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError


class TelegramLink:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.last_ok_at: float | None = None
        self.failing_since: float | None = None
        self.failures = 0
        self.last_error: str | None = None

    async def __call__(self, make_request: Any, bot: Bot, method: Any) -> Any:
        try:
            result = await make_request(bot, method)
        except (TelegramNetworkError, TelegramServerError, OSError, TimeoutError) as exc:
            self.failed(f"{type(exc).__name__}: {exc}")
            raise
        except TelegramRetryAfter:
            self.answered()  # the API answered; it only asks us to wait
            raise
        except Exception:
            self.answered()  # a 4xx is an answer: the link itself is up
            raise
        self.answered()
        return result

    def answered(self) -> None:
        self.last_ok_at = self._clock()
        self.failing_since = None
        self.failures = 0

    def failed(self, why: str) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()
        self.failures += 1
        self.last_error = why[:200]

    def health(self) -> dict[str, Any]:
        """{"state": "connected" | "retrying" | "connecting", ...} for status."""
        if self.failing_since is not None:
            return {"state": "retrying", "since": self.failing_since,
                    "failures": self.failures, "last_error": self.last_error,
                    "last_ok_at": self.last_ok_at}
        if self.last_ok_at is None:
            return {"state": "connecting"}
        return {"state": "connected", "last_ok_at": self.last_ok_at}
