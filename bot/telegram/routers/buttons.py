"""Confirm/Cancel buttons: the second step of every command that adds risk."""
from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery

from bot.telegram.confirm import CANCEL, Claim, parse_callback
from bot.telegram.context import AuditNote, Ctx, Reply, TelegramDeps
from bot.telegram.format import h
from bot.telegram.middleware import record
from bot.telegram.table import ROLE_NAMES, command
from core.errors import ServiceError


async def on_button(query: CallbackQuery, ctx: Ctx, note: AuditNote, deps: TelegramDeps) -> None:
    parsed = parse_callback(query.data)
    if parsed is None:
        note.done("refused: unknown button")
        await record(deps, note)
        await deps.sender.answer_callback(query.id, "unknown button: nothing changed", True)
        return
    choice, nonce = parsed
    message = query.message
    if message is None:  # an inline message: no chat to bind the confirmation to
        note.done("refused: no message")
        await record(deps, note)
        await deps.sender.answer_callback(
            query.id, "this button is not in a chat the bot serves: nothing changed", True)
        return
    chat_id = message.chat.id
    claim, pending = deps.pending.claim(nonce, ctx.user_id, chat_id)
    if claim is not Claim.OK or pending is None:
        note.done(f"refused: {claim.name.lower()}")
        await record(deps, note)
        await deps.sender.answer_callback(query.id, claim.value, True)
        if claim is Claim.EXPIRED and pending is not None and pending.message_id is not None:
            await deps.sender.edit(chat_id, pending.message_id,
                                   f"{pending.plan.impact}\n\n⌛ expired: nothing changed")
        return
    plan = pending.plan
    entry = command(plan.command)
    prompt = f"{plan.impact}\n\n"
    if choice == CANCEL:
        note.done("cancelled")
        result = Reply("✖️ cancelled: nothing changed", outcome="cancelled")
    elif ctx.role < entry.min_role:
        note.done(f"refused: needs {ROLE_NAMES[entry.min_role]}")
        result = Reply("refused: not allowed now; nothing changed")
    elif pending.epoch != ctx.service.state.epoch:
        # A kill, pause, disarm or reset came after this was asked: what it would
        # change is not what the operator saw (an old /reset must not undo a newer /kill).
        note.done("refused: state changed since asked")
        result = Reply("refused: the trading state changed since this was asked "
                       f"(now {h(ctx.service.state.state)}); ask again. Nothing changed.",
                       outcome="refused: state changed since asked")
    else:
        try:
            result = await plan.execute(ctx)
        except ServiceError as exc:
            result = Reply(f"refused: {h(exc)}", outcome=f"refused: {exc}")
        note.done(result.outcome)
    await record(deps, note)
    await deps.sender.answer_callback(query.id, "cancelled" if choice == CANCEL else "done")
    target = pending.message_id or message.message_id
    text = prompt + result.text
    if target is not None and await deps.sender.edit(chat_id, target, text):
        if result.live_run and deps.live is not None:
            deps.live.follow(chat_id, target, result.live_run)
        return
    sent = await deps.sender.send(chat_id, text)
    if sent is not None and result.live_run and deps.live is not None:
        deps.live.follow(chat_id, sent.message_id, result.live_run)


def make_router() -> Router:
    router = Router(name=__name__)
    router.callback_query.register(on_button)
    return router
