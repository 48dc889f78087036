"""`make bench`: engine tick cost by universe size, with medians over repeats.

A tick is the engine's in-process work (decision + paper execution, journal
writes included) with no sleeping: the sim is stepped on a manual clock. The
market step (book generation) is timed separately because it runs in its own
task in production. Results are printed as a markdown table for
docs/performance.md.
"""
from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import psutil

from bot.app import build_service
from core.commands import RunArgs
from core.config.settings import Settings

TICKS = int(os.environ.get("BENCH_TICKS", "3000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
UNIVERSES = ("top10", "top50", "top200")


async def one_run(universe: str, seed: int, where: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(dir=where) as tmp:
        settings = Settings(data_dir=Path(tmp), sim_fast=True, sim_seed=seed,
                            log_level="WARNING")
        service = await build_service(settings, fast=True)
        steps: list[float] = []
        try:
            spec = service.plan_run(RunArgs(phase=1, universe=universe,
                                            duration_seconds=TICKS * settings.tick_interval_ms / 1000))
            rss0 = psutil.Process().memory_info().rss / 2**20
            market_ref: dict[str, object] = {}

            def progress(run: object) -> None:
                market_ref.setdefault("m", run.market)  # type: ignore[attr-defined]

            outcome = await service.run_phase(spec, progress)
            rss1 = psutil.Process().memory_info().rss / 2**20
            market = market_ref["m"]
            for _ in range(300):
                t = time.perf_counter()
                market.step()  # type: ignore[attr-defined]
                steps.append((time.perf_counter() - t) * 1000)
        finally:
            await service.store.close()
    lat = outcome.kpi["performance"]["loop_latency_ms"]
    return {"p50": lat["p50"], "p99": lat["p99"], "avg": lat["avg"], "rss0": rss0, "rss1": rss1,
            "step": statistics.median(steps), "rt": outcome.kpi["summary"]["round_trips_completed"]}


async def main() -> None:
    from loguru import logger

    logger.remove()
    # The journal on disk (fsync'd commits, as in production) and on tmpfs (the
    # same work without the disk's fsync): the difference is the durable journal.
    places = [("disk", "/tmp")] + ([("tmpfs", "/dev/shm")] if os.path.isdir("/dev/shm") else [])
    print(f"engine tick, {TICKS} ticks x {REPEATS} seeds, medians; {os.cpu_count()} cores")
    print("| journal | universe | tick p50 ms | tick p99 ms | tick avg ms | avg vs top10 "
          "| market step ms | RSS before MB | RSS after MB | round trips |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, where in places:
        rows = []
        for universe in UNIVERSES:
            runs = [await one_run(universe, seed, where) for seed in range(1, REPEATS + 1)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            rows.append((universe, med))
        base = rows[0][1]["avg"]
        for universe, m in rows:
            print(f"| {label} | {universe} | {m['p50']:.3f} | {m['p99']:.3f} | {m['avg']:.3f} | "
                  f"{m['avg'] / base:.2f}x | {m['step']:.3f} | {m['rss0']:.1f} | "
                  f"{m['rss1']:.1f} | {m['rt']:.0f} |")


if __name__ == "__main__":
    asyncio.run(main())
