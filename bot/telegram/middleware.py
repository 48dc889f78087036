"""Cross-cutting concerns (docs/architecture.md).

Outer, in order: `AuditMiddleware` (one audit row per update, every attempt,
secrets masked; a command addressed to another bot is not ours and leaves none),
`OriginMiddleware` (bot/telegram/origin.py: allowed chats only, anonymous senders
refused) and `AllowlistMiddleware` (the USER must be in TELEGRAM_ALLOWED_USERS;
anyone else gets no reply at all). Inner:
`TimingMiddleware` and, for messages, `CommandGate`, which reads the core
command table entry from the handler's flags and applies the role check, the
"not available yet" reply, the stale-update rule and the two-step
confirmation, then sends what the handler returned.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
    User,
)
from loguru import logger

from bot.telegram.confirm import CANCEL, CONFIRM, parse_callback
from bot.telegram.context import AuditNote, Ctx, Plan, Reply, TelegramDeps
from bot.telegram.format import h, ts
from bot.telegram.origin import addressed_elsewhere, command_mention, forwarded
from bot.telegram.table import ROLE_NAMES
from core.commands import Command
from core.errors import ServiceError, UsageError
from core.redaction import clean_text

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
def mask(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Typed arguments as the audit stores them: the one redactor (core.redaction)."""
    return clean_text(text, 300, secrets)


def describe(event: TelegramObject, deps: TelegramDeps) -> tuple[str, Any]:
    """(command, masked args) of an update, for the audit row."""
    if isinstance(event, Message):
        text = event.text or event.caption or ""
        if text.startswith("/"):
            head, _, rest = text.partition(" ")
            name = head[1:].split("@", 1)[0].lower()[:32] or "?"
            return name, mask(rest.strip(), deps.secrets)
        return ("(text)" if text else "(non-text)"), mask(text[:100], deps.secrets)
    if isinstance(event, CallbackQuery):
        parsed = parse_callback(event.data)
        if parsed is None:
            return "(button)", mask((event.data or "")[:64], deps.secrets)
        choice, nonce = parsed
        p = deps.pending.peek(nonce)
        what = "confirm" if choice == CONFIRM else "cancel"
        if p is None:
            return what, {"pending": None, "nonce": nonce[:4] + "…"}
        return f"{what} {p.plan.command}", {"pending": p.id, **p.plan.args}
    return type(event).__name__, None


async def record(deps: TelegramDeps, note: AuditNote) -> None:
    if note.recorded:
        return
    note.recorded = True
    if note.latency_ms is None:
        note.latency_ms = (time.perf_counter() - note.t0) * 1000
    try:
        await deps.service.record_audit(
            surface="telegram", user=str(note.user_id), role=note.role,
            chat=None if note.chat_id is None else str(note.chat_id), command=note.command,
            args=note.args, outcome=note.outcome, latency_ms=round(note.latency_ms, 3))
    except Exception:  # noqa: BLE001 - an audit failure is logged, the command stands
        logger.exception("could not write the telegram audit row")


