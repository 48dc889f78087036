"""Venue views (issue #4): /balance, /reconcile; served once OperatorService has
`balances()` and `reconcile()` and the table marks them available."""
from __future__ import annotations

import inspect

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.routers._util import kv_text, need
from bot.telegram.table import command, flags_for


async def _call(ctx: Ctx, method: str, name: str) -> object:
    result = need(ctx.service, method, command(name).pending_issue)()
    return await result if inspect.isawaitable(result) else result


async def cmd_balance(message: Message, ctx: Ctx) -> Reply:
    return Reply("<b>balances</b>\n" + kv_text(await _call(ctx, "balances", "balance")))


async def cmd_reconcile(message: Message, ctx: Ctx) -> Reply:
    return Reply("<b>reconcile</b>\n" + kv_text(await _call(ctx, "reconcile", "reconcile")))


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("balance", cmd_balance), ("reconcile", cmd_reconcile)):
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    return router
