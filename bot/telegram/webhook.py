"""Webhook mode (issue #6): Telegram POSTs updates to us instead of us long polling.

The listener binds `ARBOPS_TELEGRAM_WEBHOOK_HOST:PORT` (plain HTTP, meant to sit
behind the TLS proxy that `ARBOPS_TELEGRAM_WEBHOOK_URL` points at) and serves
only the URL's path. Every request must carry the secret token we registered
with `setWebhook`, compared in constant time; anything else gets 401, changes
nothing and leaves an audit row - the same rule as a stranger's command.
Accepted updates go through the same Dispatcher, middleware and handlers as
polled ones.
"""
from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from loguru import logger

from bot.telegram.context import TelegramDeps
from core.http_listener import listen

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]


class _CheckedHandler(SimpleRequestHandler):
    """aiogram's handler (constant-time secret check, handled in the background),
    plus an audit row for every refused request."""

    def __init__(self, deps: TelegramDeps, **kw: Any) -> None:
        super().__init__(**kw)
        self.deps = deps

    async def handle(self, request: web.Request) -> web.Response:
        if not self.verify_secret(request.headers.get(SECRET_HEADER, ""), self.bot):
            await self._refused(request)
            return web.Response(status=401, text="Unauthorized")
        return await super().handle(request)

    async def _refused(self, request: web.Request) -> None:
        why = "missing" if SECRET_HEADER not in request.headers else "wrong"
        peer = request.remote or "?"
        logger.warning("telegram webhook: refused a request from {} ({} secret token)", peer, why)
        try:
            await self.deps.service.record_audit(
                surface="telegram", user="none", role="none", chat=None, command="webhook",
                args={"peer": peer}, outcome=f"denied: {why} secret token", latency_ms=0.0)
        except Exception:  # noqa: BLE001 - the refusal stands without its row
            logger.exception("could not write the webhook audit row")

    async def close(self) -> None:
        """The bot session belongs to TelegramApp, which closes it last."""


class WebhookListener:
    def __init__(self, bot: Any, dp: Any, deps: TelegramDeps) -> None:
        settings = deps.settings
        # Only built in webhook mode, which `arbops serve` refuses without both.
        assert settings.telegram_webhook_url is not None
        assert settings.telegram_webhook_secret is not None
        self.bot = bot
        self.url: str = settings.telegram_webhook_url
        self.path = urlsplit(self.url).path or "/"
        self.host: str = settings.telegram_webhook_host
        self.port: int = settings.telegram_webhook_port
        self._secret: str = settings.telegram_webhook_secret.get_secret_value()
        self.handler = _CheckedHandler(deps, dispatcher=dp, bot=bot, secret_token=self._secret)
        self._runner: web.AppRunner | None = None
        self._register_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(self.path, self.handler.handle)
        self._runner, self.port = await listen(app, self.host, self.port)
        self._register_task = asyncio.create_task(self._register(), name="telegram-setwebhook")
        logger.info("telegram webhook listening on {}:{}{}", self.host, self.port, self.path)

    async def _register(self) -> None:
        """setWebhook until Telegram takes it: the listener is already up meanwhile."""
        delay = 1.0
        while True:
            try:
                await self.bot.set_webhook(
                    url=self.url, secret_token=self._secret, allowed_updates=ALLOWED_UPDATES,
                    drop_pending_updates=False, request_timeout=10)
                logger.info("telegram webhook registered")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried; the message never holds the secret
                logger.warning("setWebhook failed ({}); retrying in {:.0f} s",
                               type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    @property
    def inflight(self) -> set[asyncio.Task[Any]]:
        return self.handler._background_feed_update_tasks

    async def stop(self) -> None:
        """Stop taking updates; the webhook stays registered so Telegram queues
        updates while we are down (stale ones are dropped at the next start)."""
        if self._register_task is not None:
            self._register_task.cancel()
            await asyncio.gather(self._register_task, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
