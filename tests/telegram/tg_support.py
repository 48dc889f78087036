"""Shared set-up for the Telegram tests: the Bot API stand-in, a real service (SQLite,
paper venues, sim market) and the real aiogram app started by `start_telegram`."""
from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import DB_NAME, build_service
from bot.drill.emulator.telegram_api import TOKEN, BotApiStandIn
from bot.telegram_app import TelegramApp, start_telegram
from core.config.settings import Settings

OPERATOR, VIEWER, ADMIN, OPERATOR2, STRANGER = 1001, 1002, 1003, 1004, 6666
ALERT_CHAT = -100200300
ALLOWED = f"{OPERATOR}:operator,{VIEWER}:viewer,{ADMIN}:admin,{OPERATOR2}:operator"


@dataclass
class Env:
    fake: BotApiStandIn
    service: Any
    app: TelegramApp
    settings: Settings
    data_dir: Path

    def audit(self) -> list[dict[str, Any]]:
        """Audit rows of the telegram surface, oldest first, read on a connection of our own."""
        con = sqlite3.connect(f"file:{self.data_dir / DB_NAME}?mode=ro", uri=True, timeout=5)
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute("SELECT * FROM audit WHERE surface='telegram' ORDER BY id").fetchall()
        finally:
            con.close()
        return [dict(r) for r in rows]


def settings_for(data_dir: Path, url: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": data_dir, "telegram_bot_token": TOKEN, "telegram_allowed_users": ALLOWED,
        "telegram_api_base": url, "telegram_chat_id": ALERT_CHAT, "log_level": "WARNING",
    }
    base.update(kw)
    return Settings(**base)


@contextlib.asynccontextmanager
async def telegram_env(data_dir: Path, *, fast: bool = False, before_start: Any = None,
                       settings_kw: dict[str, Any] | None = None,
                       **start_kw: Any) -> AsyncIterator[Env]:
    """fake API -> service -> start_telegram; everything closed on exit."""
    start_kw.setdefault("polling_timeout", 1)
    start_kw.setdefault("notifier_interval_s", 0.0)
    start_kw.setdefault("live_interval_s", 0.5)
    start_kw.setdefault("request_timeout_s", 5.0)
    async with BotApiStandIn() as fake:
        settings = settings_for(data_dir, fake.url, sim_fast=fast, **(settings_kw or {}))
        service = await build_service(settings, fast=fast)
        app: TelegramApp | None = None
        try:
            if before_start is not None:
                before_start(fake)
            app = await start_telegram(service, settings, **start_kw)
            assert app is not None
            yield Env(fake, service, app, settings, data_dir)
        finally:
            if app is not None:
                await app.stop()
            if service.current is not None:
                service.current.request_stop("test teardown")
                service.current.request_stop("test teardown")
            task = service._run_task
            if task is not None and not task.done():
                with contextlib.suppress(Exception):
                    await task
            await service.store.close()
