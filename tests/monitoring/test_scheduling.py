"""R-O4 scheduling: 09:00 in the report zone, once; a missed run is sent once at
start-up within the grace period, never twice, across a restart on the same DB.
Time comes from a ManualClock: nothing here waits for the wall clock.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED

from bot.app import DB_NAME, build_service
from bot.monitoring_app import start_schedules
from bot.scheduler import DAILY_JOB, RECONCILE_JOB, WEEKLY_JOB, build_scheduler, report_triggers
from core.clock import ManualClock
from core.config.settings import Settings
from core.journal.sqlite_store import SqliteStore
from core.monitoring.charts.worker import HANG_ENV
from core.monitoring.jobs import DAILY_FLAG, WEEKLY_FLAG, ReportJobs, last_slot
from tests.monitoring.journal_fixture import KST, build_journal, kst


class PhotoNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []
        self.photos: list[tuple[Path, str]] = []

    async def notify(self, severity: str, title: str, body: str) -> None:
        self.sent.append((severity, title, body))

    async def send_photo(self, path: Path, caption: str) -> None:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        self.photos.append((path, caption))


class Service:
    """What the jobs use of OperatorService: store, notifier, current run."""

    def __init__(self, store: SqliteStore, notifier: Any) -> None:
        self.store = store
        self.notifier = notifier
        self.current = None


def settings_for(data_dir: Path, **kw: Any) -> Settings:
    return Settings(data_dir=data_dir, **kw)


async def open_jobs(data_dir: Path, clock: ManualClock, notifier: Any,
                    **settings: Any) -> tuple[ReportJobs, SqliteStore]:
    store = await SqliteStore.open(data_dir / DB_NAME)
    return ReportJobs(Service(store, notifier), settings_for(data_dir, **settings), clock), store


def test_triggers_fire_at_0900_in_the_report_zone_once_a_day() -> None:
    triggers = report_triggers(settings_for(Path("unused")))
    clock = ManualClock(kst(5, 8))  # Monday 2026-01-05 08:00 KST
    now = datetime.fromtimestamp(clock.time(), KST)
    fires, prev = [], None
    for _ in range(3):
        nxt = triggers[DAILY_JOB].get_next_fire_time(prev, now)
        fires.append(nxt)
        prev, now = nxt, nxt + timedelta(seconds=1)
    assert [f.isoformat() for f in fires] == [
        "2026-01-05T09:00:00+09:00", "2026-01-06T09:00:00+09:00", "2026-01-07T09:00:00+09:00"]
    assert fires[0].timestamp() == kst(5, 9)  # 00:00 UTC
    weekly = triggers[WEEKLY_JOB].get_next_fire_time(None, datetime.fromtimestamp(kst(5, 10), KST))
    assert weekly.isoformat() == "2026-01-12T09:00:00+09:00"  # the next Monday


def test_last_slot() -> None:
    assert last_slot(kst(5, 9), KST, (9, 0), weekly=False).timestamp() == kst(5, 9)
    assert last_slot(kst(5, 8, 59), KST, (9, 0), weekly=False).timestamp() == kst(4, 9)
    assert last_slot(kst(7, 12), KST, (9, 0), weekly=True).timestamp() == kst(5, 9)
    monday_before = datetime(2025, 12, 29, 9, tzinfo=KST).timestamp()
    assert last_slot(kst(5, 8), KST, (9, 0), weekly=True).timestamp() == monday_before


async def test_daily_job_sends_once_at_0900_even_when_polled_every_minute(
        tmp_path: Path) -> None:
    await build_journal(tmp_path)
    clock = ManualClock(kst(6, 8))  # Tuesday 08:00 KST
    notifier = PhotoNotifier()
    jobs, store = await open_jobs(tmp_path, clock, notifier)
    try:
        await store.set_flag(DAILY_FLAG, "2026-01-04", clock.time())  # Monday's was sent
        sent_at = []
        for _ in range(120):  # 08:00 .. 09:59, a call every minute
            result = await jobs.daily()
            if result.sent:
                sent_at.append((clock.time(), result.key))
            clock.advance(60)
        assert sent_at == [(kst(6, 9), "2026-01-05")]
        assert await store.get_flag(DAILY_FLAG) == "2026-01-05"
        (path, caption), = notifier.photos
        assert path == tmp_path / "reports" / "daily-2026-01-05.png"
        assert caption.startswith("Daily report 2026-01-05") and "Win rate: 40.0%" in caption
        assert (tmp_path / "reports" / "daily-2026-01-05.json").exists()
    finally:
        await store.close()


async def test_missed_report_is_sent_once_at_startup_and_never_twice_across_restarts(
        tmp_path: Path) -> None:
    await build_journal(tmp_path)
    clock = ManualClock(kst(12, 11))  # Monday 2026-01-12 11:00: down at 09:00
    notifier = PhotoNotifier()
    jobs, store = await open_jobs(tmp_path, clock, notifier)
    try:
        await store.set_flag(DAILY_FLAG, "2026-01-10", 0.0)
        results = await jobs.catch_up()
        assert [(r.kind, r.key, r.sent) for r in results] == [
            ("daily", "2026-01-11", True), ("weekly", "2026-01-05", True)]
        assert [r.reason for r in await jobs.catch_up()] == ["already sent", "already sent"]
        # The scheduler's own trigger for the same slot, late: still not twice.
        assert not (await jobs.daily()).sent
    finally:
        await store.close()
    assert len(notifier.photos) == 2
    weekly_caption = notifier.photos[1][1]
    assert "Weekly PnL: $+2.00" in weekly_caption

    clock.advance(600)  # a restart on the same database
    jobs2, store2 = await open_jobs(tmp_path, clock, notifier)
    try:
        assert [r.sent for r in await jobs2.catch_up()] == [False, False]
        assert await store2.get_flag(WEEKLY_FLAG) == "2026-01-05"
    finally:
        await store2.close()
    assert len(notifier.photos) == 2


async def test_a_report_missed_beyond_the_grace_period_is_skipped(tmp_path: Path) -> None:
    await build_journal(tmp_path)
    clock = ManualClock(kst(6, 16))  # 7 h after 09:00; default grace is 6 h
    notifier = PhotoNotifier()
    jobs, store = await open_jobs(tmp_path, clock, notifier)
    try:
        await store.set_flag(DAILY_FLAG, "2026-01-04", 0.0)
        result = await jobs.daily()
        assert (result.sent, result.reason) == (False, "missed beyond grace")
        clock.advance(17 * 3600)  # the next 09:00
        result = await jobs.daily()
        assert (result.sent, result.key) == (True, "2026-01-06")
    finally:
        await store.close()
    assert len(notifier.photos) == 1


async def test_a_missed_report_is_said_once_and_only_when_there_was_data(
        tmp_path: Path) -> None:
    """Start-up with an empty data dir: no report ever had data, so nothing is said at
    INFO; with a run in the journal the skip is said (once per start)."""
    from loguru import logger

    said: list[tuple[str, str]] = []
    sink = logger.add(lambda m: said.append((m.record["level"].name, m.record["message"])),
                      level="DEBUG")
    try:
        clock = ManualClock(kst(6, 16))
        jobs, store = await open_jobs(tmp_path, clock, PhotoNotifier())
        try:
            assert {r.reason for r in await jobs.catch_up()} == {"missed beyond grace"}
        finally:
            await store.close()
        skips = [(lvl, m) for lvl, m in said if "missed by" in m]
        assert skips and all(lvl == "DEBUG" for lvl, _ in skips), skips
        said.clear()
        (tmp_path / "with-runs").mkdir()
        await build_journal(tmp_path / "with-runs")
        jobs, store = await open_jobs(tmp_path / "with-runs", clock, PhotoNotifier())
        try:
            await store.set_flag(DAILY_FLAG, "2026-01-04", 0.0)
            await jobs.daily()
        finally:
            await store.close()
        assert [lvl for lvl, m in said if "missed by" in m] == ["INFO"]
    finally:
        logger.remove(sink)


async def test_without_send_photo_the_chart_path_goes_in_the_text(tmp_path: Path) -> None:
    from core.monitoring.notifier import LogNotifier

    await build_journal(tmp_path)
    clock = ManualClock(kst(6, 9))
    notifier = LogNotifier()
    jobs, store = await open_jobs(tmp_path, clock, notifier)
    try:
        assert (await jobs.daily()).sent
    finally:
        await store.close()
    (_, severity, title, body), = notifier.sent
    assert (severity, title) == ("INFO", "Daily report 2026-01-05 (Asia/Seoul)")
    assert f"Chart: {tmp_path / 'reports' / 'daily-2026-01-05.png'}" in body


async def test_a_hung_chart_is_cut_off_and_the_report_goes_out_as_text(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chart worker hangs (test hook): it is killed at report_chart_timeout_s and
    the 09:00 report is sent as text saying why, once (the flag is set)."""
    monkeypatch.setenv(HANG_ENV, "1")
    await build_journal(tmp_path)
    clock = ManualClock(kst(6, 9))
    notifier = PhotoNotifier()
    jobs, store = await open_jobs(tmp_path, clock, notifier, report_chart_timeout_s=1.0)
    try:
        result = await jobs.daily()
        assert (result.sent, result.key) == (True, "2026-01-05")
        assert await store.get_flag(DAILY_FLAG) == "2026-01-05"
    finally:
        await store.close()
    assert notifier.photos == []
    (severity, title, body), = notifier.sent
    assert (severity, title) == ("INFO", "Daily report 2026-01-05 (Asia/Seoul)")
    assert "Win rate: 40.0%" in body and "(no chart: chart not drawn within 1 s: worker" in body
    saved = json.loads((tmp_path / "reports" / "daily-2026-01-05.json").read_text())
    assert saved["chart_error"].startswith("chart not drawn") and saved["png_path"] is None
    assert not (tmp_path / "reports" / "daily-2026-01-05.png").exists()


