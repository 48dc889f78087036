"""Shared helpers for the emulator tests (imported as tests.drill.emu_support)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import ccxt.async_support as ccxt

from bot.drill.emulator import EmulatorHandle, start_emulator

BASES = ("BTC", "ETH", "XRP", "DOGE", "SHIB")


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[EmulatorHandle]:
    kwargs.setdefault("autostep", False)
    if "top_n" not in kwargs:
        kwargs.setdefault("bases", list(BASES))
    handle = await start_emulator(**kwargs)
    try:
        yield handle
    finally:
        await handle.stop()


@contextlib.asynccontextmanager
async def client(handle: EmulatorHandle, venue: str, **overrides: Any) -> AsyncIterator[Any]:
    cfg = handle.ccxt_config(venue)
    cfg["enableRateLimit"] = False  # the emulator does not enforce limits; keep tests fast
    cfg.update(overrides)
    ex = getattr(ccxt, venue)(cfg)
    try:
        yield ex
    finally:
        await ex.close()


async def admin(handle: EmulatorHandle, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, handle.url + path, json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def raw(
    handle: EmulatorHandle, method: str, path: str, **kw: Any
) -> tuple[int, str, dict[str, str]]:
    async with aiohttp.ClientSession() as s, s.request(method, handle.url + path, **kw) as r:
        return r.status, await r.text(), dict(r.headers)
