"""TelegramNotifier against the Bot API stand-in with a real aiogram Bot (R-O3):
never blocks the caller, honours 429 retry_after, retries 5xx and timeouts,
puts KILL first, merges under a flood instead of dropping, escapes HTML and
keeps within Telegram's limits."""
from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bot.drill.emulator.telegram_api import TOKEN, BotApiStandIn
from core.monitoring.notifier import LogNotifier

if TYPE_CHECKING:
    from bot.telegram.notifier import TelegramNotifier

pytestmark = [pytest.mark.timeout(60)]
CHAT = -42


@contextlib.asynccontextmanager
async def notifier_on(chat_id: int | None = CHAT, **kw: Any
                      ) -> AsyncIterator[tuple[BotApiStandIn, TelegramNotifier, LogNotifier]]:
    # aiogram (~130 MB RSS) is imported here, not at collection: other suites in the
    # same pytest process measure memory against the runbook's guards.
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot.telegram.notifier import TelegramNotifier

    async with BotApiStandIn() as fake:
        bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(fake.url)))
        inner = LogNotifier()
        kw.setdefault("min_interval_s", 0.0)
        kw.setdefault("request_timeout_s", 5.0)
        n = TelegramNotifier(bot, chat_id, inner=inner, **kw)
        n.start()
        try:
            yield fake, n, inner
        finally:
            await n.stop(drain_s=1.0)
            await bot.session.close()


async def test_notify_never_waits_and_honours_retry_after() -> None:
    async with notifier_on() as (fake, n, inner):
        fake.inject("sendMessage", "429", times=2, retry_after=1)
        t0 = time.perf_counter()
        await n.notify("ALERT", "guard latency", "loop latency 120 ms > 100 ms")
        assert time.perf_counter() - t0 < 0.05
        assert inner.sent[-1][1:] == ("ALERT", "guard latency", "loop latency 120 ms > 100 ms")
        assert await n.flush(10)
        calls = fake.calls_to("sendMessage", ok_only=False)
        assert [c.status for c in calls] == [429, 429, 200]
        assert calls[1].t - calls[0].t >= 0.95 and calls[2].t - calls[1].t >= 0.95
        assert "guard latency" in fake.texts(CHAT)[0]
        assert n.stats.retry_after_waits == 2


async def test_5xx_timeouts_and_html_error_pages_are_retried() -> None:
    async with notifier_on(request_timeout_s=0.5) as (fake, n, _):
        fake.inject("sendMessage", "5xx", times=1)
        fake.inject("sendMessage", "timeout", times=1, delay_s=1.5)
        fake.inject("sendMessage", "html", times=1)
        await n.notify("INFO", "daily report", "ok")
        assert await n.flush(15)
        assert fake.texts(CHAT) == ["ℹ️ [INFO] daily report\nok"]
        assert n.stats.network_retries == 3


async def test_flood_is_merged_not_dropped_and_kill_goes_first() -> None:
    async with notifier_on() as (fake, n, _):
        fake.inject("sendMessage", "429", times=1, retry_after=1)
        await n.notify("INFO", "warm-up", "first")  # this one meets the 429
        for i in range(60):
            await n.notify("INFO", f"fill {i}", f"body {i}")
        await n.notify("ALERT", "guard cpu", "cpu 85 %")
        await n.notify("KILL", "kill switch", "HALTED: guard daily_loss")
        assert await n.flush(15)
        texts = fake.texts(CHAT)
        assert "kill switch" in texts[0], texts[0][:200]
        assert "guard cpu" in texts[1] or "guard cpu" in texts[0]
        joined = "\n".join(texts)
        for i in range(60):
            assert f"fill {i}:" in joined  # merged, none dropped
        assert "warm-up" in joined
        assert len(texts) < 15
        assert n.stats.merged_messages >= 1
        assert n.stats.items_delivered == 63


async def test_backlog_is_compacted_with_counts_when_telegram_stays_down() -> None:
    async with notifier_on(max_backlog=20) as (fake, n, _):
        fake.inject("sendMessage", "5xx", times=None)
        for i in range(500):
            await n.notify("ALERT", f"guard g{i % 5}", f"reading {i}")
        assert sum(len(q) for q in n._queues) <= 20
        assert n.backlog == 500  # every occurrence is still counted
        fake.clear_faults()
        assert await n.flush(15)
        joined = "\n".join(fake.texts(CHAT))
        assert all(f"guard g{k}" in joined for k in range(5))
        assert "×" in joined
        assert n.stats.items_delivered == 500


