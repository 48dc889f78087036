"""Starts the Telegram surface inside `arbops serve` (issue #6; R-U1, R-O3, R-O5).

`start_telegram(service, settings)` returns None without a token (headless) or
a running `TelegramApp` with `async stop()`. This module is the one place the
Telegram routers and middleware are wired (`build_dispatcher`). aiogram is
imported lazily: `arbops status` and `arbops kill` must not load it.

Long polling by default; webhook mode (bot/telegram/webhook.py) when
`ARBOPS_TELEGRAM_WEBHOOK_URL` is set, which refuses to start without
`ARBOPS_TELEGRAM_WEBHOOK_SECRET` (`telegram_start_problems`).
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from loguru import logger

from core.config.settings import Settings

if TYPE_CHECKING:
    from bot.telegram.context import TelegramDeps
    from core.service import OperatorService


def build_dispatcher(deps: TelegramDeps) -> Any:
    """Routers (one per command group) and middleware, wired once, in this order."""
    from aiogram import Dispatcher

    from bot.telegram.middleware import (
        AllowlistMiddleware,
        AuditMiddleware,
        CommandGate,
        TimingMiddleware,
    )
    from bot.telegram.origin import OriginMiddleware
    from bot.telegram.routers import (
        buttons,
        control,
        fallback,
        info,
        live,
        reports,
        runs,
        trades,
        venues,
    )

    dp = Dispatcher(deps=deps)
    for observer in (dp.message, dp.callback_query):
        observer.outer_middleware(AuditMiddleware())  # first: every attempt leaves a row
        observer.outer_middleware(OriginMiddleware())  # other chats silent, anonymous refused
        observer.outer_middleware(AllowlistMiddleware())  # strangers stop here, silently
        observer.middleware(TimingMiddleware())
    dp.message.middleware(CommandGate())  # role, availability, staleness, confirmation
    from bot.telegram.table import TELEGRAM

    served: set[str] = set()
    for module in (info, control, runs, live, venues, reports, trades, buttons):
        router = dp.include_router(module.make_router())
        served.update(hd.flags["table_entry"].name for hd in router.message.handlers
                      if "table_entry" in hd.flags)
    unserved = tuple(name for name in TELEGRAM if name not in served)
    dp.include_router(fallback.make_router(unserved))  # last: takes what nobody else did
    return dp


def telegram_start_problems(settings: Settings) -> list[str]:
    """Why the Telegram surface must not start as configured: `arbops serve`
    refuses (exit 2) rather than run with a door it cannot lock."""
    if settings.telegram_bot_token is None:
        return []
    return settings.telegram_webhook_problems()


class TelegramApp:
    def __init__(self, bot: Any, dp: Any, deps: TelegramDeps, inner_notifier: Any,
                 polling_timeout: int) -> None:
        self.bot = bot
        self.dp = dp
        self.deps = deps
        self.inner_notifier = inner_notifier
        self.polling_timeout = polling_timeout
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.webhook: Any = None  # a WebhookListener in webhook mode
        self.started_cleanly = False

    @property
    def notifier(self) -> Any:
        return self.deps.notifier

    async def reachable(self, timeout_s: float = 5.0) -> bool:
        """getMe answered: for preflight's "Telegram reachable" check (R-S3)."""
        try:
            await self.bot.get_me(request_timeout=int(max(1, timeout_s)))
            return True
        except Exception:  # noqa: BLE001 - any failure means not reachable
            return False

    @property
    def mode(self) -> str:
        return "webhook" if self.deps.settings.telegram_webhook_url else "polling"

    async def start(self) -> None:
        from aiogram.types import BotCommand

        from bot.telegram.table import menu

        self.started_cleanly = False
        try:
            if self.mode == "polling":  # a webhook left behind makes getUpdates fail (409)
                await self.bot.delete_webhook(drop_pending_updates=False, request_timeout=10)
            await self.bot.set_my_commands(
                [BotCommand(command=c, description=d) for c, d in menu()], request_timeout=10)
            self.started_cleanly = True
        except Exception as exc:  # noqa: BLE001 - polling / setWebhook retry on their own
            logger.warning("telegram start-up call failed ({}: {}); will retry",
                           type(exc).__name__, exc)
        if self.mode == "webhook":
            from bot.telegram.webhook import WebhookListener

            self.webhook = WebhookListener(self.bot, self.dp, self.deps)
            await self.webhook.start()
        else:
            self._task = asyncio.create_task(self._poll_forever(), name="telegram-polling")

    async def _poll_forever(self) -> None:
        delay = 1.0
        while not self._stopping:
            try:
                await self.dp.start_polling(
                    self.bot, handle_signals=False, close_bot_session=False,
                    polling_timeout=self.polling_timeout,
                    allowed_updates=["message", "callback_query"])
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - e.g. getMe failed at start-up
                logger.warning("telegram polling stopped ({}: {}); restarting in {:.0f} s",
                               type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        if self.webhook is not None:
            await self.webhook.stop()
        else:
            try:
                await asyncio.wait_for(self.dp.stop_polling(), 5)
            except (RuntimeError, TimeoutError):
                pass  # not polling right now (start-up backoff)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        inflight = [t for t in self.deps.inflight if not t.done()]
        if self.webhook is not None:
            inflight += [t for t in self.webhook.inflight if not t.done()]
        if inflight:  # replies in flight (maybe waiting out a 429) get a moment
            _done, pending = await asyncio.wait(inflight, timeout=2.0)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.deps.live is not None:
            await self.deps.live.stop()
        await self.notifier.stop(drain_s=3.0)
        if self.deps.service.notifier is self.notifier:
            self.deps.service.notifier = self.inner_notifier
        await self.bot.session.close()
        self.deps.service.surface_health.pop("telegram", None)
        logger.info("telegram surface stopped")


async def start_telegram(
    service: OperatorService, settings: Settings, *,
    now: Callable[[], float] = time.time,
    confirm_ttl_s: float | None = None,
    confirm_clock: Callable[[], float] = time.monotonic,
    stale_after_s: float | None = None,
    polling_timeout: int = 25,
    request_timeout_s: float = 20.0,
    notifier_interval_s: float = 1.0,
    live_interval_s: float = 5.0,
    retry_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> TelegramApp | None:
    """Return a handle with `async stop()`, or None when Telegram is not configured.

    The TTL and staleness default to their settings; tests pass their own."""
    if settings.telegram_bot_token is None:
        logger.info("no TELEGRAM_BOT_TOKEN: running headless (CLI and control channel only)")
        return None
    problems = telegram_start_problems(settings)
    if problems:  # serve checks first; this guards any other caller
        raise ValueError("; ".join(problems))
    if confirm_ttl_s is None:
        confirm_ttl_s = settings.telegram_confirm_ttl_s
    if stale_after_s is None:
        stale_after_s = settings.telegram_stale_after_s
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.utils.token import TokenValidationError

    from bot.telegram.auth import parse_allowed_users
    from bot.telegram.confirm import PendingStore
    from bot.telegram.context import TelegramDeps
    from bot.telegram.link import TelegramLink
    from bot.telegram.live_status import LiveStatus
    from bot.telegram.notifier import TelegramNotifier
    from bot.telegram.sender import RetryPolicy, Sender
    from bot.telegram.session import tune_session
    from core.config.check import parse_chat_list

    users = parse_allowed_users(settings.telegram_allowed_users)
    if not users:
        logger.warning("TELEGRAM_ALLOWED_USERS is empty: nobody can command the bot "
                       "(alerts are still sent)")
    if settings.telegram_chat_id is None:
        logger.warning("TELEGRAM_CHAT_ID is not set: alerts go to the log only")
    chats, chat_problems = parse_chat_list(settings.telegram_allowed_chats)
    for problem in chat_problems:
        logger.error("ARBOPS_TELEGRAM_ALLOWED_CHATS: ignoring {} (`arbops config check` "
                     "lists them)", problem)
    if settings.telegram_chat_id is not None:
        chats.add(settings.telegram_chat_id)
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    try:
        bot = Bot(token=settings.telegram_bot_token.get_secret_value(), session=session)
    except TokenValidationError:
        await session.close()
        logger.error("TELEGRAM_BOT_TOKEN is malformed: the Telegram surface is off")
        return None
    tune_session(bot)  # replies, alerts and polling share this one session
    inner = service.notifier
    notifier = TelegramNotifier(bot, settings.telegram_chat_id, inner=inner,
                                min_interval_s=notifier_interval_s,
                                request_timeout_s=request_timeout_s, sleep=retry_sleep)
    notifier.start()
    service.notifier = notifier  # the engine, guards and kill now reach Telegram too
    sender = Sender(bot, RetryPolicy(request_timeout_s=request_timeout_s, sleep=retry_sleep))
    deps = TelegramDeps(
        service=service, settings=settings, users=users,
        pending=PendingStore(confirm_ttl_s, confirm_clock), sender=sender, notifier=notifier,
        live=LiveStatus(service, sender, live_interval_s), now=now,
        stale_after_s=stale_after_s, secrets=tuple(settings.secret_values()),
        allowed_chats=frozenset(chats),
    )
    link = TelegramLink(now)
    bot.session.middleware(link)
    service.surface_health["telegram"] = link.health
    app = TelegramApp(bot, build_dispatcher(deps), deps, inner, polling_timeout)
    await app.start()
    # Said once and truthfully: after a failed start-up call the surface is not "started".
    if app.started_cleanly:
        logger.info("telegram surface started ({}): {} allowed user(s), API {}", app.mode,
                    len(users), settings.telegram_api_base)
    else:
        logger.warning("telegram surface waiting for the Bot API ({}): retrying in the "
                       "background; `arbops status` shows when it connects", app.mode)
    return app
