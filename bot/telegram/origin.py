"""Where an update comes from and who sent it, decided before anything else.

- A command addressed to another bot (`/kill@otherbot`) is not ours: no reply, no
  audit row (`addressed_elsewhere`, used by the audit middleware).
- The bot answers only in TELEGRAM_CHAT_ID, in ARBOPS_TELEGRAM_ALLOWED_CHATS and in
  private chats; anywhere else it stays silent, so a read such as /balance typed in
  an unrelated group never posts there (`OriginMiddleware`).
- A command from a group's anonymous admin (sent as the group, or through Telegram's
  own accounts) cannot be tied to a person: it is refused with a visible reply, so
  the group knows that nothing happened.
- A forwarded command is someone else's words at someone else's time: refused
  (`forwarded`, applied by the command gate once the sender is known).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Chat, Message, TelegramObject

from bot.telegram.context import AuditNote, TelegramDeps
from core.config.check import KNOWN_BOT_IDS

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

ANONYMOUS_REPLY = ("I can't tell who you are: send it from your own account. "
                   "Nothing was done.")


def command_mention(text: str | None) -> str | None:
    """"kill@otherbot ..." -> "otherbot"; None for text that is not a command or
    names no bot."""
    if not text or not text.startswith("/"):
        return None
    head = text.split(maxsplit=1)[0]
    _, at, mention = head.partition("@")
    return mention if at and mention else None


def addressed_elsewhere(text: str | None, our_username: str | None) -> bool:
    mention = command_mention(text)
    if mention is None:
        return False
    return our_username is None or mention.lower() != our_username.lower()


def anonymous(message: Message) -> bool:
    """Sent as a chat (an anonymous admin, a channel) or through Telegram's own accounts."""
    user = message.from_user
    return message.sender_chat is not None or user is None or user.id in KNOWN_BOT_IDS


def forwarded(message: Message) -> bool:
    return bool(message.forward_origin is not None or message.is_automatic_forward
                or message.forward_date is not None or message.forward_from is not None
                or message.forward_from_chat is not None)


def chat_allowed(chat: Chat, allowed: frozenset[int]) -> bool:
    """A listed chat, or a private one (whose user the allowlist then checks)."""
    return chat.id in allowed or chat.type == "private"


class OriginMiddleware(BaseMiddleware):
    """Between the audit and the allowlist: the chat, then the sender's identity."""

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        deps: TelegramDeps = data["deps"]
        note: AuditNote = data["note"]
        chat: Chat | None = data.get("event_chat")
        if chat is not None and not chat_allowed(chat, deps.allowed_chats):
            note.done("denied: chat not allowed")
            return None
        if isinstance(event, Message) and anonymous(event):
            if not (event.text or "").startswith("/"):
                note.done("ignored: anonymous sender")
                return None
            note.done("refused: anonymous sender")
            await deps.sender.send(event.chat.id, ANONYMOUS_REPLY)
            return None
        return await handler(event, data)
