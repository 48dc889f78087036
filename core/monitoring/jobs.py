"""Scheduled jobs: the daily and weekly reports, with the missed-run rule (R-O4).

Anomaly pushes are the watchdog's (core/safety/watchdog.py); this module only sends
reports. Every job asks the injected clock for "now", so tests move a
ManualClock instead of waiting.

Which report a job sends: the most recent scheduled instant S <= now (the
report time, default 09:00 in the report zone; for the weekly one, Monday at
that time) names the period - the day before S, or the week (Monday..Sunday)
before S. It is sent when
- it has not been sent yet: the period's key is kept in the `flags` table
  (`report_daily_last` = the day, `report_weekly_last` = the week's Monday),
  written only after a successful send, checked under a lock; and
- now - S is within the grace period (`report_grace_s`): a service that was
  down at 09:00 sends the missed report once at start-up; one that comes back
  too late skips it (the next one is sent on time; `arbops report` works any
  time).
So a report is never sent twice, across restarts too, because the flag lives
in the same database as the journal.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from core.clock import Clock
from core.domain.journal_kinds import Severity
from core.files import write_private_text
from core.redaction import redact_data

DAILY_FLAG = "report_daily_last"
WEEKLY_FLAG = "report_weekly_last"
DEFAULT_REPORT_TIME = "09:00"
DEFAULT_GRACE_S = 6 * 3600.0
EARLY_TOLERANCE_S = 1.0  # a timer that wakes a hair early still sends the due report


def parse_hhmm(value: str) -> tuple[int, int]:
    hh, _, mm = value.partition(":")
    h, m = int(hh), int(mm or 0)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"bad report time {value!r} (HH:MM)")
    return h, m


def last_slot(now: float, tz: ZoneInfo, hhmm: tuple[int, int], weekly: bool) -> datetime:
    """The most recent scheduled instant <= now (Mondays only when weekly)."""
    local = datetime.fromtimestamp(now, tz)
    slot = datetime.combine(local.date(), time(*hhmm), tz)
    if weekly:
        slot -= timedelta(days=local.weekday())
        if slot.timestamp() > now:
            slot -= timedelta(days=7)
    elif slot.timestamp() > now:
        slot -= timedelta(days=1)
    # Re-anchor the wall time after date arithmetic (DST zones): combine again.
    return datetime.combine(slot.date(), time(*hhmm), tz)


def period_for(slot: datetime, weekly: bool) -> date:
    """The period a slot reports: the previous day, or the previous week's Monday."""
    return slot.date() - timedelta(days=7 if weekly else 1)


@dataclass(slots=True)
class JobResult:
    kind: str
    key: str | None
    sent: bool
    reason: str


class ReportJobs:
    def __init__(self, service: Any, settings: Any, clock: Clock, *,
                 out_dir: Path | None = None) -> None:
        self.service = service
        self.clock = clock
        self.tz = ZoneInfo(settings.report_timezone)
        self.hhmm = parse_hhmm(str(getattr(settings, "report_time", DEFAULT_REPORT_TIME)))
        self.grace_s = float(getattr(settings, "report_grace_s", DEFAULT_GRACE_S))
        self.out_dir = out_dir or Path(settings.data_dir) / "reports"
        self.chart_timeout_s = chart_timeout(settings)
        self.db_path = Path(service.store.path)
        self._lock = asyncio.Lock()

    async def daily(self) -> JobResult:
        return await self.run("daily")

    async def weekly(self) -> JobResult:
        return await self.run("weekly")

    async def catch_up(self) -> list[JobResult]:
        """At start-up: send a report missed while the service was down (once)."""
        return [await self.run("daily"), await self.run("weekly")]

    async def run(self, kind: str) -> JobResult:
        weekly = kind == "weekly"
        flag = WEEKLY_FLAG if weekly else DAILY_FLAG
        async with self._lock:
            now = self.clock.time()
            slot = last_slot(now + EARLY_TOLERANCE_S, self.tz, self.hhmm, weekly)
            key = period_for(slot, weekly).isoformat()
            late = now - slot.timestamp()
            if await self.service.store.get_flag(flag) == key:
                return JobResult(kind, key, False, "already sent")
            if late > self.grace_s:
                # A journal that never held a run had no report to miss: no start-up noise.
                said = logger.info if await self.service.store.last_run() else logger.debug
                said("{} report for {} missed by {:.0f} s (grace {:.0f} s): skipped",
                     kind, key, late, self.grace_s)
                return JobResult(kind, key, False, "missed beyond grace")
            try:
                await self._send(kind, date.fromisoformat(key), now)
            except Exception as exc:  # noqa: BLE001 - a report must not take the service down
                logger.exception("{} report for {} failed", kind, key)
                return JobResult(kind, key, False, f"failed: {exc}")
            await self.service.store.set_flag(flag, key, now)
            return JobResult(kind, key, True, "sent")

    async def _send(self, kind: str, day: date, now: float) -> None:
        from core.monitoring.reports import build_report

        run = getattr(self.service, "current", None)
        active = frozenset({run.run_id}) if run is not None else frozenset()
        png = self.out_dir / f"{kind}-{day.isoformat()}.png"
        built = await asyncio.to_thread(build_report, kind, self.db_path, day, self.tz, now,
                                        png_path=png, active_runs=active,
                                        chart_timeout_s=self.chart_timeout_s)
        await asyncio.to_thread(_write_json, png.with_suffix(".json"), built.as_dict())
        await send_report(self.service.notifier, built.text, built.png_path,
                          chart_error=built.chart_error)


