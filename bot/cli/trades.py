"""`arbops trades`, `profit`, `performance`, `daily`, `show_config`: the journal's
trade history and the effective settings, as tables (one JSON object with --json)."""
from __future__ import annotations

from bot.cli import print_json
from bot.cli.client import EngineClient
from bot.views import (
    config_lines,
    daily_lines,
    performance_lines,
    profit_lines,
    trades_lines,
    zone,
)
from core.commands import DailyArgs, JsonArgs, TradesArgs
from core.config.settings import Settings
from core.errors import ExitCode


def cmd_trades(settings: Settings, args: TradesArgs) -> int:
    result = EngineClient(settings).ask_or_here("trades", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(trades_lines(result.get("rows", []), zone(settings))))
    return ExitCode.OK


def cmd_profit(settings: Settings, args: JsonArgs) -> int:
    result = EngineClient(settings).ask_or_here("profit", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(profit_lines(result)))
    return ExitCode.OK


def cmd_performance(settings: Settings, args: JsonArgs) -> int:
    result = EngineClient(settings).ask_or_here("performance", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(performance_lines(result.get("rows", []))))
    return ExitCode.OK


def cmd_daily(settings: Settings, args: DailyArgs) -> int:
    result = EngineClient(settings).ask_or_here("daily", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(daily_lines(result)))
    return ExitCode.OK


def cmd_show_config(settings: Settings, args: JsonArgs) -> int:
    result = EngineClient(settings).ask_or_here("show_config", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(config_lines(result)))
    return ExitCode.OK
