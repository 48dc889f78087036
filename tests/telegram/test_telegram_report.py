"""/report over Telegram: the chart as a photo (PNG drawn by a worker process, held in
memory, never in the bot's process) with the report as its caption, through the real
aiogram stack and the Bot API stand-in; the journal is the hand-built one of the
monitoring tests (Asia/Seoul)."""
from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.drill.emulator.telegram_api import BotApiStandIn
from core.monitoring.charts.worker import HANG_ENV
from tests.monitoring.journal_fixture import build_journal
from tests.telegram.tg_support import STRANGER, VIEWER, telegram_env

pytestmark = [pytest.mark.timeout(30)]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
USAGE = ("usage: /report [daily|weekly] [YYYY-MM-DD|today|yesterday] | "
         "/report run <run id|last>")
SEOUL = {"report_timezone": "Asia/Seoul"}


@dataclass
class Upload:
    chat_id: int
    caption: str
    filename: str
    data: bytes


def record_uploads(fake: BotApiStandIn, uploads: list[Upload]) -> None:
    """The bytes of every sendPhoto upload. The stand-in reads and drops file parts in
    `_params` (before `_m_sendphoto` sees them), so this wraps `_params` on this one
    instance: aiohttp parses the multipart body once and caches it, so after the stand-in
    has read it we rewind each file part and read it again."""
    original = fake._params

    async def params(request: web.Request) -> Any:
        result = await original(request)
        if request.match_info.get("method", "").lower() == "sendphoto":
            post = await request.post()  # the cached parse
            for value in post.values():
                if isinstance(value, web.FileField):
                    value.file.seek(0)
                    uploads.append(Upload(int(str(post.get("chat_id"))),
                                          str(post.get("caption") or ""), value.filename,
                                          value.file.read()))
        return result

    fake._params = params  # type: ignore[method-assign]


async def no_wait(_s: float) -> None:
    await asyncio.sleep(0)


def photos(fake: BotApiStandIn, chat_id: int) -> list[dict[str, Any]]:
    return [c.params for c in fake.calls_to("sendPhoto") if int(c.params["chat_id"]) == chat_id]


def report_rows(env: Any) -> list[dict[str, Any]]:
    return [r for r in env.audit() if r["command"] == "report"]


async def test_daily_and_weekly_reports_are_charts_with_the_figures(tmp_path: Path) -> None:
    await build_journal(tmp_path)
    uploads: list[Upload] = []
    async with telegram_env(tmp_path, settings_kw=SEOUL,
                            before_start=lambda f: record_uploads(f, uploads)) as env:
        fake = env.fake
        fake.send_text(VIEWER, "/report daily 2026-01-05")
        await fake.wait_for(lambda: photos(fake, VIEWER), what="the daily chart")
        await fake.wait_for(lambda: uploads, what="the daily upload")
        daily = uploads[0]
        assert daily.chat_id == VIEWER and daily.filename == "daily-2026-01-05.png"
        assert daily.data[:8] == PNG_SIGNATURE and len(daily.data) > 1000
        assert daily.data[16:24] == (1080).to_bytes(4, "big") + (720).to_bytes(4, "big")
        call = photos(fake, VIEWER)[0]
        assert call["parse_mode"] == "HTML" and call["caption"] == daily.caption
        for line in ("Daily report 2026-01-05 (Asia/Seoul)", "Round trips: 5 (wins 2)",
                     "Strategy PnL (closed round trips): $-1.00", "Win rate: 40.0%", "Max drawdown: $5.00",
                     "Exchange API errors: 7", "Rate-limit hits: 3"):
            assert line in daily.caption
        assert "matplotlib" not in sys.modules  # drawn by the worker, not by the bot

        fake.send_text(VIEWER, "/report weekly 2026-01-07")
        await fake.wait_for(lambda: len(uploads) >= 2, what="the weekly upload")
        weekly = uploads[1]
        assert weekly.chat_id == VIEWER and weekly.filename == "weekly-2026-01-05.png"
        assert weekly.data[:8] == PNG_SIGNATURE and len(weekly.data) > 1000
        for line in ("Weekly report 2026-01-05..2026-01-11 (Asia/Seoul)",
                     "Weekly PnL: $+2.00", "Round trips: 8", "Best day: 2026-01-07 $+6.00",
                     "Worst day: 2026-01-09 $-3.00", "2026-01-05: $-1.00, 5 RT"):
            assert line in weekly.caption
        await fake.wait_for(lambda: len(report_rows(env)) >= 2, what="2 audit rows")
        # The caption was the whole answer: no extra message, nothing on disk, audited.
        assert fake.texts(VIEWER) == []
        assert not (tmp_path / "reports").exists()
        assert [(r["args"], r["outcome"], r["role"]) for r in report_rows(env)] == [
            ("daily 2026-01-05", "ok", "viewer"), ("weekly 2026-01-07", "ok", "viewer")]


