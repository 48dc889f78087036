"""Anything no other router took: unknown commands and plain text (allowed users only)."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.format import h


async def unknown_command(message: Message, ctx: Ctx) -> Reply:
    name = (message.text or "/").split()[0][:40]
    return Reply(f"unknown command {h(name)}; /help lists them", outcome="unknown command")


async def not_a_command(message: Message, ctx: Ctx) -> Reply:
    return Reply("send a command; /help lists them", outcome="not a command")


def make_router() -> Router:
    router = Router(name=__name__)
    router.message.register(unknown_command, F.text.startswith("/"))
    router.message.register(not_a_command)
    return router
