"""Charts (issue #18): what a render costs the service, and what the worker costs.

1. The service: `build_service` as `arbops serve` builds it (then `gc.collect();
   gc.freeze()` as serve does), a journal of 10 days (3 one-hour runs a day, 40
   round trips and 60 KPI snapshots per run). Daily, weekly and run reports in turn:
   RENDERS text-only (`service.report`, which warms the report path itself), then
   twice RENDERS with charts (`service.report_with_chart`, what /report calls); the
   process's RSS after each batch; whether matplotlib, numpy or PIL ever entered the
   process; the wall time of each report with its chart (journal reads + the
   worker's whole life), medians.
2. The worker: the same charts, and a backtest chart over 30 days of 1-minute data
   (43,200 points per series), drawn by `render_charts`, REPEATS times each; the
   worker's own figures (start-up and imports, drawing, peak RSS), medians.
"""
from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil

RENDERS = int(os.environ.get("BENCH_CHART_RENDERS", "20"))
REPEATS = int(os.environ.get("BENCH_CHART_REPEATS", "5"))
KST = ZoneInfo("Asia/Seoul")
DAYS = [date(2025, 12, 22) + timedelta(days=i) for i in range(10)]  # to 12-31 (KST)


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


async def build_journal(store: Any) -> None:
    rng = random.Random(7)
    for day in DAYS:
        for hour in (2, 10, 18):
            start = datetime(day.year, day.month, day.day, hour, tzinfo=KST).timestamp()
            run_id = f"{datetime.fromtimestamp(start, UTC):%Y%m%dT%H%M%SZ}-paper-p3-bench"
            await store.create_run(run_id, "paper", 3, "top50", "sim", start, 500.0)
            cum = fees = 0.0
            for i in range(40):
                closed = start + 60 + i * 85
                pnl = rng.gauss(0.05, 0.6)
                cum += pnl
                fees += 0.12
                await store.upsert_position(f"{run_id}-{i}", run_id, "BTC",
                                            "sell_upbit_buy_binance", 0.0, "closed",
                                            closed - 60, 30.0, 40.0, 32.0, closed_at=closed,
                                            exit_reason="take_profit", pnl_usd=pnl,
                                            fees_usd=0.12)
            for k in range(61):
                kpi = {"schema_version": 1, "final": k == 60,
                       "summary": {"total_pnl_usd": cum * k / 60},
                       "trading": {"fees_usd": fees * k / 60},
                       "guards": {"exchange_errors": k // 20, "rate_limit_hits": 0}}
                await store.save_kpi(run_id, k == 60, start + 60 * k, json.dumps(kpi))
            await store.finish_run(run_id, start + 3600, "completed", "duration_elapsed", 0,
                                   None)


def backtest_data() -> dict[str, Any]:
    rng = random.Random(11)
    t0 = datetime(2025, 6, 1, tzinfo=KST).timestamp()
    n = 30 * 1440
    level, dev = 150.0, 0.0
    premium, baseline, equity, markers = [], [], [], []
    cum, window, pos = 0.0, 360.0, None
    days: dict[str, float] = {}
    mean = level
    for i in range(n):
        ts = t0 + 60 * i
        level += rng.gauss(0, 0.15)
        dev = 0.97 * dev + rng.gauss(0, 4.0)
        p = level + dev
        mean += (p - mean) / window
        premium.append((ts, p))
        baseline.append((ts, mean))
        if pos is None and abs(p - mean) > 14:
            pos = p - mean
            markers.append({"ts": ts, "value": p, "kind": "entry"})
        elif pos is not None and abs(p - mean) < 2:
            pnl = (abs(pos) - abs(p - mean) - 12) * 0.05
            cum += pnl
            d = datetime.fromtimestamp(ts, KST).date().isoformat()
            days[d] = days.get(d, 0.0) + pnl
            markers.append({"ts": ts, "value": p, "kind": "exit"})
            pos = None
        equity.append((ts, cum))
    inventory = [(ts, 30 * math.sin(i / 5000)) for i, (ts, _) in enumerate(equity)]
    return {"title": "Backtest, 30 days of 1-minute data", "subtitle": "benchmark data",
            "timezone": "Asia/Seoul", "equity": equity, "inventory": inventory,
            "total": [(ts, e + v) for (ts, e), (_, v) in zip(equity, inventory, strict=True)],
            "premium": {"label": "BTC premium", "points": premium, "baseline": baseline},
            "markers": markers,
            "days": [{"date": d, "pnl_usd": v, "round_trips": 0, "ran": True}
                     for d, v in sorted(days.items())]}


async def service_part(tmp: Path) -> dict[str, Any]:
    from loguru import logger

    from bot.app import build_service
    from core.config.settings import Settings

    logger.remove()
    settings = Settings(_env_file=None, data_dir=tmp, sim_fast=True,  # type: ignore[call-arg]
                        log_level="WARNING")
    service = await build_service(settings, fast=True)  # ManualClock: 2026-01-01 09:00 KST
    try:
        await build_journal(service.store)
        gc.collect()
        gc.freeze()  # as `arbops serve` does once started
        plan = [("daily", None, None), ("weekly", None, None), ("run", None, "last")]
        rss = {"start": rss_mb()}
        # The report path alone first (journal reads, the thread pool): it costs the
        # process about a megabyte once, charts or not; then the charts are measured.
        for i in range(RENDERS):
            kind, day, run_id = plan[i % len(plan)]
            await service.report(kind, day, run_id=run_id)
        gc.collect()
        rss["text"] = rss_mb()
        walls: dict[str, list[float]] = {k: [] for k, _, _ in plan}
        for rnd in ("charts", "charts2"):
            for i in range(RENDERS):
                kind, day, run_id = plan[i % len(plan)]
                t = time.perf_counter()
                built = await service.report_with_chart(kind, day, run_id=run_id)
                walls[kind].append(time.perf_counter() - t)
                assert built.png is not None, built.chart_error
            gc.collect()
            rss[rnd] = rss_mb()
        loaded = sorted(m for m in ("matplotlib", "numpy", "PIL") if m in sys.modules)
    finally:
        await service.close()
        gc.unfreeze()
    return {"rss": rss, "walls": walls, "loaded": loaded, "db": service.store.path}


def worker_part(db: Path) -> dict[str, dict[str, list[float]]]:
    from core.monitoring.charts.render import ChartJob, render_charts
    from core.monitoring.reports.chart_data import daily_chart, run_chart, weekly_chart
    from core.monitoring.reports.compute import daily_report, weekly_report
    from core.monitoring.reports.run_report import run_report

    now = datetime(2026, 1, 1, 9, tzinfo=KST).timestamp()
    jobs = {
        "daily": ChartJob("timeline", daily_chart(daily_report(db, DAYS[-1], KST, now), now)),
        "weekly": ChartJob("weekly", weekly_chart(weekly_report(db, DAYS[0], KST, now))),
        "run": ChartJob("timeline", run_chart(run_report(db, "last", KST, now), now)),
    }
    bt = backtest_data()
    jobs.update({f"backtest {f}": ChartJob("backtest", bt, f)  # type: ignore[arg-type]
                 for f in ("png", "svg", "html")})
    out: dict[str, dict[str, list[float]]] = {}
    for name, job in jobs.items():
        rows: dict[str, list[float]] = {"wall": [], "import": [], "draw": [], "peak": [],
                                        "size": []}
        for _ in range(REPEATS):
            result = render_charts([job], timeout_s=120)
            rows["wall"].append(result.wall_s)
            rows["import"].append(result.stats["import_s"])
            rows["draw"].append(result.stats["render_s"][0])
            rows["peak"].append(result.stats["peak_rss_mb"])
            rows["size"].append(len(result.images[0]) / 1024)
        out[name] = rows
    return out


def main() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        svc = asyncio.run(service_part(Path(tmp)))
        workers = worker_part(Path(svc["db"]))
    med = statistics.median
    rss = svc["rss"]
    print(f"Charts: the service process, RSS MB ({RENDERS} text-only reports, then "
          f"{RENDERS} reports with charts, then {RENDERS} more)")
    print("| start | after the text reports | after 20 charts | after 20 more "
          "| charts' growth | matplotlib/numpy/PIL loaded |")
    print("|---|---|---|---|---|---|")
    print(f"| {rss['start']:.1f} | {rss['text']:.1f} | {rss['charts']:.1f} "
          f"| {rss['charts2']:.1f} | {rss['charts2'] - rss['text']:+.1f} "
          f"| {', '.join(svc['loaded']) or 'none'} |")
    print()
    print("| report | renders | wall median s (journal + worker) |")
    print("|---|---|---|")
    for kind, walls in svc["walls"].items():
        print(f"| {kind} | {len(walls)} | {med(walls):.2f} |")
    print()
    print(f"The worker ({REPEATS} renders each, medians)")
    print("| chart | wall s | start-up + imports s | drawing s | worker peak RSS MB "
          "| output KiB |")
    print("|---|---|---|---|---|---|")
    for name, rows in workers.items():
        print(f"| {name} | {med(rows['wall']):.2f} | {med(rows['import']):.2f} "
              f"| {med(rows['draw']):.2f} | {med(rows['peak']):.0f} | {med(rows['size']):,.0f} |")


if __name__ == "__main__":
    main()
