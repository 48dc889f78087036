"""Telegram round trip (issue #6): an update delivered by a local Bot API (the
emulator's stand-in) -> the bot's reply sent, for /status and /kill, through the
real aiogram Bot and Dispatcher of the service; plus /kill -> HALTED."""
from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import build_service
from bot.telegram_app import start_telegram
from core.emulator import start_emulator
from core.perf import percentile
from core.settings import Settings

N = 100
USER = 777


async def main() -> None:
    from loguru import logger

    logger.remove()
    emu = await start_emulator(top_n=10)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp),  # type: ignore[call-arg]
                            telegram_bot_token="424242:AAdrillTokenNotRealOnlyForTheEmulator0",
                            telegram_chat_id=USER, telegram_api_base=emu.url,
                            telegram_allowed_users=f"{USER}:admin")
        service = await build_service(settings)
        handle = await start_telegram(service, settings)
        try:
            async with aiohttp.ClientSession() as http:
                results: dict[str, list[float]] = {}
                for cmd in ("/status", "/kill"):
                    samples = []
                    for i in range(N):
                        sent_before = len(await _sent(http, emu.url))
                        t0 = time.time()
                        await http.post(f"{emu.url}/admin/telegram/updates", json=_update(cmd, i))
                        while len(await _sent(http, emu.url)) <= sent_before:
                            await asyncio.sleep(0.0005)
                        reply_ts = (await _sent(http, emu.url))[sent_before]["ts"]
                        samples.append((reply_ts - t0) * 1000)
                        if cmd == "/kill" and i == 0:
                            halted_ms = (service.state.changed_at - t0) * 1000
                    results[cmd] = samples
        finally:
            await handle.stop()
            await service.store.close()
            await emu.stop()
    print(f"Telegram round trip through a local Bot API ({N} commands each, 2 cores)")
    print("| command | p50 ms | p99 ms |")
    print("|---|---|---|")
    for cmd, s in results.items():
        s.sort()
        print(f"| {cmd} | {statistics.median(s):.1f} | {percentile(s, 0.99):.1f} |")
    print(f"/kill update delivered -> HALTED: {halted_ms:.1f} ms")


def _update(text: str, i: int) -> dict[str, Any]:
    now = int(time.time())
    return {"message": {"message_id": 1000 + i, "date": now, "text": text,
                        "chat": {"id": USER, "type": "private"},
                        "from": {"id": USER, "is_bot": False, "first_name": "op"},
                        "entities": [{"type": "bot_command", "offset": 0,
                                      "length": len(text)}]}}


async def _sent(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(f"{url}/admin/telegram") as resp:
        body = await resp.json()
    return [m for m in body["sent"] if m["method"] in ("sendMessage", "editMessageText")]


if __name__ == "__main__":
    asyncio.run(main())
