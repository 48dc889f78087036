"""Starts the Telegram surface inside `arbops serve` (issue #6 fills this in)."""
from __future__ import annotations

from typing import Any

from loguru import logger

from core.settings import Settings


async def start_telegram(service: Any, settings: Settings) -> Any:
    """Return a handle with `async stop()`, or None when Telegram is not configured."""
    if settings.telegram_bot_token is None:
        logger.info("no TELEGRAM_BOT_TOKEN: running headless (CLI and control channel only)")
        return None
    logger.warning("TELEGRAM_BOT_TOKEN is set but the Telegram surface is not built yet")
    return None
