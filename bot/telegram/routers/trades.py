"""Trade history, the Freqtrade way: /trades [n], /profit, /performance, /daily [n],
/show_config. Tables in monospace; the same views the CLI prints."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.format import fit, h, pre
from bot.telegram.parsing import parse_model_args
from bot.telegram.table import command as table_row
from bot.telegram.table import flags_for
from bot.views import (
    config_lines,
    daily_lines,
    performance_lines,
    profit_lines,
    trades_lines,
    zone,
)
from core.commands import DailyArgs, TradesArgs


def _card(lines: list[str]) -> Reply:
    head, body = lines[0], lines[1:]
    return Reply(fit(f"<b>{h(head)}</b>" + (f"\n{pre(body)}" if body else "")))


async def cmd_trades(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    args = parse_model_args(TradesArgs, command.args)
    assert isinstance(args, TradesArgs)
    rows = await ctx.service.recent_trades(min(args.limit, 30))  # a phone screen
    return _card(trades_lines(rows, zone(ctx.settings)))


async def cmd_profit(message: Message, ctx: Ctx) -> Reply:
    return _card(profit_lines(await ctx.service.profit()))


async def cmd_performance(message: Message, ctx: Ctx) -> Reply:
    return _card(performance_lines((await ctx.service.performance())[:30]))


async def cmd_daily(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    args = parse_model_args(DailyArgs, command.args)
    assert isinstance(args, DailyArgs)
    return _card(daily_lines(await ctx.service.daily_pnl_table(args.days)))


async def cmd_show_config(message: Message, ctx: Ctx) -> Reply:
    return _card(config_lines(ctx.service.show_config()))


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("trades", cmd_trades), ("profit", cmd_profit),
                     ("performance", cmd_performance), ("daily", cmd_daily),
                     ("show_config", cmd_show_config)):
        table_row(name)  # KeyError here means the table lost a command this router serves
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    return router
