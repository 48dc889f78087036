"""A live phase against the emulator with top50, websocket books side by side
with REST polling (issue #15 part B).

Each run is a real live phase 1 (ARM, preflight, ladder, the ccxt adapters, the
journal) against the local emulator serving 50 pairs per venue, once with
market data from the streams and once from REST polling, in the same process
one after the other. Reported per path, medians over the runs:
- loop latency p50 / p99 (the engine's tick, from the KPI);
- book event at the venue -> both legs handed to the venues, p50 / p99 (the
  venue's event time of the newest book an entry priced on, to the send);
- market-data requests per minute at the venue (the emulator's request log:
  Binance depth weight, Upbit orderbook requests) against the published limits;
- 429 / 418 answers; order-status reads happen off the tick in both paths.
BENCH_STREAMS_SECONDS (default 300) sets each phase's length, BENCH_STREAMS_RUNS
(default 1) the number of runs per path.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.app import build_service
from bot.drill.emulator import start_emulator
from core.commands import RunArgs
from core.safety.redis_state import FileEngineLock
from core.settings import Settings

SECONDS = float(os.environ.get("BENCH_STREAMS_SECONDS", "300"))
RUNS = int(os.environ.get("BENCH_STREAMS_RUNS", "1"))
CAP = 20.0
DEPTH_WEIGHT = 5  # Binance GET /api/v3/depth, limit 1..100


async def live_phase(streams: bool, seconds: float) -> dict[str, Any]:
    emu = await start_emulator(top_n=50, jump_rate_per_min=12.0)
    emu.core.requests = collections.deque()  # keep every request of the run
    try:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            cfg: dict[str, Any] = {
                "data_dir": Path(tmp), "arbitrage_env": "live",
                "upbit_api_base": emu.url, "binance_api_base": emu.url,
                "upbit_access_key": emu.keys["upbit"][0],
                "upbit_secret_key": emu.keys["upbit"][1],
                "binance_api_key": emu.keys["binance"][0],
                "binance_api_secret": emu.keys["binance"][1],
                "upbit_withdrawals_disabled_attested": True, "real_poll_interval_s": 0.2,
                "market_data_streams": streams,
                "live_arm_ack": "I_UNDERSTAND_LIVE_RISK", "live_arm_at": str(int(time.time())),
                "live_max_notional_usd": str(CAP), "guard_memory_anomaly_mb": 4000.0,
                "guard_memory_kill_mb": 4000.0, "guard_rss_growth_mb": 4000.0,
                "telegram_bot_token": "424242:AAdrillTokenNotRealOnlyForTheEmulator0",
                "telegram_chat_id": 1, "telegram_api_base": emu.url}
            settings = Settings(_env_file=None, **cfg)
            service = await build_service(settings)
            service.safety.lock = FileEngineLock(data_dir=Path(tmp))
            try:
                report = await service.preflight(dry_run=False)
                assert report["summary"]["ready_for_live"], report["blocking"]
                await service.ladder_override(1, "bench", "benchmark")
                spec = service.plan_run(RunArgs(phase=1, mode="live", data_source="real",
                                                universe="top50", duration_seconds=seconds,
                                                max_notional_usd=CAP))
                t0_ms = time.time() * 1000
                outcome = await service.run_phase(spec)
                t1_ms = time.time() * 1000
            finally:
                await service.safety.close()
                await service.store.close()
    finally:
        await emu.stop()
    kpi = outcome.kpi
    perf = kpi["performance"]
    reqs = [r for r in emu.core.requests if t0_ms <= r["ts_ms"] <= t1_ms]
    minutes = (t1_ms - t0_ms) / 60_000
    depth = sum(1 for r in reqs if r["venue"] == "binance" and r["path"] == "/api/v3/depth")
    books = sum(1 for r in reqs if r["venue"] == "upbit" and r["path"] == "/v1/orderbook")
    return {
        "path": "streams" if streams else "rest",
        "seconds": round((t1_ms - t0_ms) / 1000, 1),
        "ticks": kpi["trading"]["ticks"], "entries": kpi["trading"]["entries"],
        "loop_p50_ms": perf["loop_latency_ms"]["p50"],
        "loop_p99_ms": perf["loop_latency_ms"]["p99"],
        "loop_max_ms": perf["loop_latency_ms"]["max"],
        "book_to_sent_p50_ms": perf["book_to_legs_sent_ms"]["p50"],
        "book_to_sent_p99_ms": perf["book_to_legs_sent_ms"]["p99"],
        "binance_md_weight_per_min": round(depth * DEPTH_WEIGHT / minutes, 1),
        "upbit_md_requests_per_min": round(books / minutes, 1),
        "http_429": sum(1 for r in reqs if r["status"] == 429),
        "http_418": sum(1 for r in reqs if r["status"] == 418),
        "stale_book_refusals": _refusals(kpi, "stale_book"),
        "streams": (kpi.get("market_data") or {}).get("streams"),
        "reconciled": kpi["reconciliation"]["ok"],
    }


def _refusals(kpi: dict[str, Any], check: str) -> int:
    refusals = (kpi.get("guards") or {}).get("gateway_refusals") or {}
    return int(refusals.get(check, 0)) if isinstance(refusals, dict) else 0


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


async def main() -> None:
    runs: dict[str, list[dict[str, Any]]] = {"streams": [], "rest": []}
    for _ in range(RUNS):
        for streams in (True, False):
            r = await live_phase(streams, SECONDS)
            runs[r["path"]].append(r)
    print(f"live phase 1, top50, against the emulator: {SECONDS:.0f} s per phase, "
          f"{RUNS} run(s) per path, medians")
    print("| market data | loop p50 / p99 / max ms | book event -> legs sent p50 / p99 ms | "
          "entries | Binance depth weight/min (limit 6,000) | Upbit orderbook req/min "
          "(limit 600) | 429 / 418 | stale-book refusals |")
    print("|---|---|---|---|---|---|---|---|")
    for path, label in (("streams", "websocket streams"), ("rest", "REST polling")):
        rs = runs[path]
        print(f"| {label} | {_median(rs, 'loop_p50_ms'):.2f} / {_median(rs, 'loop_p99_ms'):.2f}"
              f" / {_median(rs, 'loop_max_ms'):.1f} | {_median(rs, 'book_to_sent_p50_ms'):.1f}"
              f" / {_median(rs, 'book_to_sent_p99_ms'):.1f} | {_median(rs, 'entries'):.0f} | "
              f"{_median(rs, 'binance_md_weight_per_min'):.0f} | "
              f"{_median(rs, 'upbit_md_requests_per_min'):.0f} | "
              f"{_median(rs, 'http_429'):.0f} / {_median(rs, 'http_418'):.0f} | "
              f"{_median(rs, 'stale_book_refusals'):.0f} |")
    print(json.dumps(runs))


if __name__ == "__main__":
    asyncio.run(main())
