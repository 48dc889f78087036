"""One live-like phase against the emulator, in a process the crash tests kill -9.

It wires the real pieces (ccxt venues, journal, PhaseRun with its start-up
recovery and its end) but not the operator's live gate, which has its own tests;
and it never imports aiogram, so restarts are quick.

Two clocks: by default the wall clock, with real market data polled through
ccxt (timing races stay covered); with --stepped TICK_S the emulator runs on a
manual clock the harness advances one tick at a time (SteppedFeed), so the same
seed replays the same books, fills and decisions, and a data second costs only
its work. --kill-after S kills the run (the kill procedure) S data seconds in.

usage: python -m tests.venues.crash_harness DATA_DIR EMULATOR_URL SECONDS [CRASH_AT]
       [--stepped TICK_S] [--kill-after S]
   or: python -m tests.venues.crash_harness --serve
       (reads one JSON argument list per line on stdin, runs each in a forked child
       whose output goes to the file named by "--log", answers {"exit": code} per
       line: -9 when the child died by SIGKILL. The imports, most of a run's
       start-up, are paid once per soak instead of once per crash.)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from bot.app import real_venues, venue_budgets
from bot.drill.stepped_feed import SteppedFeed
from core.clock import Clock, SystemClock
from core.config.settings import Settings
from core.journal.sqlite_store import SqliteStore
from core.trading.phase_run import PhaseRun, RunSpec
from core.trading.state import TradingStateBox
from core.venues.ccxt_market_data import CcxtMarketData

KEYS = {"upbit": ("upbit-test-key", "upbit-test-secret"),
        "binance": ("binance-test-key", "binance-test-secret")}


async def main(data_dir: Path, url: str, seconds: float, crash_at: str | None,
               stepped: float | None, kill_after: float | None) -> int:
    settings = Settings(
        _env_file=None, data_dir=data_dir, upbit_api_base=url, binance_api_base=url,  # type: ignore[call-arg]
        upbit_access_key=KEYS["upbit"][0], upbit_secret_key=KEYS["upbit"][1],
        binance_api_key=KEYS["binance"][0], binance_api_secret=KEYS["binance"][1],
        real_poll_interval_s=0.2, fault_crash_at=crash_at, order_timeout_s=1.0,
        guard_memory_anomaly_mb=4000.0,
        # Every run is a fresh process with a fresh baseline: trade within its first
        # second and close round trips within the run, so crash points come often.
        baseline_warmup_s=0.5, entry_cooldown_s=0.3, max_hold_s=1.0)
    store = await SqliteStore.open(data_dir / "arbops.sqlite3")
    budgets = venue_budgets()  # as bot/app.py wires it: one budget, separate clients
    venues = real_venues(settings, budgets, "trading")
    clock: Clock
    market: Any
    if stepped is not None:
        market = await SteppedFeed.open(url, stepped)
        clock = market.clock
    else:
        clock = SystemClock()
        market = CcxtMarketData(real_venues(settings, budgets, "market_data"), clock,
                                settings.real_poll_interval_s)
    spec = RunSpec(mode="live", phase=1, top_n=10, duration_s=seconds, notional_usd=50.0,
                   data_source="real", kpi_path=data_dir / "kpi.json")
    started = clock.monotonic()

    def progress(run: PhaseRun) -> None:
        if kill_after is not None and clock.monotonic() - started >= kill_after:
            run.kill("crash soak: kill procedure")

    run = PhaseRun(spec, settings, store, TradingStateBox(), clock, market, venues,
                   on_progress=progress)
    try:
        outcome = await run.execute()
    finally:
        for ex in venues.values():
            await ex.close()
        if isinstance(market, SteppedFeed):
            await market.close()
        else:
            for ex in market.venues.values():
                await ex.close()
        await store.close()
    print(json.dumps({"exit_code": outcome.exit_code,
                      "unresolved": outcome.kpi["trading"].get("unresolved_intents"),
                      "reconciliation": outcome.kpi.get("reconciliation")}))
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.venues.crash_harness")
    ap.add_argument("data_dir", type=Path)
    ap.add_argument("url")
    ap.add_argument("seconds", type=float)
    ap.add_argument("crash_at", nargs="?", default=None)
    ap.add_argument("--stepped", type=float, default=None, metavar="TICK_S")
    ap.add_argument("--kill-after", type=float, default=None, metavar="S")
    ap.add_argument("--log", type=Path, default=None, help="stdout and stderr go here")
    return ap.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    a = parse(argv)
    return asyncio.run(main(a.data_dir, a.url, a.seconds, a.crash_at, a.stepped,
                            a.kill_after))


def warm_up() -> None:
    """What every run imports lazily, imported once in the parent of the forks."""
    import ccxt.async_support as ccxt_async

    import core.monitoring.incident
    import core.venues.reconcile
    import core.venues.recovery  # noqa: F401

    for ccxt_id in ("binance", "upbit"):
        getattr(ccxt_async, ccxt_id)


def serve() -> int:
    """One forked child per request line; the parent never starts an event loop."""
    warm_up()
    while line := sys.stdin.readline():
        argv = json.loads(line)
        log = parse(argv).log
        pid = os.fork()
        if pid == 0:  # the child: a fresh run, its output in its own file
            code = 1
            try:
                if log is not None:
                    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                    os.dup2(fd, 1)
                    os.dup2(fd, 2)
                code = run(argv)
            except BaseException:  # noqa: BLE001 - reported through the log and the code
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"exit": code}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(serve() if sys.argv[1:] == ["--serve"] else run())
