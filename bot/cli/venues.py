"""`arbops reconcile` and `arbops balance` (runbook §5.2), through the running
service when there is one, else in this process."""
from __future__ import annotations

import asyncio
from typing import Any

from bot.cli import print_json
from bot.cli.client import EngineClient
from bot.views import balance_lines, reconcile_lines
from core.commands import DrillArgs, JsonArgs, RecordArgs
from core.config.settings import Settings
from core.errors import ExitCode, ServiceError


def cmd_reconcile(settings: Settings, args: JsonArgs) -> int:
    result = EngineClient(settings).ask_or_here("reconcile", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(reconcile_lines(result)))
    return ExitCode.OK if result["ok"] else ExitCode.FAILED


def cmd_balance(settings: Settings, args: JsonArgs) -> int:
    result = EngineClient(settings).ask_or_here("balance", args)
    if args.json_output:
        print_json(result)
        return ExitCode.OK
    print("\n".join(balance_lines(result)))
    return ExitCode.OK


def cmd_record(settings: Settings, args: RecordArgs) -> int:
    """Record market snapshots for `--data-source replay` (runbook-free, issue #4)."""
    from datetime import UTC, datetime

    seconds = args.seconds if args.seconds is not None else (args.minutes or 0.0) * 60
    path = args.output or (settings.data_dir / "recordings" /
                           f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{args.data_source}.jsonl.gz")
    from core.errors import ExchangeError

    try:
        count = asyncio.run(_record(settings, args, seconds, path))
    except ExchangeError as exc:
        raise ServiceError(f"cannot record: {exc}", ExitCode.FAILED) from None
    print(f"recorded {count} snapshots ({seconds:.0f} s, {args.universe}, {args.data_source}) "
          f"to {path}")
    return ExitCode.OK if count else ExitCode.FAILED


async def _record(settings: Settings, args: RecordArgs, seconds: float, path: Any) -> int:
    from bot.app import real_venues
    from core.clock import SystemClock
    from core.trading.universe import parse_universe, select_universe
    from core.venues.replay_market import record_market
    from core.venues.sim_market import SimMarket

    clock = SystemClock()
    venues = None
    if args.data_source == "sim":
        market: Any = SimMarket(seed=settings.sim_seed, n_symbols=settings.sim_symbols,
                                interval_s=settings.tick_interval_ms / 1000.0, clock=clock,
                                mean_reversion=settings.sim_mean_reversion,
                                premium_vol_bps=settings.sim_premium_vol_bps,
                                jump_rate_per_min=settings.sim_jump_rate_per_min,
                                jump_bps=settings.sim_jump_bps, fx_krw=settings.sim_fx_krw,
                                level_vol_bps=settings.sim_level_vol_bps,
                                level_halflife_s=settings.sim_level_halflife_s)
    else:
        from core.venues.ccxt_market_data import CcxtMarketData

        venues = real_venues(settings, role="market_data")  # recording only reads books
        market = CcxtMarketData(venues, clock, settings.real_poll_interval_s)
    try:
        if hasattr(market, "prepare"):
            await market.prepare()
        bases = select_universe(market.symbol_stats(), parse_universe(args.universe),
                                fx_krw=settings.sim_fx_krw)
        if not bases:
            raise ServiceError("no pair passes the universe filters", ExitCode.FAILED)
        return await record_market(market, path, seconds, args.data_source, bases)
    finally:
        for ex in (venues or {}).values():
            await ex.close()


def cmd_drill(settings: Settings, args: DrillArgs) -> int:
    from bot.drill.rehearsal import run_drill

    return run_drill(args.data_dir, args.paper_seconds, args.live_seconds)