async def test_a_failed_send_is_retried_later(tmp_path: Path) -> None:
    class Flaky(PhotoNotifier):
        fail = True

        async def send_photo(self, path: Path, caption: str) -> None:
            if self.fail:
                raise ConnectionError("telegram down")
            await super().send_photo(path, caption)

    await build_journal(tmp_path)
    clock = ManualClock(kst(6, 9))
    notifier = Flaky()
    jobs, store = await open_jobs(tmp_path, clock, notifier)
    try:
        failed = await jobs.daily()
        assert not failed.sent and failed.reason.startswith("failed")
        assert await store.get_flag(DAILY_FLAG) is None
        notifier.fail = False
        clock.advance(300)
        assert (await jobs.daily()).sent
    finally:
        await store.close()


async def test_serve_wiring_runs_the_apscheduler_job_and_stops_cleanly(tmp_path: Path) -> None:
    # build_service(fast=True) runs on a ManualClock at 2026-01-01T00:00Z = 09:00 KST.
    settings = Settings(data_dir=tmp_path, sim_fast=True, prometheus_enabled=False)
    service = await build_service(settings, fast=True)
    notifier = PhotoNotifier()
    service.notifier = notifier
    handle = await start_schedules(service, settings)
    try:
        assert handle is not None and handle.metrics is None
        await asyncio.wait_for(handle.catch_up, 10)
        assert len(notifier.photos) == 1  # the 2025-12-31 report, due at 09:00 today
        scheduler = handle.scheduler
        # Reports, and the hourly reconciliation of live venues (runbook 5.2).
        assert {j.id for j in scheduler.get_jobs()} == {DAILY_JOB, WEEKLY_JOB, RECONCILE_JOB}
        ran = asyncio.Event()
        scheduler.add_listener(lambda ev: ran.set() if ev.job_id == DAILY_JOB else None,
                               EVENT_JOB_EXECUTED)
        scheduler.get_job(DAILY_JOB).modify(next_run_time=datetime.now(KST))
        await asyncio.wait_for(ran.wait(), 10)
        assert len(notifier.photos) == 1  # the scheduler's run found it already sent
    finally:
        await handle.stop()
        await service.store.close()
    assert not handle.scheduler.running


def test_build_scheduler_uses_the_zone_and_coalesces(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, report_timezone="Europe/London")

    class Jobs:
        async def daily(self) -> None: ...

        async def weekly(self) -> None: ...

    scheduler = build_scheduler(Jobs(), settings)  # type: ignore[arg-type]
    job = scheduler.get_job(DAILY_JOB)
    assert str(job.trigger.timezone) == "Europe/London" and job.coalesce
    assert job.max_instances == 1


async def test_on_demand_report_for_the_service(tmp_path: Path) -> None:
    from core.monitoring.jobs import on_demand_report

    await build_journal(tmp_path)
    store = await SqliteStore.open(tmp_path / DB_NAME)
    service = Service(store, PhotoNotifier())
    service.settings = settings_for(tmp_path)  # type: ignore[attr-defined]
    service.clock = ManualClock(kst(12, 12))  # type: ignore[attr-defined]
    try:
        built = await on_demand_report(service, "weekly")
        assert built.key == "2026-01-05" and "Weekly PnL: $+2.00" in built.text
        assert built.png_path.read_bytes()[:4] == b"\x89PNG"
        assert await store.get_flag(WEEKLY_FLAG) is None  # the schedule is untouched
    finally:
        await store.close()
