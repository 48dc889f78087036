"""One live-like phase against the emulator, in a process the crash tests kill -9.

It wires the real pieces (ccxt venues, real market data, journal, PhaseRun with
its start-up recovery) but not the operator's live gate, which has its own
tests; and it never imports aiogram, so restarts are quick.
usage: python -m tests.venues.crash_harness DATA_DIR EMULATOR_URL SECONDS [CRASH_AT]
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from bot.app import real_venues, venue_budgets
from core.clock import SystemClock
from core.journal.sqlite_store import SqliteStore
from core.settings import Settings
from core.trading.phase_run import PhaseRun, RunSpec
from core.trading.state import TradingStateBox
from core.venues.ccxt_market_data import CcxtMarketData

KEYS = {"upbit": ("upbit-test-key", "upbit-test-secret"),
        "binance": ("binance-test-key", "binance-test-secret")}


async def main(data_dir: Path, url: str, seconds: float, crash_at: str | None) -> int:
    settings = Settings(
        _env_file=None, data_dir=data_dir, upbit_api_base=url, binance_api_base=url,  # type: ignore[call-arg]
        upbit_access_key=KEYS["upbit"][0], upbit_secret_key=KEYS["upbit"][1],
        binance_api_key=KEYS["binance"][0], binance_api_secret=KEYS["binance"][1],
        real_poll_interval_s=0.2, fault_crash_at=crash_at, order_timeout_s=1.0,
        guard_memory_anomaly_mb=4000.0)
    store = await SqliteStore.open(data_dir / "arbops.sqlite3")
    clock = SystemClock()
    budgets = venue_budgets()  # as bot/app.py wires it: one budget, separate clients
    venues = real_venues(settings, budgets, "trading")
    market = CcxtMarketData(real_venues(settings, budgets, "market_data"), clock,
                            settings.real_poll_interval_s)
    spec = RunSpec(mode="live", phase=1, top_n=10, duration_s=seconds, notional_usd=50.0,
                   data_source="real", kpi_path=data_dir / "kpi.json")
    run = PhaseRun(spec, settings, store, TradingStateBox(), clock, market, venues)
    try:
        outcome = await run.execute()
    finally:
        for ex in [*venues.values(), *market.venues.values()]:
            await ex.close()
        await store.close()
    print(json.dumps({"exit_code": outcome.exit_code,
                      "reconciliation": outcome.kpi.get("reconciliation")}))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    raise SystemExit(asyncio.run(main(Path(args[0]), args[1], float(args[2]),
                                      args[3] if len(args) > 3 else None)))
