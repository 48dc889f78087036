"""`arbops status` says whether Telegram is connected: the session's own requests
decide (the real aiogram Bot against the Bot API stand-in, faults injected there),
and the start-up is logged once, truthfully."""
from __future__ import annotations

from pathlib import Path

import pytest
from loguru import logger

from bot.telegram.link import TelegramLink
from tests.telegram.tg_support import telegram_env

pytestmark = [pytest.mark.timeout(60)]


def test_link_states_follow_answers_and_failures() -> None:
    now = [100.0]
    link = TelegramLink(lambda: now[0])
    assert link.health() == {"state": "connecting"}
    link.failed("TelegramNetworkError: refused")
    now[0] = 130.0
    link.failed("TelegramNetworkError: refused")
    h = link.health()
    assert h["state"] == "retrying" and h["since"] == 100.0 and h["failures"] == 2
    now[0] = 140.0
    link.answered()
    assert link.health() == {"state": "connected", "last_ok_at": 140.0}


async def test_status_reports_connected_then_retrying(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake, service = env.fake, env.service
        await fake.wait_for(lambda: service.status()["surfaces"]["telegram"]["state"]
                            == "connected", what="connected")
        assert service.status()["surfaces"]["metrics"] == {"state": "off"}
        fake.inject("getUpdates", "5xx", times=None)
        await fake.wait_for(lambda: service.status()["surfaces"]["telegram"]["state"]
                            == "retrying", timeout=15, what="retrying")
        tg = service.status()["surfaces"]["telegram"]
        assert tg["failures"] >= 1 and tg["since"] > 0
        fake.clear_faults("getUpdates")
        await fake.wait_for(lambda: service.status()["surfaces"]["telegram"]["state"]
                            == "connected", timeout=15, what="connected again")
    assert "telegram" not in service.surface_health  # stopped: no stale "connected"


async def test_a_failed_start_is_not_logged_as_started(tmp_path: Path) -> None:
    said: list[str] = []
    sink = logger.add(lambda m: said.append(m.record["message"]), level="INFO")
    try:
        async with telegram_env(
                tmp_path, before_start=lambda fake: fake.inject("setMyCommands", "5xx")):
            pass
    finally:
        logger.remove(sink)
    assert any("start-up call failed" in m for m in said), said
    assert not any(m.startswith("telegram surface started") for m in said), said
    assert any("telegram surface waiting for the Bot API" in m for m in said), said
