"""Venue benchmarks against the local emulator (issues #4, #15):
- order round trip through ccxt: gateway checks -> intent committed -> create_order
  ack, p50/p99 over many orders, per venue;
- kill to flat with 50 ms injected venue latency on every request;
- rate budgets under load (issue #15): REST market data for top50 running while
  orders and cancels go out; requests per minute per venue against the venues'
  published limits (the emulator enforces them and counts), and how long an
  order waits for budget (queueing) while the poller is busy.
Every client spends the process's one budget per venue (core.venues.rate_budget),
which replaces ccxt's per-instance throttle; market data has its own clients.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bot.app import real_venues, venue_budgets
from bot.drill.emulator import start_emulator
from core.clock import SystemClock
from core.config.settings import Settings
from core.domain.models import OrderRequest, OrderType, Side, Venue, pair_symbols
from core.journal.sqlite_store import SqliteStore
from core.monitoring.perf import percentile
from core.trading.gateway import Gateway, OrderIntent, Purpose
from core.trading.phase_run import PhaseRun, RunSpec
from core.trading.state import TradingStateBox
from core.venues.ccxt_market_data import CcxtMarketData

ORDERS = 60
LOAD_SECONDS = float(os.environ.get("BENCH_VENUE_SECONDS", "65"))
LOAD_RUNS = int(os.environ.get("BENCH_VENUE_RUNS", "3"))


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
        budgets = venue_budgets()
        venues = real_venues(settings, budgets, "trading")
        feed = real_venues(settings, budgets, "market_data")
        clock = SystemClock()
        try:
            market = CcxtMarketData(feed, clock)
            for ex in venues.values():
                await ex.load_markets()
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
            for ex in [*venues.values(), *feed.values()]:
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
            budgets = venue_budgets()
            venues = real_venues(settings, budgets, "trading")
            feed = real_venues(settings, budgets, "market_data")
            clock = SystemClock()
            market = CcxtMarketData(feed, clock, 0.2)
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
                for ex in [*venues.values(), *feed.values()]:
                    await ex.close()
                await store.close()
        steps = {s["step"]: s["t"] for s in outcome.kpi["kill"]["steps"]}
        return {"cancels_ms": (steps["cancel_all"] - marks["t"]) * 1000,
                "flat_ms": (steps["verify_flat"] - marks["t"]) * 1000}
    finally:
        await emu.stop()


async def budgets_under_load(seconds: float) -> dict[str, float]:
    """top50 REST market data plus an order and its cancel on each venue every
    0.5 s, for `seconds`; the last minute is measured."""
    from core.venues.rate_budget import Role

    emu = await start_emulator(top_n=50)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        settings = settings_for(emu.url, emu.keys, Path(tmp))
        budgets = venue_budgets()
        venues = real_venues(settings, budgets, "trading")
        feed = real_venues(settings, budgets, "market_data")
        market = CcxtMarketData(feed, SystemClock(), 0.2)
        latencies: dict[str, list[float]] = {"upbit": [], "binance": []}
        try:
            for ex in venues.values():
                await ex.load_markets()
            await market.prepare(candidates=60)
            bases = [st.base for st in market.symbol_stats()][:50]
            market.subscribe(bases)
            poller = asyncio.create_task(market.run())
            t_start = time.monotonic()
            marks: dict[str, Any] = {}

            async def trade() -> None:
                i = 0
                while True:
                    for venue, ex in venues.items():
                        sym = pair_symbols(bases[i % len(bases)])[venue]
                        book = await ex.fetch_order_book(sym, 5)
                        rules = ex.rules(sym)
                        px = rules.round_price(book.best_bid * 0.95, Side.BUY)
                        notional = 20.0 if venue is Venue.BINANCE else 20_000.0
                        req = OrderRequest(sym, Side.BUY, OrderType.LIMIT,
                                           rules.round_amount(notional / px),
                                           f"bl-{venue}-{i}-{int(t_start)}", px)
                        t0 = time.perf_counter()
                        order = await ex.create_order(req)
                        latencies[str(venue)].append((time.perf_counter() - t0) * 1000)
                        await ex.cancel_order(order.id, sym)
                    i += 1
                    if "start" not in marks and time.monotonic() - t_start >= seconds - 60:
                        marks["start"] = {v: dict(b.spent(Role.MARKET_DATA)) for v, b in
                                          budgets.items()}
                        marks["waits"] = {v: len(b.stats.waits_s[Role.TRADING]) for v, b in
                                          budgets.items()}
                        marks["lat"] = {v: len(x) for v, x in latencies.items()}
                    await asyncio.sleep(0.5)

            trader = asyncio.create_task(trade())
            await asyncio.sleep(seconds)
            for task in (poller, trader):
                task.cancel()
            await asyncio.gather(poller, trader, return_exceptions=True)
            limits = await _admin(emu.url, "/admin/limits")
            for v, b in budgets.items():
                md = b.spent(Role.MARKET_DATA)
                start = marks["start"][v]
                waits = sorted(list(b.stats.waits_s[Role.TRADING])[marks["waits"][v]:])
                lat = sorted(latencies[v][marks["lat"][v]:])
                out[f"{v}_md_units_per_min"] = sum(md.values()) - sum(start.values())
                out[f"{v}_requests_last_min"] = limits[v]["requests_last_minute"]
                out[f"{v}_http_429"] = limits[v]["http_429"]
                out[f"{v}_http_418"] = limits[v]["http_418"]
                out[f"{v}_in_window"] = limits[v]["in_window"]
                out[f"{v}_queue_p50_ms"] = statistics.median(waits) * 1000
                out[f"{v}_queue_p99_ms"] = percentile(waits, 0.99) * 1000
                out[f"{v}_order_p50_ms"] = statistics.median(lat)
                out[f"{v}_order_p99_ms"] = percentile(lat, 0.99)
                out[f"{v}_pace_s"] = market.pace_s.get(Venue(v), 0.0)
            out["binance_max_weight_1m"] = limits["binance"]["max_weight_1m"]
        finally:
            for ex in [*venues.values(), *feed.values()]:
                await ex.close()
            await emu.stop()
    return out


async def _admin(url: str, path: str) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(url + path) as r:
        return await r.json()


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


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
    runs = [await budgets_under_load(LOAD_SECONDS) for _ in range(LOAD_RUNS)]
    print(f"rate budgets under load: top50 REST market data + an order and its cancel per "
          f"venue every 0.5 s, last 60 s of {LOAD_SECONDS:.0f} s ({LOAD_RUNS} runs, medians)")
    print("| venue | published limit | market data per min (share: 50 %) | requests/min at "
          "the venue | 429 / 418 / sent inside a window | poll pace s | order queueing p50 / "
          "p99 ms | create_order p50 / p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    limit = {"binance": "6,000 weight/min", "upbit": "orderbook 10 req/s (600/min)"}
    unit = {"binance": "weight", "upbit": "requests"}
    for name in ("binance", "upbit"):
        m = {k: _median(runs, f"{name}_{k}") for k in (
            "md_units_per_min", "requests_last_min", "http_429", "http_418", "in_window",
            "pace_s", "queue_p50_ms", "queue_p99_ms", "order_p50_ms", "order_p99_ms")}
        print(f"| {name} | {limit[name]} | {m['md_units_per_min']:.0f} {unit[name]} | "
              f"{m['requests_last_min']:.0f} | {m['http_429']:.0f} / {m['http_418']:.0f} / "
              f"{m['in_window']:.0f} | {m['pace_s']:.2f} | {m['queue_p50_ms']:.3f} / "
              f"{m['queue_p99_ms']:.3f} | {m['order_p50_ms']:.2f} / {m['order_p99_ms']:.2f} |")
    print(f"binance weight used per minute at the venue (whole IP, max): "
          f"{_median(runs, 'binance_max_weight_1m'):.0f} of 6,000")
    print(json.dumps(runs))


if __name__ == "__main__":
    asyncio.run(main())