class AuditMiddleware(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        deps: TelegramDeps = data["deps"]
        received = deps.now()  # staleness counts to here, not to when a handler ran
        if isinstance(event, Message) and command_mention(event.text or event.caption):
            me = await _our_username(data)
            if addressed_elsewhere(event.text or event.caption, me):
                return None  # another bot's command: not an attempt on this one
        user = data.get("event_from_user")
        chat = data.get("event_chat")
        command, args = describe(event, deps)
        note = AuditNote(user.id if user else None, chat.id if chat else None, command, args,
                         received=received)
        data["note"] = note
        task = asyncio.current_task()
        if task is not None:
            deps.inflight.add(task)
        try:
            return await handler(event, data)
        except Exception as exc:  # noqa: BLE001 - logged, audited, answered; polling goes on
            note.done(f"error: {type(exc).__name__}")
            logger.exception("telegram handler failed for /{}", command)
            if "ctx" in data and note.chat_id is not None:
                await deps.sender.send(note.chat_id, "internal error; nothing was confirmed. "
                                       "Details are in the server log.")
            return None
        finally:
            await record(deps, note)
            if task is not None:
                deps.inflight.discard(task)


async def _our_username(data: dict[str, Any]) -> str | None:
    """The bot's @username (aiogram caches getMe). Unknown: None, which treats every
    mention as another bot's, as the command filters would refuse it too."""
    bot = data.get("bot")
    try:
        me = await bot.me() if bot is not None else None
    except Exception:  # noqa: BLE001 - the Bot API is away; the command cannot be matched
        logger.warning("could not learn the bot's username; a /command@bot is ignored")
        return None
    return None if me is None else me.username


class AllowlistMiddleware(BaseMiddleware):
    """The user, not the chat, is authorized. Strangers get silence (and an audit row)."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        deps: TelegramDeps = data["deps"]
        note: AuditNote = data["note"]
        user: User | None = data.get("event_from_user")
        role = deps.users.get(user.id) if user is not None and not user.is_bot else None
        if user is None or role is None:
            note.done("denied: not in TELEGRAM_ALLOWED_USERS")
            return None
        note.role = ROLE_NAMES[role]
        note.outcome = "ok"
        chat = data.get("event_chat")
        data["ctx"] = Ctx(deps.service, deps.settings, user.id, role,
                          chat.id if chat else None, deps.notifier, deps)
        return await handler(event, data)


class TimingMiddleware(BaseMiddleware):
    slow_ms = 1000.0

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        try:
            return await handler(event, data)
        finally:
            ms = (time.perf_counter() - t0) * 1000
            note: AuditNote | None = data.get("note")
            if ms > self.slow_ms:
                logger.warning("telegram {} took {:.0f} ms", note.command if note else "?", ms)


def confirm_markup(nonce: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text="✅ Confirm", callback_data=f"{CONFIRM}:{nonce}"),
        InlineKeyboardButton(text="✖️ Cancel", callback_data=f"{CANCEL}:{nonce}"),
    ]])


class CommandGate(BaseMiddleware):
    """Role, availability, staleness and the confirmation step, from the handler's flags."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if not isinstance(event, Message):
            return await handler(event, data)
        deps: TelegramDeps = data["deps"]
        ctx: Ctx = data["ctx"]
        note: AuditNote = data["note"]
        cmd: Command | None = get_flag(data, "table_entry")
        reply = await self._decide(handler, event, data, deps, ctx, note, cmd)
        # The outcome is known: the audit row is written now, while the reply travels,
        # not before it (its fsync is not in the operator's round trip) and not after
        # it (a slow delivery, e.g. a 429 wait, does not hold the row back). It is
        # durable before this update is done, so stop() waits for it with the handler.
        audit = asyncio.ensure_future(record(deps, note))
        try:
            if reply is not None and ctx.chat_id is not None:
                msg = await deps.sender.send(ctx.chat_id, reply.text, reply.markup)
                if msg is not None and isinstance(reply.markup, InlineKeyboardMarkup):
                    pending = deps.pending.peek(_nonce_of(reply.markup))
                    if pending is not None:
                        pending.message_id = msg.message_id
                if msg is not None and reply.live_run and deps.live is not None:
                    deps.live.follow(ctx.chat_id, msg.message_id, reply.live_run)
        finally:
            # shield: a handler cancelled at shutdown must not cancel the audit insert
            await asyncio.shield(audit)
        return None

    async def _decide(self, handler: Handler, event: Message, data: dict[str, Any],
                      deps: TelegramDeps, ctx: Ctx, note: AuditNote,
                      cmd: Command | None) -> Reply | None:
        if cmd is None:  # fallback handlers: unknown commands, plain text
            if forwarded(event):
                note.done("ignored: forwarded")
                return None
            result = await handler(event, data)
            if isinstance(result, Reply):
                note.done(result.outcome)
                return result
            note.done("ignored")
            return None
        note.command = cmd.name
        if forwarded(event):
            note.done("refused: forwarded")
            return Reply(f"a forwarded /{cmd.name} is not run: it carries someone else's "
                         "words and time. Nothing changed; type it yourself if you mean it.")
        if ctx.role < cmd.min_role:
            note.done(f"refused: needs {ROLE_NAMES[cmd.min_role]}")
            return Reply(f"/{cmd.name} needs role {ROLE_NAMES[cmd.min_role]}; "
                         f"you are {ROLE_NAMES[ctx.role]}. Nothing changed.")
        # From when Telegram took the message to when it reached the bot: a forward's
        # date says nothing about when it was meant, and forwards are refused above.
        arrived = note.received if note.received is not None else deps.now()
        age = arrived - event.date.timestamp()
        if cmd.adds_risk and age > deps.stale_after_s:
            note.done(f"dropped: stale ({age:.0f} s old)")
            return Reply(f"ignored /{cmd.name} sent at {ts(event.date.timestamp())}: it is "
                         f"{age:.0f} s old (limit {deps.stale_after_s:.0f} s). "
                         "Nothing changed; send it again if you still mean it.")
        try:
            result = await handler(event, data)
        except UsageError as exc:
            note.done(f"bad input: {exc}")
            return Reply(f"{h(exc)}\nNothing changed.")
        except ServiceError as exc:
            note.done(f"refused: {exc}")
            return Reply(f"refused: {h(exc)}")
        if isinstance(result, Plan):
            if not cmd.adds_risk:  # defensive: a plan for a one-step command runs now
                return await self._execute_now(result, ctx, note)
            pending = deps.pending.create(ctx.user_id, ctx.chat_id, result,
                                          epoch=deps.service.state.epoch)
            note.args = {"pending": pending.id, **result.args}
            note.done(f"awaiting confirmation #{pending.id}")
            secs = int(deps.pending.ttl_s)
            return Reply(f"<b>Confirm /{h(cmd.name)}?</b>\n{result.impact}\n"
                         f"<i>Only you can confirm; expires in {secs} s.</i>",
                         markup=confirm_markup(pending.nonce))
        if cmd.adds_risk and isinstance(result, Reply) and result.outcome == "ok":
            # A risk command must never act without the confirmation step.
            logger.error("handler for /{} returned a Reply, not a Plan", cmd.name)
            note.done("error: risk handler without plan")
            return Reply("internal error: this command needs a confirmation step")
        if isinstance(result, Reply):
            note.done(result.outcome)
            return result
        note.done("ok")
        return None

    @staticmethod
    async def _execute_now(plan: Plan, ctx: Ctx, note: AuditNote) -> Reply:
        try:
            result = await plan.execute(ctx)
        except ServiceError as exc:
            note.done(f"refused: {exc}")
            return Reply(f"refused: {h(exc)}")
        note.done(result.outcome)
        return result


def _nonce_of(markup: InlineKeyboardMarkup) -> str:
    data = markup.inline_keyboard[0][0].callback_data or ""
    return data.partition(":")[2]
