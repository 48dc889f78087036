"""Venue benchmarks against the local emulator (issue #4):
- order round trip through ccxt: gateway checks -> intent committed -> create_order
  ack, p50/p99 over many orders, per venue;
- kill to flat with 50 ms injected venue latency on every request.
ccxt's own throttle is off here so the figures are the protocol path; in
production it adds its spacing (Upbit 50 ms) on top.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.app import real_venues
from bot.drill.emulator import start_emulator
from core.clock import SystemClock
from core.domain.models import Side, Venue, pair_symbols
from core.journal.sqlite_store import SqliteStore
from core.monitoring.perf import percentile
from core.settings import Settings
from core.trading.gateway import Gateway, OrderIntent, Purpose
from core.trading.phase_run import PhaseRun, RunSpec
from core.trading.state import TradingStateBox
from core.venues.ccxt_market_data import CcxtMarketData

ORDERS = 60


def settings_for(url: str, keys: dict[str, tuple[str, str]], data_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, upbit_api_base=url,  # type: ignore[call-arg]
                    binance_api_base=url, upbit_access_key=keys["upbit"][0],
                    upbit_secret_key=keys["upbit"][1], binance_api_key=keys["binance"][0],
                    binance_api_secret=keys["binance"][1], real_poll_interval_s=0.2,
                    guard_memory_anomaly_mb=4000.0)


async def order_round_trip() -> dict[str, dict[str, float]]:
    emu = await start_emulator(top_n=10)
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        settings = settings_for(emu.url, emu.keys, Path(tmp))
        store = await SqliteStore.open(Path(tmp) / "arbops.sqlite3")
        venues = real_venues(settings)
        for ex in venues.values():
            ex.ccxt.enableRateLimit = False
        clock = SystemClock()
        try:
            market = CcxtMarketData(venues, clock)
            await market.prepare(candidates=10)
            base = market.symbol_stats()[0].base
            market.subscribe([base])
            gw = Gateway(venues, store, TradingStateBox(), clock, run_id="bench",
                         max_order_usd=100, max_exposure_usd=1e9, collar_bps=2000,
                         stale_book_ms=60_000, max_orders_per_second=1e9)
            for venue in (Venue.UPBIT, Venue.BINANCE):
                samples = []
                for _ in range(ORDERS):
                    snap = await market.poll()
                    assert snap is not None
                    book = (snap.upbit if venue is Venue.UPBIT else snap.binance)[base]
                    price = book.best_bid * 0.99  # resting: balances are not drained
                    to_usd = 1 / snap.fx.mid if venue is Venue.UPBIT else 1.0
                    qty = 30.0 / (price * to_usd)
                    intent = OrderIntent(venue, pair_symbols(base)[venue], base, Side.BUY, qty,
                                         price, Purpose.EXIT, "bench", qty * price * to_usd)
                    t0 = time.perf_counter()
                    prepared = await gw.prepare(intent, snap, 0.0)
                    await gw.journal([prepared])
                    await gw.send(prepared)
                    samples.append((time.perf_counter() - t0) * 1000)
                await venues[venue].cancel_all_orders()
                s = sorted(samples)
                out[str(venue)] = {"p50": statistics.median(s), "p99": percentile(s, 0.99)}
        finally:
            for ex in venues.values():
                await ex.close()
            await store.close()
            await emu.stop()
    return out


async def kill_to_flat(latency_s: float) -> dict[str, float]:
    emu = await start_emulator(top_n=10, jump_rate_per_min=12.0)
    try:
        emu.add_fault(venue="both", kind="latency", seconds=latency_s, count=None)
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            settings = settings_for(emu.url, emu.keys, Path(tmp))
            store = await SqliteStore.open(Path(tmp) / "arbops.sqlite3")
            venues = real_venues(settings)
            for ex in venues.values():
                ex.ccxt.enableRateLimit = False
            clock = SystemClock()
            market = CcxtMarketData(venues, clock, 0.2)
            spec = RunSpec(mode="live", phase=1, top_n=10, duration_s=120, notional_usd=50,
                           data_source="real", kpi_path=Path(tmp) / "kpi.json")
            marks: dict[str, float] = {}

            def progress(run: Any) -> None:
                e = run.engine
                if "t" not in marks and e is not None and any(
                        p["state"] == "open" for p in e.open_positions()):
                    marks["t"] = time.perf_counter()
                    run.kill("benchmark")

            run = PhaseRun(spec, settings, store, TradingStateBox(), clock, market, venues,
                           progress)
            try:
                outcome = await asyncio.wait_for(run.execute(), 180)
            finally:
                for ex in venues.values():
                    await ex.close()
                await store.close()
        steps = {s["step"]: s["t"] for s in outcome.kpi["kill"]["steps"]}
        return {"cancels_ms": (steps["cancel_all"] - marks["t"]) * 1000,
                "flat_ms": (steps["verify_flat"] - marks["t"]) * 1000}
    finally:
        await emu.stop()


async def main() -> None:
    from loguru import logger

    logger.remove()
    rt = await order_round_trip()
    print(f"order round trip through ccxt to the emulator ({ORDERS} orders per venue)")
    print("| venue | p50 ms | p99 ms |")
    print("|---|---|---|")
    for venue, v in rt.items():
        print(f"| {venue} | {v['p50']:.2f} | {v['p99']:.2f} |")
    kills = [await kill_to_flat(0.05) for _ in range(3)]
    print("kill to flat with 50 ms venue latency (3 runs, medians)")
    print("| arrival -> every cancel sent | arrival -> flat verified |")
    print("|---|---|")
    print(f"| {statistics.median(k['cancels_ms'] for k in kills):.0f} ms "
          f"| {statistics.median(k['flat_ms'] for k in kills):.0f} ms |")
    print(json.dumps(kills))


if __name__ == "__main__":
    asyncio.run(main())