async def test_html_is_escaped_and_long_bodies_fit() -> None:
    async with notifier_on() as (fake, n, _):
        await n.notify("KILL", "kill <switch> & co", "reason: a<b && c>d </b> <i>")
        await n.notify("INFO", "long", "x" * 10_000)
        assert await n.flush(10)
        texts = fake.texts(CHAT)
        assert texts[0] == "🛑 [KILL] kill <switch> & co\nreason: a<b && c>d </b> <i>"
        assert len(texts[1]) <= 4096 and texts[1].startswith("ℹ️ [INFO] long")
        assert all(c.status == 200 for c in fake.calls_to("sendMessage", ok_only=False))


async def test_alerts_mask_secrets_but_not_setting_names() -> None:
    """A secret that reaches an alert (a kill reason, an exception text) is masked
    before it leaves; a setting's name and plain words next to it are kept."""
    from core.redaction import register_secrets

    register_secrets(["fakeBinanceSecretQWERTYUIOP"])
    try:
        async with notifier_on() as (fake, n, _):
            await n.notify("KILL", "kill switch", "reason: pasted fakeBinanceSecretQWERTYUIOP "
                           "redis://:pw4242xyz@host:6379/0")
            await n.notify("INFO", "start", "no TELEGRAM_BOT_TOKEN: headless")
            assert await n.flush(10)
            texts = fake.texts(CHAT)
            assert texts[0] == "🛑 [KILL] kill switch\nreason: pasted *** redis://:***@host:6379/0"
            assert texts[1] == "ℹ️ [INFO] start\nno TELEGRAM_BOT_TOKEN: headless"
    finally:
        register_secrets([])


async def test_same_message_repeated_is_counted_once() -> None:
    async with notifier_on() as (fake, n, _):
        fake.inject("sendMessage", "429", times=1, retry_after=1)
        await n.notify("INFO", "first", "x")
        for _ in range(5):
            await n.notify("ALERT", "guard rss", "rss 320 MB")
        assert await n.flush(10)
        assert any("guard rss ×5" in t for t in fake.texts(CHAT))


async def test_send_photo_and_caption(tmp_path: Path) -> None:
    png = tmp_path / "chart.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 64)
    async with notifier_on() as (fake, n, _):
        await n.send_photo(png, "daily PnL <chart> & more")
        assert await n.flush(10)
        (call,) = fake.calls_to("sendPhoto")
        assert call.files == ["chart.png"]
        assert call.params["caption"] == "daily PnL &lt;chart&gt; &amp; more"


async def test_without_chat_id_it_only_logs() -> None:
    async with notifier_on(chat_id=None) as (fake, n, inner):
        await n.notify("KILL", "kill switch", "HALTED")
        assert await n.flush(2)
        assert inner.sent and not fake.calls_to("sendMessage", ok_only=False)


async def test_forbidden_chat_is_logged_and_the_queue_moves_on() -> None:
    async with notifier_on() as (fake, n, inner):
        fake.inject("sendMessage", "403", times=1)
        await n.notify("INFO", "lost", "1")
        assert await n.flush(5)
        await n.notify("INFO", "next", "2")
        assert await n.flush(5)
        assert n.stats.dropped_undeliverable == 1
        assert [t.split("\n")[0] for t in fake.texts(CHAT)] == ["ℹ️ [INFO] next"]
        assert [x[2] for x in inner.sent] == ["lost", "next"]  # both in the log


async def test_a_flood_of_trade_messages_is_merged_in_order_and_never_blocks() -> None:
    """R-O6: 120 trade events while Telegram answers 429: the engine's pushes return at
    once, the chat gets fewer messages than events, and every event is in them, in the
    order the trades happened."""
    from core.domain.trade_events import TradeEvent, TradeEventKind
    from core.monitoring.trade_notices import TradeNotices

    async with notifier_on() as (fake, n, _inner):
        fake.inject("sendMessage", "429", times=1, retry_after=1)
        notices = TradeNotices(lambda: n, "every")
        notices.start()
        t0 = time.perf_counter()
        for i in range(120):
            notices.push(TradeEvent(TradeEventKind.EXIT, f"C{i:03d}", f"p{i}",
                                    "sell_upbit_buy_binance", 0.0, pnl_usd=0.01,
                                    fees_usd=0.0, held_s=3.0, detail="take_profit"))
        assert (time.perf_counter() - t0) * 1000 < 100
        await notices.stop()
        assert await n.flush(20)
        texts = fake.texts(CHAT)
        assert len(texts) < 120
        seen = [int(m) for t in texts for m in re.findall(r"EXIT C(\d{3})", t)]
        assert seen == list(range(120)), seen[:20]
