"""Latency fixes to the bot's one Bot API session (docs/performance.md, Telegram
round trip): applied once by `start_telegram`, where the Bot is made."""
from __future__ import annotations

import asyncio
from typing import Any

from aiogram import Bot
from aiogram.methods import GetUpdates

# aiogram parses every Bot API answer with `Response[method.__returning__]`, a pydantic
# generic. pydantic caches parametrized generics in a WeakValueDictionary, so the
# class dies at the next garbage collection that reaches it and the following call
# rebuilds its schema: measured 5-8 ms of blocked event loop for getUpdates
# (`list[Update]`), 3-5 ms for sendMessage (`Message`), every few updates
# (docs/performance.md, Telegram round trip). Holding them here keeps them cached.
_RESPONSE_MODELS: list[Any] = []


def keep_response_models() -> None:
    """Build once, and keep, the answer models of the Bot API methods this bot calls."""
    if _RESPONSE_MODELS:
        return
    from aiogram import methods
    from aiogram.methods.base import Response

    used = (methods.GetUpdates, methods.GetMe, methods.SendMessage, methods.SendPhoto,
            methods.EditMessageText, methods.AnswerCallbackQuery, methods.DeleteWebhook,
            methods.SetMyCommands, methods.SetWebhook)
    # Parametrized with values read at run time: an expression, not a type mypy can check.
    response: Any = Response
    _RESPONSE_MODELS.extend(response[m.__returning__] for m in used)


async def updates_first(make_request: Any, bot: Bot, method: Any) -> Any:
    """Bot API request middleware: before the next getUpdates long poll, yield once.

    aiogram's polling loop starts a task per update and goes straight on to build and
    send the next getUpdates; the tasks only start when that request waits for its
    answer (measured 0.4-0.5 ms later). One yield lets them run first, so a /kill
    reaches HALTED before the next poll is even built. Nothing is lost: updates that
    arrive meanwhile wait at the Bot API for that poll.
    """
    if isinstance(method, GetUpdates):
        await asyncio.sleep(0)
    return await make_request(bot, method)


def tune_session(bot: Bot) -> None:
    """The two fixes to the bot's Bot API session above; idempotent."""
    keep_response_models()
    if updates_first not in bot.session.middleware:
        bot.session.middleware(updates_first)
