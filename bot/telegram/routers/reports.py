"""/report [daily|weekly] (issue #7) and /notify [test]: a sample alert through the
notifier, the runbook's 8.1 check that alerts reach this chat."""
from __future__ import annotations

import inspect
import re

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply, UsageError
from bot.telegram.format import h
from bot.telegram.notifier import TEST_ALERT_TITLE
from bot.telegram.routers._util import kv_text, need
from bot.telegram.table import command as table_command
from bot.telegram.table import flags_for

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}|today|yesterday)$")


async def cmd_report(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    """/report [daily|weekly] [YYYY-MM-DD|today|yesterday]: built now, nothing scheduled.

    Only kind and date come from Telegram; no path (png/json) is taken from a chat."""
    tokens = (command.args or "").split()
    kind = tokens[0].lower() if tokens else "daily"
    day = tokens[1].lower() if len(tokens) > 1 else None
    if kind not in ("daily", "weekly") or len(tokens) > 2 or (
            day is not None and not _DATE.match(day)):
        raise UsageError("usage: /report [daily|weekly] [YYYY-MM-DD|today|yesterday]")
    report = need(ctx.service, "report", table_command("report").pending_issue)
    try:
        result = report(kind, day)
        if inspect.isawaitable(result):
            result = await result
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Reply(h(result) if isinstance(result, str) else kv_text(result))


async def cmd_notify(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    what = (command.args or "test").strip().lower()
    if what != "test":
        raise UsageError("usage: /notify test")
    chat = ctx.settings.telegram_chat_id
    body = (f"sample alert sent by {ctx.actor} with /notify test. If you read this, alerts "
            "reach this chat (runbook 8.1).")
    if hasattr(ctx.service, "send_test_alert"):
        await ctx.service.send_test_alert(ctx.actor)
    else:
        await ctx.service.notifier.notify("TEST", TEST_ALERT_TITLE, body)
    if chat is None:
        return Reply("TELEGRAM_CHAT_ID is not set: alerts go to the log only. "
                     "The test alert was logged.", outcome="ok: logged only")
    return Reply(f"test alert queued for chat <code>{h(chat)}</code>")


def make_router() -> Router:
    router = Router(name=__name__)
    router.message.register(cmd_report, CommandFilter("report", ignore_case=True),
                            flags=flags_for("report"))
    router.message.register(cmd_notify, CommandFilter("notify", "testalert", ignore_case=True),
                            flags=flags_for("notify"))
    return router
