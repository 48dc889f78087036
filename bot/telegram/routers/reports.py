"""/report [daily|weekly] [date] | /report run <id|last> (issues #7, #18) and /notify
[test]: a sample alert through the notifier, the runbook's 8.1 check that alerts reach
this chat."""
from __future__ import annotations

import re

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.format import caption_parts, h
from bot.telegram.notifier import TEST_ALERT_TITLE
from bot.telegram.table import flags_for
from core.errors import BadInput, UsageError

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}|today|yesterday)$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")
USAGE = "usage: /report [daily|weekly] [YYYY-MM-DD|today|yesterday] | /report run <run id|last>"
NO_CHART = "(no chart: it could not be drawn; the details are in the server log)"
CHART_NOT_SENT = "(the chart could not be sent; the details are in the server log)"


def _parse(args: str | None) -> tuple[str, str | None, str | None]:
    """(kind, day, run id) from the chat's words, or UsageError. Case is kept for a run
    id (they are case-sensitive); kind and date words are not."""
    tokens = (args or "").split()
    kind = tokens[0].lower() if tokens else "daily"
    if len(tokens) > 2:
        raise UsageError(USAGE)
    if kind == "run":
        run_id = tokens[1] if len(tokens) == 2 else None
        if run_id is None or not _RUN_ID.match(run_id):
            raise UsageError(USAGE)
        return kind, None, run_id
    day = tokens[1].lower() if len(tokens) > 1 else None
    if kind not in ("daily", "weekly") or (day is not None and not _DATE.match(day)):
        raise UsageError(USAGE)
    return kind, day, None


async def cmd_report(message: Message, command: CommandObject, ctx: Ctx) -> Reply | None:
    """/report [daily|weekly] [YYYY-MM-DD|today|yesterday], /report run <id|last>: built
    now, nothing scheduled.

    Only kind, date and run id come from Telegram; no path (png/json) is taken from a
    chat and no file is written. The chart is drawn by a worker process (the bot's
    memory never holds the plotting library) and sent as a photo with the report as its
    caption (a report over the 1024-character caption limit follows the photo as a
    message); without a chart (failed, or cut off at its time limit) the report is sent
    as text with a note. The photo goes through the reply Sender (same retries as
    replies); what is left (the long text, a fallback, a usage error) is this handler's
    Reply."""
    kind, day, run_id = _parse(command.args)
    try:
        built = await ctx.service.report_with_chart(kind, day, run_id=run_id)
    except (ValueError, BadInput) as exc:  # e.g. no such run in the journal
        raise UsageError(str(exc)) from None
    text = str(built.text)
    png: bytes | None = built.png
    if png is None:
        return Reply(f"{h(text)}\n<i>{NO_CHART}</i>", outcome="ok: text only (no chart)")
    sender = getattr(ctx.deps, "sender", None)
    if sender is None or ctx.chat_id is None:
        return Reply(h(text))
    caption, rest = caption_parts(text)
    sent = await sender.send_photo(ctx.chat_id, png, h(caption),
                                   filename=f"{kind}-{built.key}.png")
    if sent is None:
        return Reply(f"{h(text)}\n<i>{CHART_NOT_SENT}</i>",
                     outcome="ok: text only (chart not delivered)")
    if rest is None:
        return None  # the photo was the whole answer (audited "ok")
    return Reply(h(text))  # too long for a caption: the full report after the photo


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
