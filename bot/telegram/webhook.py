"""Webhook mode (issue #6): Telegram POSTs updates to us instead of us long polling.

The listener binds `ARBOPS_TELEGRAM_WEBHOOK_HOST:PORT` (plain HTTP, meant to sit
behind the TLS proxy that `ARBOPS_TELEGRAM_WEBHOOK_URL` points at) and serves
only the URL's path. Every request must carry the secret token we registered
with `setWebhook`, compared in constant time (as bytes: any header, ASCII or not,
is a 401, never a 500); a body that is not a JSON update object is a 400. A
refused request changes nothing; refusals are counted at once (the metric
arbitrage_webhook_refused_total) and logged and audited as one summary at most
once a minute, in the background: a flood of them costs the trading loop no
journal write each. Accepted updates go through the same Dispatcher, middleware
and handlers as polled ones.
"""
from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any
from urllib.parse import urlsplit

from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from loguru import logger

from bot.telegram.context import TelegramDeps
from core.http_listener import listen
from core.monitoring.refusals import RefusalSummary, RefusalTally

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ALLOWED_UPDATES = ["message", "callback_query"]


class _CheckedHandler(SimpleRequestHandler):
    """aiogram's handler (handled in the background), behind our own checks: the
    secret compared as bytes, the body parsed before aiogram sees it, and every
    refusal counted and summarised (RefusalTally)."""

    def __init__(self, deps: TelegramDeps, tally: RefusalTally, **kw: Any) -> None:
        super().__init__(**kw)
        self.deps = deps
        self.tally = tally
        self._flush_timer: asyncio.TimerHandle | None = None

    def verify_secret(self, telegram_secret_token: str, bot: Any) -> bool:
        given = telegram_secret_token.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, (self.secret_token or "").encode())

    async def handle(self, request: web.Request) -> web.Response:
        header = request.headers.get(SECRET_HEADER)
        if header is None or not self.verify_secret(header, self.bot):
            self._refused(request, "missing secret token" if header is None
                          else "wrong secret token")
            return web.Response(status=401, text="Unauthorized")
        try:
            update = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            update = None
        if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
            self._refused(request, "not a JSON update")
            return web.Response(status=400, text="Bad Request")
        return await super().handle(request)  # aiohttp kept the body: read again there

    def _refused(self, request: web.Request, why: str) -> None:
        summary = self.tally.add(why, request.remote or "?")
        if summary is not None:
            self._report(summary)
        elif self._flush_timer is None:
            # The rest of this interval's refusals are reported when it ends.
            self._flush_timer = asyncio.get_running_loop().call_later(
                self.tally.interval_s, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        summary = self.tally.flush()
        if summary is not None:
            self._report(summary)

    def _report(self, summary: RefusalSummary) -> None:
        """One log line and one audit row for many refusals, written in the background."""
        logger.warning("telegram webhook: {}", summary.text())
        service = self.deps.service
        service.later("webhook audit", lambda: service.record_audit(
            surface="telegram", user="none", role="none", chat=None, command="webhook",
            args={"refused": summary.counts, "peers": list(summary.peers)},
            outcome=f"denied: {summary.text()}", latency_ms=0.0))

    def stop(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
        self._flush()

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
        self.refusals = RefusalTally()
        deps.service.webhook_refusals = self.refusals.totals  # read by the metrics
        self.handler = _CheckedHandler(deps, self.refusals, dispatcher=dp, bot=bot,
                                       secret_token=self._secret)
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
        self.handler.stop()