async def test_bad_arguments_get_usage_and_strangers_nothing(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(STRANGER, "/report daily")
        fake.send_text(VIEWER, "/report monthly")
        fake.send_text(VIEWER, "/report daily ../../etc")
        fake.send_text(VIEWER, "/report daily 2026-01-05 /tmp/x.png")
        await fake.wait_for(lambda: len(fake.texts(VIEWER)) >= 3, what="3 usage replies")
        await fake.wait_for(lambda: len(report_rows(env)) >= 4, what="4 audit rows")
        assert fake.texts(VIEWER) == [f"{USAGE}\nNothing changed."] * 3
        assert fake.texts(STRANGER) == [] and not fake.calls_to("sendPhoto", ok_only=False)
        rows = report_rows(env)
        assert rows[0]["outcome"].startswith("denied") and rows[0]["user_id"] == str(STRANGER)
        assert all(r["outcome"].startswith("bad input") for r in rows[1:])


async def test_a_report_too_long_for_a_caption_follows_the_photo(tmp_path: Path) -> None:
    """A caption over 1024 characters: the first line on the photo, then the whole
    report (escaped) as a message; a 429 on the photo is waited out (reply Sender)."""
    async with telegram_env(tmp_path, retry_sleep=no_wait) as env:
        fake, service = env.fake, env.service
        original = service.report_with_chart

        async def long_report(kind: str, day: str | None = None,
                              run_id: str | None = None) -> Any:
            built = await original(kind, day, run_id=run_id)
            built.text += "".join(f"\nnote {i}: <tag> & more" for i in range(60))
            return built

        service.report_with_chart = long_report
        fake.inject("sendPhoto", "429", times=1, retry_after=1)
        fake.send_text(VIEWER, "/report daily today")
        text = await fake.wait_text(VIEWER, "note 59: <tag> & more")
        sent = photos(fake, VIEWER)
        assert len(sent) == 1 and len(fake.calls_to("sendPhoto", ok_only=False)) == 2
        assert sent[0]["caption"].startswith("Daily report ") and "\n" not in sent[0]["caption"]
        assert text.startswith(sent[0]["caption"] + "\nTotal runtime:")
        order = [c.method for c in fake.calls if c.status == 200 and c.method in (
            "sendphoto", "sendmessage")]
        assert order == ["sendphoto", "sendmessage"]


async def test_a_hung_chart_is_cut_off_and_the_report_is_text_with_a_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart worker hangs (test hook): killed at report_chart_timeout_s, and the
    report still comes, as text with a note."""
    monkeypatch.setenv(HANG_ENV, "1")
    async with telegram_env(tmp_path, settings_kw={"report_chart_timeout_s": 1.0}) as env:
        fake = env.fake
        fake.send_text(VIEWER, "/report weekly")
        text = await fake.wait_text(VIEWER, "Weekly PnL: $+0.00")
        assert "Round trips: 0" in text and text.endswith(
            "(no chart: it could not be drawn; the details are in the server log)")
        assert not fake.calls_to("sendPhoto", ok_only=False)
        await fake.wait_for(lambda: report_rows(env), what="the audit row")
        assert report_rows(env)[0]["outcome"] == "ok: text only (no chart)"


async def test_a_run_report_with_its_chart(tmp_path: Path) -> None:
    await build_journal(tmp_path)
    uploads: list[Upload] = []
    async with telegram_env(tmp_path, settings_kw=SEOUL,
                            before_start=lambda f: record_uploads(f, uploads)) as env:
        fake = env.fake
        fake.send_text(VIEWER, "/report run R2")
        await fake.wait_for(lambda: uploads, what="the run chart")
        (run,) = uploads
        assert run.filename == "run-R2.png" and run.data[:8] == PNG_SIGNATURE
        for line in ("Run report R2", "Round trips: 3 (wins 1)",
                     "Closed-trade PnL: $+1.00 (fees $0.30 included)"):
            assert line in run.caption
        fake.send_text(VIEWER, "/report run R9")
        fake.send_text(VIEWER, "/report run")
        await fake.wait_for(lambda: len(fake.texts(VIEWER)) >= 2, what="2 refusals")
        replies = sorted(fake.texts(VIEWER))  # handled concurrently: either order
        assert replies[0].startswith("no run 'R9' in the journal")
        assert replies[0].endswith("Nothing changed.")
        assert replies[1] == f"{USAGE}\nNothing changed."
