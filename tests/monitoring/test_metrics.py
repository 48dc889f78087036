"""R-O1: the Prometheus endpoint, scraped over HTTP from a real service running a
fast paper phase; values are the engine's (the KPI JSON's) and counters stay
monotonic across runs; `promtool check metrics` flags only the documented names.
"""
from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app import build_service
from bot.monitoring_app import start_metrics, start_metrics_server
from core.commands import RunArgs
from core.config.settings import Settings
from core.monitoring.metrics import METRICS, RUNBOOK_NAME_EXCEPTIONS

RUNBOOK_TEN = {
    "arbitrage_loop_latency_ms": "histogram",
    "arbitrage_round_trips_total": "counter",
    "arbitrage_pnl_usd_total": "gauge",
    "arbitrage_win_rate": "gauge",
    "arbitrage_cpu_percent": "gauge",
    "arbitrage_memory_mb": "gauge",
    "arbitrage_exchange_errors_total": "counter",
    "arbitrage_rate_limit_wait_seconds": "gauge",
    "arbitrage_open_positions": "gauge",
    "arbitrage_failed_fills_total": "counter",
}


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run scripts/test-services.sh (apt-get install prometheus)"
    return path


class Scrape:
    """One parsed scrape: {sample name: {labels tuple: value}} and family types."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for fam in text_string_to_metric_families(text):
            self.types[fam.name] = fam.type
            for s in fam.samples:
                self.samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value

    def v(self, name: str, **labels: str) -> float:
        return self.samples[name][tuple(sorted(labels.items()))]

    def family_type(self, runbook_name: str) -> str:
        # The parser names counter families without `_total`.
        return self.types.get(runbook_name) or self.types[runbook_name.removesuffix("_total")]


async def scrape(http: aiohttp.ClientSession, url: str) -> Scrape:
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return Scrape(await resp.text())


def run_args(seed: int, seconds: float = 60.0) -> RunArgs:
    return RunArgs(phase=1, duration_seconds=seconds, seed=seed, universe="top10")


async def test_scrape_names_types_and_values_follow_the_engine(tmp_path: Path) -> None:
    service = await build_service(Settings(data_dir=tmp_path, sim_fast=True), fast=True)
    srv = await start_metrics_server(service, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            idle = await scrape(http, srv.url)
            for name, kind in RUNBOOK_TEN.items():
                assert idle.family_type(name) == kind, name
            assert idle.v("arbitrage_run_active") == 0
            assert idle.v("arbitrage_loop_latency_ms_count") == 0
            assert "process_start_time_seconds" in idle.samples  # ProcessCollector

            # Scrape over HTTP while the phase runs on the same loop.
            task = asyncio.create_task(service.run_phase(service.plan_run(run_args(seed=3))))
            during: list[Scrape] = []
            while not task.done():
                during.append(await scrape(http, srv.url))
            first = await task
            after1 = await scrape(http, srv.url)

            running = [s for s in during if s.v("arbitrage_run_active") == 1]
            assert running, "no scrape saw the run"
            assert any(("mode", "paper") in k and ("phase", "1") in k
                       for s in running for k in s.samples.get("arbitrage_run_info", {}))
            assert any("arbitrage_seconds_since_entry" in s.samples for s in running)
            ticks = [s.v("arbitrage_loop_latency_ms_count") for s in during]
            assert ticks == sorted(ticks) and ticks[-1] > ticks[0]  # moves, never back

            kpi = first.kpi
            summary = kpi["summary"]
            assert summary["round_trips_completed"] > 0
            assert after1.v("arbitrage_round_trips_total") == summary["round_trips_completed"]
            assert after1.v("arbitrage_failed_fills_total") == summary["failed_fills_count"]
            assert after1.v("arbitrage_entries_total") == kpi["trading"]["entries"]
            assert after1.v("arbitrage_pnl_usd_total") == pytest.approx(
                summary["strategy_pnl_usd"], abs=1e-6)
            assert after1.v("arbitrage_win_rate") == pytest.approx(summary["win_rate"], abs=1e-6)
            count = after1.v("arbitrage_loop_latency_ms_count")
            assert count == kpi["trading"]["ticks"]  # every tick observed exactly once
            assert after1.v("arbitrage_loop_latency_ms_sum") / count == pytest.approx(
                kpi["performance"]["loop_latency_ms"]["avg"], abs=1e-3)
            assert after1.v("arbitrage_loop_latency_ms_bucket", le="+Inf") == count
            assert after1.v("arbitrage_exchange_errors_total", exchange="all") == 0
            assert after1.v("arbitrage_rate_limit_wait_seconds", exchange="all") == 0
            assert after1.v("arbitrage_open_positions") == 0
            assert after1.v("arbitrage_trading_state") == 0
            assert after1.v("arbitrage_armed") == 0
            assert after1.v("arbitrage_run_active") == 0
            rss = psutil.Process().memory_info().rss / 2**20
            assert after1.v("arbitrage_memory_mb") == pytest.approx(rss, rel=0.2)

            # A second run: counters continue from the first (per-run offsets). It lasts
            # less than one updater period in fast mode, so the run observer the
            # service calls at the end of each run is stood in for by on_progress.
            second = await service.run_phase(service.plan_run(run_args(seed=5, seconds=30)),
                                             lambda _run: srv.metrics.update())
            after2 = await scrape(http, srv.url)
            s2 = second.kpi["summary"]
            assert after2.v("arbitrage_round_trips_total") == (
                summary["round_trips_completed"] + s2["round_trips_completed"])
            assert after2.v("arbitrage_failed_fills_total") == (
                summary["failed_fills_count"] + s2["failed_fills_count"])
            assert after2.v("arbitrage_loop_latency_ms_count") == (
                kpi["trading"]["ticks"] + second.kpi["trading"]["ticks"])
            assert after2.v("arbitrage_pnl_usd_total") == pytest.approx(
                summary["strategy_pnl_usd"] + s2["strategy_pnl_usd"], abs=1e-5)
            assert after2.v("arbitrage_win_rate") == pytest.approx(s2["win_rate"], abs=1e-6)

            # HALTED shows as 2.
            await service.kill("test", "pytest")
            halted = await scrape(http, srv.url)
            assert halted.v("arbitrage_trading_state") == 2

        # promtool: only the runbook names that break conventions are flagged.
        proc = await asyncio.to_thread(
            subprocess.run, [promtool(), "check", "metrics"], input=after2.text,
            capture_output=True, text=True, timeout=30, check=False)
        complaints = {line.split(" ", 1)[0] for line in
                      (proc.stdout + proc.stderr).splitlines() if line.strip()}
        assert complaints == set(RUNBOOK_NAME_EXCEPTIONS), proc.stdout + proc.stderr
    finally:
        await srv.stop()
        await service.store.close()


async def test_every_declared_metric_is_exported_while_running(tmp_path: Path) -> None:
    service = await build_service(Settings(data_dir=tmp_path, sim_fast=True), fast=True)
    srv = await start_metrics_server(service, "127.0.0.1", 0)
    seen: set[str] = set()

    def on_progress(_run: Any) -> None:
        text = srv.metrics.generate().decode()
        seen.update(f.name for f in text_string_to_metric_families(text))

    try:
        await service.run_phase(service.plan_run(run_args(seed=3, seconds=5)), on_progress)
    finally:
        await srv.stop()
        await service.store.close()
    declared = {n.removesuffix("_total") if METRICS[n][0] == "counter" else n for n in METRICS}
    assert declared <= seen


async def test_endpoint_is_off_unless_enabled_and_a_busy_port_is_not_fatal(
        tmp_path: Path) -> None:
    service = await build_service(Settings(data_dir=tmp_path, sim_fast=True), fast=True)
    try:
        off = Settings(data_dir=tmp_path, prometheus_enabled=False)
        assert await start_metrics(service, off) is None
        first = await start_metrics_server(service, "127.0.0.1", 0)
        try:
            busy = Settings(data_dir=tmp_path, prometheus_enabled=True,
                            prometheus_port=first.port)
            assert await start_metrics(service, busy) is None  # logged, not raised
        finally:
            await first.stop()
        # Stopped cleanly: the port is free again and can be bound.
        again = await start_metrics_server(service, "127.0.0.1", first.port)
        await again.stop()
    finally:
        await service.store.close()