def chart_timeout(settings: Any) -> float:
    from core.monitoring.charts.render import DEFAULT_TIMEOUT_S

    return float(getattr(settings, "report_chart_timeout_s", DEFAULT_TIMEOUT_S))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write_private_text(tmp, json.dumps(redact_data(data), indent=2, default=str) + "\n")
    tmp.replace(path)


async def send_report(notifier: Any, text: str, png_path: Path | None, *,
                      chart_error: str | None = None) -> None:
    """The chart as a photo when the notifier can send one, else its path in the text;
    without a chart (it failed or timed out), the text and why."""
    title, _, body = text.partition("\n")
    send_photo = getattr(notifier, "send_photo", None)
    if png_path is not None and callable(send_photo):
        await send_photo(png_path, text)
        return
    if png_path is not None:
        body = f"{body}\nChart: {png_path}"
    elif chart_error is not None:
        body = f"{body}\n(no chart: {chart_error})"
    await notifier.notify(Severity.INFO, title, body)


async def on_demand_report(service: Any, kind: str, day: str | None = None, *,
                           png: bool = True, chart: bool = False,
                           run_id: str | None = None) -> Any:
    """`/report` and `OperatorService.report`: build a report now (off the loop).

    Returns core.monitoring.reports.BuiltReport (text, the report, the chart path). `png`
    writes the chart under data_dir/reports; `chart` draws it in memory only
    (`built.png`, None when it could not be drawn: `built.chart_error` says why and the
    text stands on its own). The chart is drawn by a worker process, waited for in a
    thread, so the engine's loop keeps running. Nothing is sent and no flag is
    touched: on-demand reports never affect the schedule. A run report (`kind` run)
    names its run by `run_id` (`last`: the newest).
    """
    from core.monitoring.reports import KINDS, build_report, resolve_date
    from core.monitoring.reports.run_report import check_run_id

    if kind not in KINDS:
        raise ValueError(f"kind is one of {', '.join(KINDS)}")
    tz = ZoneInfo(service.settings.report_timezone)
    now = service.clock.time()
    if kind == "run":
        when, name = None, check_run_id(run_id or "")
    else:
        when = resolve_date(day, kind, now, tz)
        name = when.isoformat()
    run = getattr(service, "current", None)
    active = frozenset({run.run_id}) if run is not None else frozenset()
    out = Path(service.settings.data_dir) / "reports" / f"{kind}-{name}-ondemand.png"
    return await asyncio.to_thread(
        build_report, kind, Path(service.store.path), when, tz, now,
        png_path=out if png else None, chart=chart, run_id=run_id, active_runs=active,
        chart_timeout_s=chart_timeout(service.settings))


async def scheduled_reconcile(service: Any) -> dict[str, Any] | None:
    """Reconcile live venues between runs (runbook §5.2, on a schedule): a drift is
    an ALERT. Skipped while a run is active (it reconciles at its end) and when no
    venue keys are configured (paper venues end with their run)."""
    if service.current is not None or not service.venue_keys_configured():
        return None
    try:
        result: dict[str, Any] = await service.reconcile()
    except Exception as exc:  # noqa: BLE001 - a scheduled check reports, never raises
        await service.notifier.notify(Severity.ALERT, "reconciliation", f"could not reconcile: {exc}")
        return None
    if not result.get("ok"):
        await service.notifier.notify(Severity.ALERT, "reconciliation",
                                      "; ".join(result.get("problems") or ["drift"]))
    return result
