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
