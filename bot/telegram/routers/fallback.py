"""Anything no other router took: unknown commands and plain text (allowed users only)."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command as CommandFilter
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.format import h
from bot.telegram.table import flags_for


async def unknown_command(message: Message, ctx: Ctx) -> Reply:
    name = (message.text or "/").split()[0][:40]
    return Reply(f"unknown command {h(name)}; /help lists them", outcome="unknown command")


async def not_a_command(message: Message, ctx: Ctx) -> Reply:
    return Reply("send a command; /help lists them", outcome="not a command")


async def not_served(message: Message, ctx: Ctx) -> Reply:
    """A table command no router serves yet (the table grew): say so, change nothing."""
    name = (message.text or "/").split()[0][1:].split("@")[0]
    return Reply(f"/{h(name)} is not served on Telegram yet; use the CLI",
                 outcome="unavailable: no telegram handler")


def make_router(unserved: tuple[str, ...] = ()) -> Router:
    router = Router(name=__name__)
    for name in unserved:
        entry = dict(flags_for(name))
        router.message.register(not_served, CommandFilter(name, ignore_case=True), flags=entry)
    router.message.register(unknown_command, F.text.startswith("/"))
    router.message.register(not_a_command)
    return router
