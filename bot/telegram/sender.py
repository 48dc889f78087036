"""Delivery with Telegram's rules: 429 retry_after honoured, network errors and
5xx retried with backoff, HTML that fails to parse resent as plain text, text
kept within the length limit. Used for replies (text, and photos from memory such
as /report's chart); the notifier has its own queue on top of the same
`call_with_retry`.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import BufferedInputFile
from loguru import logger

from bot.telegram.format import MAX_CAPTION, MAX_TEXT, fit, plain
from core.redaction import redact

T = TypeVar("T")
RETRYABLE = (TelegramNetworkError, TelegramServerError, ClientDecodeError, asyncio.TimeoutError)


@dataclass(slots=True)
class RetryPolicy:
    attempts: int = 8  # network/5xx attempts; 429 waits do not count
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 300.0  # a longer 429 wait than this gives up (logged)
    request_timeout_s: float = 20.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)


@dataclass(slots=True)
class SendStats:
    sent: int = 0
    retry_after_waits: int = 0
    network_retries: int = 0
    failures: int = 0


async def call_with_retry(fn: Callable[[], Awaitable[T]], policy: RetryPolicy,
                          stats: SendStats | None = None, what: str = "send") -> T:
    """Run one Bot API call until it succeeds; raise the last error when giving up."""
    delay = policy.base_delay_s
    failures = 0
    waited = 0.0
    while True:
        try:
            return await fn()
        except TelegramRetryAfter as exc:
            wait = float(exc.retry_after)
            waited += wait
            if stats:
                stats.retry_after_waits += 1
            if waited > policy.max_retry_after_s:
                raise
            logger.warning("telegram {}: 429, retrying after {} s", what, wait)
            await policy.sleep(wait)
        except RETRYABLE as exc:
            failures += 1
            if stats:
                stats.network_retries += 1
            if failures >= policy.attempts:
                raise
            logger.warning("telegram {} failed ({}: {}); retry in {:.1f} s", what,
                           type(exc).__name__, exc, delay)
            await policy.sleep(delay)
            delay = min(delay * 2, policy.max_delay_s)


def _is_parse_error(exc: TelegramBadRequest) -> bool:
    return "parse" in str(exc).lower() and "entit" in str(exc).lower()


# aiogram annotates `request_timeout` as int, but its aiohttp session passes it on as
# seconds, fractions included (its own session-wide timeout is a float); hence the
# three `type: ignore[arg-type]` below.
class Sender:
    def __init__(self, bot: Bot, policy: RetryPolicy | None = None) -> None:
        self.bot = bot
        self.policy = policy or RetryPolicy()
        self.stats = SendStats()

    async def send(self, chat_id: int, text: str, markup: Any = None) -> Any:
        """Send HTML; returns the Message or None when it could not be delivered."""
        timeout = self.policy.request_timeout_s
        return await self._send_html(
            "sendMessage", fit(redact(text)), MAX_TEXT,
            lambda body, mode: self.bot.send_message(chat_id, body, parse_mode=mode,
                                                     reply_markup=markup,
                                                     request_timeout=timeout))  # type: ignore[arg-type]

    async def send_photo(self, chat_id: int, photo: bytes, caption: str = "", *,
                         filename: str = "chart.png", markup: Any = None) -> Any:
        """A picture from memory (never a path) with an HTML caption kept within 1024
        characters; the same retries and plain-text fallback as `send`. Returns the
        Message or None when it could not be delivered."""
        timeout = self.policy.request_timeout_s
        return await self._send_html(
            "sendPhoto", fit(redact(caption), MAX_CAPTION), MAX_CAPTION,
            lambda body, mode: self.bot.send_photo(
                chat_id, BufferedInputFile(photo, filename), caption=body or None,
                parse_mode=mode, reply_markup=markup, request_timeout=timeout))  # type: ignore[arg-type]

    async def _send_html(self, what: str, body: str, limit: int,
                         call: Callable[[str, str | None], Awaitable[Any]]) -> Any:
        try:
            msg = await call_with_retry(lambda: call(body, "HTML"), self.policy, self.stats, what)
        except TelegramBadRequest as exc:
            if not _is_parse_error(exc):
                return self._failed(what, exc)
            try:  # our escaping missed something: the text must still arrive
                msg = await call_with_retry(lambda: call(fit(plain(body), limit), None),
                                            self.policy, self.stats, f"{what}(plain)")
            except Exception as exc2:  # noqa: BLE001
                return self._failed(what, exc2)
        except Exception as exc:  # noqa: BLE001 - a reply never crashes a handler
            return self._failed(what, exc)
        self.stats.sent += 1
        return msg

    async def edit(self, chat_id: int, message_id: int, text: str, markup: Any = None) -> bool:
        body = fit(text)
        try:
            await call_with_retry(
                lambda: self.bot.edit_message_text(
                    text=body, chat_id=chat_id, message_id=message_id, parse_mode="HTML",
                    reply_markup=markup,
                    request_timeout=self.policy.request_timeout_s),  # type: ignore[arg-type]
                self.policy, self.stats, "editMessageText")
            return True
        except TelegramBadRequest as exc:
            if "not modified" in str(exc).lower():
                return True
            self._failed("editMessageText", exc)
            return False
        except Exception as exc:  # noqa: BLE001
            self._failed("editMessageText", exc)
            return False

    async def answer_callback(self, query_id: str, text: str | None = None,
                              alert: bool = False) -> None:
        try:  # one quick try: a stale spinner is harmless, a blocked handler is not
            await self.bot.answer_callback_query(query_id, text=(text or "")[:200] or None,
                                                 show_alert=alert, request_timeout=10)
        except Exception as exc:  # noqa: BLE001
            logger.info("answerCallbackQuery failed: {}", exc)

    def _failed(self, what: str, exc: BaseException) -> None:
        self.stats.failures += 1
        logger.error("telegram {} gave up: {}: {}", what, type(exc).__name__, exc)
        return None
