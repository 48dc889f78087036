"""The Bot API stand-in as the exchange emulator mounts it for `arbops drill`: the
admin endpoints the rehearsal reads and writes, its strictness behind the emulator's
middleware, and a pending long poll not holding up the emulator's stop."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from bot.drill.emulator import start_emulator
from tests.drill.emu_support import admin, running

BOT = "/bot424242:AAdrillTokenNotRealOnlyForTheEmulator0"


async def _call(url: str, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(f"{url}{BOT}/{method}", json=params) as r:
        return r.status, await r.json()


async def test_admin_endpoints_show_sent_messages_and_queue_updates() -> None:
    async with running() as emu:
        assert (await _call(emu.url, "getMe"))[1]["result"]["is_bot"] is True
        status, body = await _call(emu.url, "sendMessage", chat_id=1, text="<b>test</b> alert",
                                   parse_mode="HTML")
        assert (status, body["result"]["text"]) == (200, "test alert")
        sent = (await admin(emu, "GET", "/admin/telegram"))["sent"]
        assert [(m["method"], m["params"]["text"], m["status"]) for m in sent] == [
            ("sendmessage", "<b>test</b> alert", 200)]  # getMe is not "sent"

        update = {"message": {"message_id": 1, "date": 0, "text": "/status",
                              "chat": {"id": 1, "type": "private"}}}
        queued = (await admin(emu, "POST", "/admin/telegram/updates", update))["queued"]
        _, polled = await _call(emu.url, "getUpdates", offset=0, timeout=0)
        assert [u["update_id"] for u in polled["result"]] == [queued]


async def test_mounted_stand_in_is_as_strict_as_telegram() -> None:
    async with running() as emu:
        status, body = await _call(emu.url, "sendMessage", chat_id=1, text="<b>unclosed",
                                   parse_mode="HTML")
        assert status == 400 and "can't parse entities" in body["description"]
        status, _ = await _call(emu.url, "noSuchMethod")
        assert status == 404


async def test_a_pending_long_poll_does_not_hold_up_the_emulator_stop() -> None:
    emu = await start_emulator(bases=["BTC"], autostep=False)
    poll = asyncio.ensure_future(_call(emu.url, "getUpdates", timeout=30))
    await asyncio.sleep(0.3)  # the poll is pending at the stand-in
    t0 = time.monotonic()
    await emu.stop()
    assert time.monotonic() - t0 < 2
    status, body = await asyncio.wait_for(poll, 5)
    assert (status, body["result"]) == (200, [])
