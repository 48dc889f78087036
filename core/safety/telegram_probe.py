"""Telegram reachability for preflight (R-S3): one getMe over plain HTTP.

Plain aiohttp rather than aiogram, so a CLI preflight stays light; the token
never leaves this function in an error (the URL holding it is not repeated).
"""
from __future__ import annotations

from typing import Any

import aiohttp


def telegram_get_me(api_base: str, token: str, timeout_s: float = 10.0) -> Any:
    async def get_me() -> dict[str, Any]:
        url = f"{api_base.rstrip('/')}/bot{token}/getMe"
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
                    session.get(url) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise RuntimeError(f"Telegram getMe failed: {type(exc).__name__}") from None
        if not isinstance(body, dict) or not body.get("ok"):
            desc = body.get("description") if isinstance(body, dict) else "bad reply"
            raise RuntimeError(f"Telegram getMe refused: {desc}")
        result: dict[str, Any] = body["result"]
        return result

    return get_me
