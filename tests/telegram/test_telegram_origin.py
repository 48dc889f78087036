"""Where the bot answers and whom it believes, over the real aiogram Bot and Dispatcher
polling the Bot API stand-in: only its chats, never another bot's commands, never an
anonymous admin or a forward, and a Confirm must come from a chat."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from core.config.check import parse_chat_list
from tests.telegram.tg_support import ALERT_CHAT, OPERATOR, VIEWER, Env, telegram_env

pytestmark = [pytest.mark.timeout(60)]

OPS_GROUP = -100777  # listed in ARBOPS_TELEGRAM_ALLOWED_CHATS
OTHER_GROUP = -100999  # an unrelated group an operator is also in
GROUP_ANONYMOUS_BOT = 1087968824


async def settle(env: Env, rows: int) -> None:
    await env.fake.wait_for(lambda: len(env.audit()) >= rows, what=f"{rows} audit rows")
    await env.fake.wait_for(lambda: not env.fake.updates, what="updates consumed")
    await env.fake.wait_for(lambda: not env.app.deps.inflight, what="handlers done")


def sent_to(env: Env, chat: int) -> list[str]:
    return [str(c.params.get("text")) for c in env.fake.calls_to("sendMessage", ok_only=False)
            if int(c.params["chat_id"]) == chat]


async def test_answers_only_in_its_chats(tmp_path: Path) -> None:
    async with telegram_env(tmp_path, settings_kw={
            "telegram_allowed_chats": f"{OPS_GROUP}"}) as env:
        fake = env.fake
        fake.send_text(OPERATOR, "/balance", chat_id=OTHER_GROUP)
        fake.send_text(OPERATOR, "/pause here", chat_id=OTHER_GROUP)
        await settle(env, 2)
        fake.send_text(OPERATOR, "/whoami", chat_id=OPS_GROUP)
        fake.send_text(VIEWER, "/whoami", chat_id=ALERT_CHAT)
        fake.send_text(OPERATOR, "/whoami")  # the operator's private chat
        await fake.wait_text(OPS_GROUP, "operator")
        await fake.wait_text(ALERT_CHAT, "viewer")
        await fake.wait_text(OPERATOR, "operator")
        await settle(env, 5)
        assert sent_to(env, OTHER_GROUP) == []  # not even a refusal: nothing posted there
        assert str(env.service.state.state) == "ACTIVE"
        rows = [(r["command"], r["chat_id"], r["outcome"]) for r in env.audit()][:2]
        assert rows == [("balance", str(OTHER_GROUP), "denied: chat not allowed"),
                        ("pause", str(OTHER_GROUP), "denied: chat not allowed")]


async def test_commands_for_another_bot_are_ignored_and_not_audited(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(OPERATOR, "/kill@otherbot now")
        fake.send_text(OPERATOR, "/status@OtherBot")
        fake.send_text(OPERATOR, "/whoami@arbops_stand_in_bot")  # ours, any case
        fake.send_text(OPERATOR, "/WHOAMI@ARBOPS_STAND_IN_BOT")
        await fake.wait_for(lambda: len(env.audit()) >= 2, what="our two commands")
        await settle(env, 2)
        await asyncio.sleep(0.2)
        assert str(env.service.state.state) == "ACTIVE"
        assert [r["command"] for r in env.audit()] == ["whoami", "whoami"]
        assert len(fake.texts(OPERATOR)) == 2
        assert all("operator" in t for t in fake.texts(OPERATOR))


def anonymous_admin(env: Env, text: str, chat: int = ALERT_CHAT) -> dict[str, Any]:
    update = env.fake.text_update(OPERATOR, text, chat_id=chat)
    msg = update["message"]
    msg["from"] = {"id": GROUP_ANONYMOUS_BOT, "is_bot": True, "first_name": "Group",
                   "username": "GroupAnonymousBot"}
    msg["sender_chat"] = {"id": chat, "type": "supergroup", "title": "ops"}
    return update


async def test_anonymous_admin_kill_gets_a_visible_refusal_and_nothing_runs(
        tmp_path: Path) -> None:
    async with telegram_env(tmp_path, settings_kw={
            "telegram_allowed_chats": f"{OPS_GROUP}"}) as env:
        fake = env.fake
        fake.enqueue(anonymous_admin(env, "/kill someone pressed it"))
        text = await fake.wait_text(ALERT_CHAT, "I can't tell who you are")
        assert "send it from your own account" in text
        fake.enqueue(anonymous_admin(env, "/kill in a strange group", chat=OTHER_GROUP))
        fake.enqueue(anonymous_admin(env, "just chatting", chat=OPS_GROUP))
        await settle(env, 3)
        await asyncio.sleep(0.2)
        assert str(env.service.state.state) == "ACTIVE"
        assert sent_to(env, OTHER_GROUP) == [] and sent_to(env, OPS_GROUP) == []
        outcomes = [r["outcome"] for r in env.audit()]
        assert outcomes == ["refused: anonymous sender", "denied: chat not allowed",
                            "ignored: anonymous sender"]


def forwarded(env: Env, text: str, original: float) -> dict[str, Any]:
    update = env.fake.text_update(OPERATOR, text)
    update["message"]["forward_origin"] = {"type": "user", "date": int(original),
                                           "sender_user": {"id": VIEWER, "is_bot": False,
                                                           "first_name": "someone"}}
    return update


async def test_forwarded_commands_are_refused(tmp_path: Path) -> None:
    """A day-old /pause forwarded now arrives fresh: it is refused as a forward."""
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        day_ago = time.time() - 86_400
        fake.enqueue(forwarded(env, "/pause from yesterday", day_ago))
        text = await fake.wait_text(OPERATOR, "forwarded /pause is not run")
        assert "Nothing changed" in text
        fake.enqueue(forwarded(env, "/kill old news", day_ago))
        await fake.wait_text(OPERATOR, "forwarded /kill is not run")
        await settle(env, 2)
        assert str(env.service.state.state) == "ACTIVE"
        assert [r["outcome"] for r in env.audit()] == ["refused: forwarded"] * 2


async def test_staleness_is_the_age_on_arrival_and_is_named(tmp_path: Path) -> None:
    """The age runs from Telegram's stamp to when the update reached the bot: a fresh
    /run gets its prompt, a 120 s old one is dropped naming its age."""
    clock = [time.time()]
    async with telegram_env(tmp_path, now=lambda: clock[0]) as env:
        fake = env.fake
        clock[0] = float(int(time.time()))  # whole seconds, as Telegram's dates are
        fake.send_text(OPERATOR, "/run 1 paper 30", date=clock[0] - 5)
        await fake.wait_text(OPERATOR, "Confirm /run")
        fake.send_text(OPERATOR, "/run 1 paper 30", date=clock[0] - 120)
        await fake.wait_text(OPERATOR, "ignored /run")
        await settle(env, 2)
        outcomes = [r["outcome"] for r in env.audit()]
        assert outcomes[0].startswith("awaiting confirmation")
        assert outcomes[1].startswith("dropped: stale (120 s old)")


async def test_a_confirm_without_a_message_is_refused(tmp_path: Path) -> None:
    async with telegram_env(tmp_path) as env:
        fake = env.fake
        fake.send_text(OPERATOR, "/run 1 paper 30")
        await fake.wait_text(OPERATOR, "Confirm /run")
        data = fake.buttons(fake.last_markup_message(OPERATOR))["✅ Confirm"]
        fake.press_inline(OPERATOR, data)
        await fake.wait_for(lambda: fake.calls_to("answerCallbackQuery"), what="the answer")
        await settle(env, 2)
        answer = str(fake.calls_to("answerCallbackQuery")[0].params.get("text"))
        assert "nothing changed" in answer
        assert env.service.current is None
        assert env.audit()[-1]["outcome"] == "refused: no message"
        # the prompt still works from its own chat
        fake.press_confirm(OPERATOR)
        await fake.wait_for(lambda: env.service.status()["run"] is not None, what="the run")


@pytest.mark.parametrize(("text", "chats", "problems"), [
    ("", set(), 0), ("-100123, 42", {-100123, 42}, 0), ("-100123;7", {-100123, 7}, 0),
    ("abc", set(), 1), ("-0", set(), 1), ("12.5,-7", {-7}, 1), ("٣", set(), 1),
    ("--5", set(), 1), ("+5", set(), 1),
])
def test_allowed_chats_parse_fail_closed(text: str, chats: set[int], problems: int) -> None:
    got, found = parse_chat_list(text)
    assert got == chats and len(found) == problems
