"""Venue views (runbook 5.2): /balance, /reconcile."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.format import h, lines_html, pre
from bot.telegram.table import flags_for
from bot.views import balance_lines, reconcile_lines


async def cmd_balance(message: Message, ctx: Ctx) -> Reply:
    lines = balance_lines(await ctx.service.balances())
    return Reply(f"<b>{h(lines[0])}</b>\n{pre(lines[1:])}" if len(lines) > 1
                 else f"<b>{h(lines[0])}</b>")


async def cmd_reconcile(message: Message, ctx: Ctx) -> Reply:
    lines = reconcile_lines(await ctx.service.reconcile())
    return Reply(f"<b>{h(lines[0])}</b>\n" + lines_html(lines[1:]))


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("balance", cmd_balance), ("reconcile", cmd_reconcile)):
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    return router
