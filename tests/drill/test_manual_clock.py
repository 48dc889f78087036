"""The emulator on a manual clock: its market moves only when advanced, once per
interval passed (catch-up), and SteppedFeed keeps a run's clock on the same time."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bot.drill.stepped_feed import SteppedFeed
from tests.drill.emu_support import running


async def post(url: str, path: str, body: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s, s.post(url + path, json=body) as r:
        return r.status, await r.json(content_type=None)


async def test_advance_steps_once_per_interval_passed_and_carries_the_rest() -> None:
    async with running(manual_clock=True, interval_s=0.1) as emu:
        t0, seq0 = emu.core.clock.time(), emu.core.snapshot().seq
        await asyncio.sleep(0.3)  # the wall clock moves; the market does not
        assert emu.core.snapshot().seq == seq0 and emu.core.clock.time() == t0
        status, got = await post(emu.url, "/admin/advance", {"seconds": 0.35})
        assert status == 200
        assert got["seq"] == seq0 + 3  # three intervals passed, caught up at once
        assert got["time"] == pytest.approx(t0 + 0.35)
        assert got["snapshot"]["ts"] == int((t0 + 0.3) * 1000)  # the third book's own time
        assert set(got["snapshot"]["u"]) == set(emu.core.universe)
        _, got = await post(emu.url, "/admin/advance", {"seconds": 0.05})
        assert got["seq"] == seq0 + 4  # 0.05 carried + 0.05: the fourth interval ends


async def test_advance_refuses_bad_input_and_a_wall_clock_emulator() -> None:
    async with running(manual_clock=True) as emu:
        for body in ({"seconds": -1}, {"seconds": "1"}, {}):
            status, got = await post(emu.url, "/admin/advance", body)
            assert status == 400 and "seconds" in got["error"], got
    async with running() as emu:
        status, got = await post(emu.url, "/admin/advance", {"seconds": 1})
        assert status == 400 and "manual clock" in got["error"], got


async def test_stepped_feed_ticks_in_lockstep_on_the_emulator_time() -> None:
    async with running(manual_clock=True, interval_s=0.1) as emu:
        feed = await SteppedFeed.open(emu.url, 0.2)
        assert feed.clock.time() == emu.core.clock.time()
        feed.subscribe(["BTC", "ETH"])
        task = asyncio.create_task(feed.run())
        try:
            first = await asyncio.wait_for(feed.wait_next(-1), 10)
            await asyncio.sleep(0.2)  # no tick done on it: the market must not move
            assert emu.core.snapshot().seq == first.seq
            second = await asyncio.wait_for(feed.wait_next(first.seq), 10)
            assert second.seq == first.seq + 2  # a 0.2 s tick is two 0.1 s books
            assert set(second.upbit) == {"BTC", "ETH"} == set(second.binance)
            assert feed.clock.time() == pytest.approx(emu.core.clock.time())
            assert second.ts_ms == int(feed.clock.time() * 1000)  # no stale books
        finally:
            task.cancel()
            await feed.close()
