"""APScheduler wiring for `arbops serve` (docs/architecture.md, "Flows").

An AsyncIOScheduler on the service's event loop runs the report jobs of
core/monitoring/jobs.py: the daily report at `report_time` (default 09:00) in
`report_timezone` (default Asia/Seoul), the weekly one on Mondays at the same
time. The jobs decide what is due from the injected clock and a flag in the
journal, so a late or repeated trigger never sends a report twice.
"""
from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from core.monitoring.jobs import (
    DEFAULT_GRACE_S,
    DEFAULT_REPORT_TIME,
    ReportJobs,
    parse_hhmm,
    scheduled_reconcile,
)

DAILY_JOB = "daily_report"
WEEKLY_JOB = "weekly_report"
RECONCILE_JOB = "reconcile"


def report_triggers(settings: Any) -> dict[str, CronTrigger]:
    tz = ZoneInfo(settings.report_timezone)
    hour, minute = parse_hhmm(str(getattr(settings, "report_time", DEFAULT_REPORT_TIME)))
    return {
        DAILY_JOB: CronTrigger(hour=hour, minute=minute, timezone=tz),
        WEEKLY_JOB: CronTrigger(day_of_week="mon", hour=hour, minute=minute, timezone=tz),
    }


def build_scheduler(jobs: ReportJobs, settings: Any) -> AsyncIOScheduler:
    """Not started: the caller starts it on the running loop (`scheduler.start()`)."""
    grace = int(getattr(settings, "report_grace_s", DEFAULT_GRACE_S))
    scheduler = AsyncIOScheduler(timezone=ZoneInfo(settings.report_timezone))
    triggers = report_triggers(settings)
    for job_id, func in ((DAILY_JOB, jobs.daily), (WEEKLY_JOB, jobs.weekly)):
        scheduler.add_job(func, triggers[job_id], id=job_id, name=job_id, coalesce=True,
                          max_instances=1, misfire_grace_time=max(grace, 1),
                          replace_existing=True)
    interval = float(getattr(settings, "reconcile_interval_s", 0) or 0)
    service = getattr(jobs, "service", None)
    if interval > 0 and service is not None:
        scheduler.add_job(scheduled_reconcile, IntervalTrigger(seconds=interval),
                          args=[service], id=RECONCILE_JOB, name=RECONCILE_JOB,
                          coalesce=True, max_instances=1, replace_existing=True)
    return scheduler
