"""TelegramNotifier: the Notifier port delivered to Telegram (R-O3).

- `notify()` never blocks the engine: it logs (through the wrapped notifier,
  the log one by default), appends to an in-memory queue and returns.
- One sender task drains the queue: KILL/CRITICAL first, then guard alerts,
  then everything else. Under a flood, pending messages of one priority are
  merged into one message (and a huge backlog is compacted into counted
  groups) rather than dropped.
- 429 `retry_after` is honoured (the batch goes back to the front and is
  re-packed after the wait, so a KILL that arrived meanwhile goes first);
  network errors and 5xx back off exponentially and keep trying.
- Everything is HTML-escaped and kept within Telegram's limits.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramRetryAfter,
)
from aiogram.types import FSInputFile
from loguru import logger

from bot.telegram.format import MAX_CAPTION, MAX_TEXT, caption_parts, fit, h, plain
from bot.telegram.sender import RETRYABLE
from core.redaction import redact

ICONS = {"KILL": "🛑", "CRITICAL": "🛑", "REDUCE": "⚠️", "ALERT": "⚠️", "RECOVERED": "✅",
         "INFO": "ℹ️", "TEST": "🔔"}
TEST_ALERT_TITLE = "test alert"


def priority(severity: str, title: str) -> int:
    sev = severity.upper()
    if sev in ("KILL", "CRITICAL"):
        return 0
    if sev in ("REDUCE", "ALERT") or title.lower().startswith("guard"):
        return 1
    return 2


@dataclass(slots=True)
class Item:
    severity: str
    title: str
    body: str
    ts: float
    count: int = 1
    photo: Path | None = None
    plain: bool = False  # resend without HTML after a parse error

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.severity, self.title, self.body)


@dataclass(slots=True)
class NotifierStats:
    queued: int = 0
    messages_sent: int = 0
    items_delivered: int = 0
    merged_messages: int = 0
    compacted: int = 0
    retry_after_waits: int = 0
    network_retries: int = 0
    dropped_undeliverable: int = 0
    test_alert_delivered_at: float | None = None
    last_error: str | None = None


class TelegramNotifier:
    def __init__(
        self, bot: Any, chat_id: int | None, *, inner: Any = None,
        min_interval_s: float = 1.0, max_backlog: int = 500, request_timeout_s: float = 20.0,
        max_backoff_s: float = 60.0, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.inner = inner
        self.min_interval_s = min_interval_s
        self.max_backlog = max_backlog
        self.request_timeout_s = request_timeout_s
        self.max_backoff_s = max_backoff_s
        self._sleep = sleep
        self._clock = clock
        self._queues: tuple[deque[Item], ...] = (deque(), deque(), deque())
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.stats = NotifierStats()

    # --- the port -----------------------------------------------------------------
    async def notify(self, severity: str, title: str, body: str) -> None:
        """Log now, deliver later; never raises, never waits on the network."""
        try:
            if self.inner is not None:
                await self.inner.notify(severity, title, body)
            else:
                logger.info("[{}] {}: {}", severity, title, body)
        except Exception:  # noqa: BLE001 - logging must not stop delivery
            logger.exception("inner notifier failed")
        self._enqueue(Item(str(severity), redact(str(title)), redact(str(body)),
                           self._clock()))

    async def send_photo(self, path: str | Path, caption: str) -> None:
        """A chart with its caption; a caption over Telegram's 1024 characters is sent
        as the photo's first line plus a text message with the whole of it."""
        logger.info("[PHOTO] {}: {}", path, caption)
        title, body = caption_parts(str(caption))
        self._enqueue(Item("INFO", title, "", self._clock(), photo=Path(path)))
        if body is not None:
            self._enqueue(Item("INFO", title, body, self._clock()))

    @property
    def backlog(self) -> int:
        return sum(item.count for q in self._queues for item in q)

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="telegram-notifier")

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued was handed to Telegram (or given up)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, drain_s: float = 3.0) -> None:
        if self._task is None:
            return
        if self.backlog:
            await self.flush(drain_s)
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        if self.backlog:
            logger.warning("telegram notifier stopped with {} undelivered item(s) (logged)",
                           self.backlog)

    # --- queue --------------------------------------------------------------------
    def _enqueue(self, item: Item) -> None:
        if self.chat_id is None:
            return  # no TELEGRAM_CHAT_ID: the log is the only channel
        q = self._queues[priority(item.severity, item.title)]
        for pending in q:  # the same message again: count it, do not repeat it
            if pending.key == item.key and pending.photo is None and item.photo is None:
                pending.count += 1
                break
        else:
            q.append(item)
        self.stats.queued += 1
        if sum(len(q) for q in self._queues) > self.max_backlog:
            self._compact()
        self._idle.clear()
        self._wake.set()

    def _compact(self) -> None:
        """Fold the backlog into one item per (severity, title), newest body kept."""
        for q in reversed(self._queues):
            if sum(len(x) for x in self._queues) <= self.max_backlog // 2:
                return
            groups: dict[tuple[str, str], Item] = {}
            photos = [i for i in q if i.photo is not None]
            for item in (i for i in q if i.photo is None):
                g = groups.get((item.severity, item.title))
                if g is None:
                    groups[(item.severity, item.title)] = Item(
                        item.severity, item.title, item.body, item.ts, item.count)
                else:
                    g.count += item.count
                    g.body = item.body
                    self.stats.compacted += 1
            q.clear()
            q.extend(photos[-10:])
            q.extend(groups.values())

    def _take(self) -> list[Item]:
        for q in self._queues:
            if not q:
                continue
            if q[0].photo is not None:
                return [q.popleft()]
            batch = [q.popleft()]
            size = len(self._render_one(batch[0], merged=True))
            while q and q[0].photo is None:
                nxt = len(self._render_one(q[0], merged=True)) + 1
                if size + nxt > MAX_TEXT - 100:
                    break
                size += nxt
                batch.append(q.popleft())
            return batch
        return []

    def _requeue(self, batch: list[Item]) -> None:
        for item in reversed(batch):
            self._queues[priority(item.severity, item.title)].appendleft(item)

    # --- rendering ----------------------------------------------------------------
    @staticmethod
    def _render_one(item: Item, merged: bool = False) -> str:
        icon = ICONS.get(item.severity.upper(), "•")
        times = f" ×{item.count}" if item.count > 1 else ""
        body = item.body if len(item.body) <= (600 if merged else 3500) else (
            item.body[: 600 if merged else 3500] + "…")
        sep = ": " if merged else "\n"
        return f"{icon} <b>[{h(item.severity)}] {h(item.title)}</b>{times}{sep}{h(body)}"

    def render(self, batch: list[Item]) -> str:
        if len(batch) == 1:
            return fit(self._render_one(batch[0]))
        total = sum(i.count for i in batch)
        lines = [f"<b>{total} notifications</b> (merged under load)"]
        lines.extend(self._render_one(i, merged=True) for i in batch)
        return fit("\n".join(lines))

    # --- the sender task ------------------------------------------------------------
    async def _run(self) -> None:
        backoff = 0.5
        while True:
            batch = self._take()
            if not batch:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._deliver(batch)
            except TelegramRetryAfter as exc:
                self.stats.retry_after_waits += 1
                self.stats.last_error = f"429 retry_after {exc.retry_after}"
                self._requeue(batch)
                logger.warning("telegram notifier: 429, waiting {} s", exc.retry_after)
                await self._sleep(float(exc.retry_after))
                continue
            except RETRYABLE as exc:
                self.stats.network_retries += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                self._requeue(batch)
                logger.warning("telegram notifier: {}; retry in {:.1f} s", self.stats.last_error,
                               backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                continue
            except TelegramBadRequest as exc:
                if "pars" in str(exc).lower() and not all(i.plain for i in batch):
                    for item in batch:
                        item.plain = True
                    self._requeue(batch)
                    continue
                self._undeliverable(batch, exc)
            except asyncio.CancelledError:
                self._requeue(batch)
                raise
            except Exception as exc:  # noqa: BLE001 - forbidden, unauthorized, missing file
                self._undeliverable(batch, exc)
            else:
                backoff = 0.5
                self.stats.messages_sent += 1
                self.stats.items_delivered += sum(i.count for i in batch)
                if len(batch) > 1:
                    self.stats.merged_messages += 1
                if any(i.title == TEST_ALERT_TITLE for i in batch):
                    self.stats.test_alert_delivered_at = self._clock()
            if self.min_interval_s > 0:
                await self._sleep(self.min_interval_s)

    async def _deliver(self, batch: list[Item]) -> None:
        assert self.chat_id is not None
        first = batch[0]
        if first.photo is not None:
            caption = fit(h(first.title), MAX_CAPTION)
            await self.bot.send_photo(self.chat_id, FSInputFile(first.photo), caption=caption,
                                      parse_mode="HTML", request_timeout=self.request_timeout_s)
            return
        text = self.render(batch)
        if all(i.plain for i in batch):
            await self.bot.send_message(self.chat_id, fit(plain(text)), parse_mode=None,
                                        request_timeout=self.request_timeout_s)
        else:
            await self.bot.send_message(self.chat_id, text, parse_mode="HTML",
                                        request_timeout=self.request_timeout_s)

    def _undeliverable(self, batch: list[Item], exc: BaseException) -> None:
        self.stats.dropped_undeliverable += sum(i.count for i in batch)
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        logger.error("telegram notifier: cannot deliver {} item(s) ({}); they are in the log",
                     len(batch), self.stats.last_error)
