"""Starts monitoring inside an engine process: the Prometheus endpoint and the
scheduled report jobs (R-O1, R-O4).

- `/metrics` is served by an aiohttp app on the service's own event loop, so a
  scrape reads the engine on the thread that mutates it (no locks, no torn
  reads). A stuck loop therefore also stops the scrapes: Prometheus sees the
  target down (`up == 0`), which the alert rules report.
- A small task folds the engine's figures into the metrics every 0.5 s, so a
  run that ends between two scrapes still counts.
- Reports: APScheduler (bot/scheduler.py) plus a one-shot start-up catch-up for
  a report missed while the service was down (core/monitoring/jobs.py).
Each part fails on its own: a busy port is logged and the rest starts.
"""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from loguru import logger

from core.config.settings import Settings
from core.http_listener import listen

if TYPE_CHECKING:
    from core.service import OperatorService


UPDATE_INTERVAL_S = 0.5


@dataclass
class MetricsServer:
    metrics: Any
    runner: web.AppRunner
    port: int
    _updater: asyncio.Task[None] | None = None
    _observers: list[Any] | None = None
    health_owner: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def stop(self) -> None:
        self.health_owner.pop("metrics", None)
        if self._observers is not None and self.metrics.update in self._observers:
            self._observers.remove(self.metrics.update)
        if self._updater is not None:
            self._updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._updater
        await self.runner.cleanup()


async def start_metrics_server(service: OperatorService, host: str, port: int) -> MetricsServer:
    """Serve `/metrics` for the service; port 0 picks a free port (tests)."""
    from prometheus_client import CONTENT_TYPE_LATEST

    from core.monitoring.metrics import ArbMetrics

    metrics = ArbMetrics(service)

    async def handle_metrics(_request: web.Request) -> web.Response:
        body = metrics.generate()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def handle_root(_request: web.Request) -> web.Response:
        return web.Response(text="arbops metrics: /metrics\n")

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/", handle_root)
    runner, bound = await listen(app, host, port, handle_signals=False)

    async def keep_updated() -> None:
        while True:
            await asyncio.sleep(UPDATE_INTERVAL_S)
            try:
                metrics.update()
            except Exception:  # noqa: BLE001 - metrics must never hurt the engine
                logger.exception("metrics update failed")

    srv = MetricsServer(metrics, runner, bound)
    # A run shorter than the update period must still count: the service calls its
    # run observers while the finished run is still current (when it has them).
    observers = getattr(service, "run_observers", None)
    if isinstance(observers, list):
        observers.append(metrics.update)
        srv._observers = observers
    srv._updater = asyncio.create_task(keep_updated(), name="metrics-updater")
    health = getattr(service, "surface_health", None)
    if isinstance(health, dict):
        srv.health_owner = health
        health["metrics"] = lambda: {"state": "serving", "url": f"http://{host}:{bound}/metrics"}
    logger.info("Prometheus metrics on http://{}:{}/metrics", host, bound)
    return srv


@dataclass
class MonitoringHandle:
    metrics: MetricsServer | None = None
    scheduler: Any = None
    jobs: Any = None
    catch_up: asyncio.Task[Any] | None = None
    problems: list[str] = field(default_factory=list)

    async def stop(self) -> None:
        if self.catch_up is not None and not self.catch_up.done():
            self.catch_up.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.catch_up
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.metrics is not None:
            await self.metrics.stop()


async def start_metrics(service: OperatorService, settings: Settings) -> MonitoringHandle | None:
    """The endpoint alone (for `arbops run`), when PROMETHEUS_ENABLED=true."""
    handle = MonitoringHandle()
    await _start_endpoint(handle, service, settings)
    return handle if handle.metrics is not None else None


async def _start_endpoint(handle: MonitoringHandle, service: OperatorService,
                          settings: Settings) -> None:
    if not settings.prometheus_enabled:
        return
    host = str(getattr(settings, "prometheus_host", "127.0.0.1"))
    try:
        handle.metrics = await start_metrics_server(service, host, settings.prometheus_port)
    except OSError as exc:
        msg = f"metrics endpoint not started on {host}:{settings.prometheus_port}: {exc}"
        handle.problems.append(msg)
        logger.error(msg)


async def start_schedules(service: OperatorService, settings: Settings) -> MonitoringHandle | None:
    """The scheduled reports and reconciliation of `arbops serve` (R-O4); None when off."""
    if not getattr(settings, "reports_enabled", True):
        return None
    from bot.scheduler import build_scheduler
    from core.monitoring.jobs import ReportJobs

    handle = MonitoringHandle()
    jobs = ReportJobs(service, settings, service.clock)
    scheduler = build_scheduler(jobs, settings)
    scheduler.start()
    handle.jobs, handle.scheduler = jobs, scheduler
    handle.catch_up = asyncio.create_task(jobs.catch_up(), name="report-catch-up")
    return handle
