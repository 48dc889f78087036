"""Venue views (runbook 5.2): /balance, /reconcile."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.routers._util import kv_text
from bot.telegram.table import flags_for


async def cmd_balance(message: Message, ctx: Ctx) -> Reply:
    return Reply("<b>balances</b>\n" + kv_text(await ctx.service.balances()))


async def cmd_reconcile(message: Message, ctx: Ctx) -> Reply:
    return Reply("<b>reconcile</b>\n" + kv_text(await ctx.service.reconcile()))


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("balance", cmd_balance), ("reconcile", cmd_reconcile)):
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    return router
