"""`arbops reconcile` and `arbops balance` (runbook §5.2), through the running
service when there is one, else in this process."""
from __future__ import annotations

import asyncio
from typing import Any

from bot.cli import EXIT_FAILED, EXIT_OK, CliError, print_json
from core.commands import JsonArgs
from core.control_channel import EngineNotRunning, request_sync, socket_path_for
from core.settings import Settings


def _via_service_or_here(settings: Settings, cmd: str) -> dict[str, Any]:
    try:
        reply = request_sync(socket_path_for(settings.data_dir), cmd, {"actor": "cli"},
                             timeout=60.0)
    except EngineNotRunning:
        return asyncio.run(_here(settings, cmd))
    if not reply.get("ok"):
        raise CliError(str(reply.get("error")), int(reply.get("code", EXIT_FAILED)))
    result: dict[str, Any] = reply["result"]
    return result


async def _here(settings: Settings, cmd: str) -> dict[str, Any]:
    from bot.app import build_service
    from core.service import ServiceError

    service = await build_service(settings)
    try:
        return await (service.reconcile() if cmd == "reconcile" else service.balances())
    except ServiceError as exc:
        raise CliError(str(exc), exc.code) from None
    finally:
        await service.store.close()


def cmd_reconcile(settings: Settings, args: JsonArgs) -> int:
    result = _via_service_or_here(settings, "reconcile")
    if args.json_output:
        print_json(result)
    else:
        print(f"reconciliation of run {result['run_id']} ({result.get('source')}): "
              f"{'OK' if result['ok'] else 'DRIFT'}")
        print(f"  open orders: {result['open_orders']}  open positions: "
              f"{result['open_positions']}")
        for problem in result["problems"]:
            print(f"  - {problem}")
        for d in result["drift"]:
            print(f"  {d['venue']} {d['asset']}: journal {d['journal']} vs venue "
                  f"{d['venue_change']} (diff {d['difference']})")
    return EXIT_OK if result["ok"] else EXIT_FAILED


def cmd_balance(settings: Settings, args: JsonArgs) -> int:
    result = _via_service_or_here(settings, "balance")
    if args.json_output:
        print_json(result)
        return EXIT_OK
    print(f"balances ({result.get('source')})")
    for venue in ("upbit", "binance"):
        for asset, b in sorted((result.get(venue) or {}).items()):
            print(f"  {venue:<8} {asset:<6} free {b['free']:.8g}  used {b['used']:.8g}")
    if "balances_at_start" in result:
        print(f"  last run {result.get('run_id')}: balances at its start "
              f"{result.get('balances_at_start')}")
    return EXIT_OK


def cmd_record(settings: Settings, args: Any) -> int:
    """Record market snapshots for `--data-source replay` (runbook-free, issue #4)."""
    from datetime import UTC, datetime

    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    path = args.output or (settings.data_dir / "recordings" /
                           f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{args.data_source}.jsonl.gz")
    from core.ports import ExchangeError

    try:
        count = asyncio.run(_record(settings, args, seconds, path))
    except ExchangeError as exc:
        raise CliError(f"cannot record: {exc}", EXIT_FAILED) from None
    print(f"recorded {count} snapshots ({seconds:.0f} s, {args.universe}, {args.data_source}) "
          f"to {path}")
    return EXIT_OK if count else EXIT_FAILED


async def _record(settings: Settings, args: Any, seconds: float, path: Any) -> int:
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
                                jump_rate_per_min=settings.sim_jump_rate_per_min,
                                jump_bps=settings.sim_jump_bps, fx_krw=settings.sim_fx_krw)
    else:
        from core.venues.ccxt_market_data import CcxtMarketData

        venues = real_venues(settings)
        market = CcxtMarketData(venues, clock, settings.real_poll_interval_s)
    try:
        if hasattr(market, "prepare"):
            await market.prepare()
        bases = select_universe(market.symbol_stats(), parse_universe(args.universe),
                                fx_krw=settings.sim_fx_krw)
        if not bases:
            raise CliError("no pair passes the universe filters", EXIT_FAILED)
        return await record_market(market, path, seconds, args.data_source, bases)
    finally:
        for ex in (venues or {}).values():
            await ex.close()


def cmd_drill(settings: Settings, args: Any) -> int:
    from bot.drill.rehearsal import run_drill

    return run_drill(args.data_dir, args.paper_seconds, args.live_seconds)
