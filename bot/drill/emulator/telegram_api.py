"""The Telegram Bot API stand-in: arbops' one local fake of the Bot API.

A bot reaches it through `TELEGRAM_API_BASE` (aiogram's
`TelegramAPIServer.from_base`); any token in the URL is accepted. Three users:
- the tests that run the real aiogram stack: `async with BotApiStandIn() as api`
  serves it alone on a free port; they play the user (`send_text`, `press`,
  `press_confirm`), read what the bot did (`calls`, `texts`, `wait_text`) and
  inject faults;
- `arbops drill`: the exchange emulator mounts `routes()` next to the venues, and
  the rehearsal reads `GET /admin/telegram`;
- benchmarks/telegram.py: `start()` in a child process, `enqueue()` an update and
  await `next_call()`, whose `Call.perf` is the perf_counter when the reply arrived.

It implements what arbops uses: getMe, getUpdates (long poll with offset/timeout),
sendMessage, editMessageText, answerCallbackQuery, sendPhoto, sendDocument,
setMyCommands, deleteWebhook, setWebhook, getWebhookInfo; any other method is a
404, as Telegram answers. It checks what the real API checks where it matters
here (HTML entities, text length, callback_data size, command names), so a message
Telegram would refuse fails in a test or a drill, not in production. Every request
is recorded as a `Call`.

Faults can be injected per method: `429` (with `parameters.retry_after`), `5xx`,
`403`, `timeout` (the response is held back longer than the client waits) and
`html` (a proxy's HTML error page instead of JSON).

Admin endpoints (for a drill driving it over HTTP):
GET  /admin/telegram          -> {"sent": [{"method","params","ts","perf","status"}]}
                                 every call except getMe/getUpdates; methods lowercase
POST /admin/telegram/updates  an Update object -> {"queued": update_id}

Only aiohttp and core.http_listener: the stand-in must not need aiogram (the bot
under test brings its own) nor any of core's machinery.
"""
from __future__ import annotations

import asyncio
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from core.http_listener import listen

BOT_ID = 4242
# A well-formed token for clients that need one (aiogram parses it); any is accepted.
TOKEN = f"{BOT_ID}:TEST-fake-token-for-arbops-tests"
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "arbops",
            "username": "arbops_stand_in_bot"}
# Not part of GET /admin/telegram's "sent": a polling bot would fill it with getUpdates.
_POLLING = ("getme", "getupdates")
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre",
                 "a", "tg-spoiler", "blockquote", "span"}
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_TAG = re.compile(r"</?([a-zA-Z-]+)(\s[^<>]*)?>")
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


@dataclass
class Call:
    """One request the stand-in received, as the bot sent it."""

    method: str  # lowercase: Telegram's method names are case-insensitive
    params: dict[str, Any]
    t: float  # wall clock when it arrived
    perf: float = 0.0  # perf_counter when it arrived, before its body was read
    status: int = 200  # the HTTP status it was answered with (200 until answered)
    files: list[str] = field(default_factory=list)  # uploaded file names

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method, "params": self.params, "ts": self.t,
                "perf": self.perf, "status": self.status}


@dataclass
class Fault:
    kind: str  # "429" | "5xx" | "403" | "timeout" | "html"
    times: int | None = 1  # None: every call until cleared
    retry_after: int = 1
    delay_s: float = 3.0


def html_problem(text: str) -> str | None:
    """Why Telegram would refuse this text with parse_mode=HTML, or None."""
    stack: list[str] = []
    pos = 0
    while True:
        i = text.find("<", pos)
        j = text.find("&", pos)
        if i < 0 and j < 0:
            break
        if j >= 0 and (i < 0 or j < i):
            if not _ENTITY.match(text, j):
                return f"Can't find end of the entity starting at byte offset {j}"
            pos = j + 1
            continue
        m = _TAG.match(text, i)
        if not m or m.group(1).lower() not in _ALLOWED_TAGS:
            return f"Unsupported start tag at byte offset {i}"
        name = m.group(1).lower()
        if m.group(0).startswith("</"):
            if not stack or stack.pop() != name:
                return f"Unmatched end tag at byte offset {i}"
        else:
            stack.append(name)
        pos = m.end()
    if stack:
        return f"Can't find end tag corresponding to start tag {stack[-1]}"
    return None


def _plain(text: str) -> str:
    """The visible text of HTML-formatted text: tags dropped, entities decoded."""
    return html.unescape(_TAG.sub("", text))


def _is_html(parse_mode: Any) -> bool:
    return bool(parse_mode) and str(parse_mode).upper() == "HTML"


def visible_length(text: str, parse_mode: str | None) -> int:
    """What Telegram's length limits count: the text the user sees."""
    return len(_plain(text)) if _is_html(parse_mode) else len(text)


class BotApiStandIn:
    def __init__(self, max_poll_s: float = 1.0) -> None:
        # Telegram holds a long poll for the client's whole timeout; capping it keeps a
        # bot that is shutting down (a test's teardown, serve's exit) from waiting long.
        self.max_poll_s = max_poll_s
        self.calls: list[Call] = []
        self.faults: dict[str, list[Fault]] = {}
        self.updates: list[dict[str, Any]] = []  # queued, not yet confirmed by an offset
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.commands: list[dict[str, Any]] = []
        self.webhook: str = ""
        self.webhook_secret: str | None = None
        # Where updates are POSTed while a webhook is set: the bot's listener, as a
        # TLS proxy in front of it would forward them (the registered URL is public).
        self.webhook_target: str | None = None
        self.pushed: list[tuple[int, int]] = []  # (update_id, HTTP status) per webhook push
        self._push_tasks: set[asyncio.Task[None]] = set()
        self._waiters: list[tuple[Callable[[Call], bool], asyncio.Future[Call]]] = []
        self._next_update = 1
        self._next_message = 100
        self._new_update = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        """The Bot API and the admin endpoints, to mount into another app (the exchange
        emulator's); that app's shutdown should `await close()` to end pending polls."""
        return [web.route("*", "/bot{token}/{method}", self._handle),
                web.get("/admin/telegram", self._admin_sent),
                web.post("/admin/telegram/updates", self._admin_enqueue)]

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> BotApiStandIn:
        """Serve alone on host:port (0: a free port); `url` says where."""
        app = web.Application()
        app.add_routes(self.routes())
        self._runner, bound = await listen(app, host, port, shutdown_timeout=0.5)
        self.url = f"http://{host}:{bound}"
        return self

    async def close(self) -> None:
        """End pending long polls, held faults and webhook pushes, then stop serving if
        `start()` did. Pending polls first: the listener waits for open requests."""
        self._closing.set()
        self._new_update.set()
        for task in list(self._push_tasks):
            task.cancel()
        await asyncio.gather(*self._push_tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> BotApiStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- faults -----------------------------------------------------------------------
    def inject(self, method: str, kind: str, *, times: int | None = 1, retry_after: int = 1,
               delay_s: float = 3.0) -> None:
        self.faults.setdefault(method.lower(), []).append(
            Fault(kind, times, retry_after, delay_s))

    def clear_faults(self, method: str | None = None) -> None:
        if method is None:
            self.faults.clear()
        else:
            self.faults.pop(method.lower(), None)

    def _take_fault(self, method: str) -> Fault | None:
        faults = self.faults.get(method)
        if not faults:
            return None
        f = faults[0]
        if f.times is not None:
            f.times -= 1
            if f.times <= 0:
                faults.pop(0)
        return f

    # --- updates, as a user would cause them -----------------------------------------
    def enqueue(self, update: dict[str, Any]) -> int:
        """Deliver an Update (its update_id is assigned here, in order, as getUpdates'
        offset needs): POSTed to the webhook if one is set, else queued for getUpdates,
        where a pending long poll returns it at once."""
        update["update_id"] = self._next_update
        self._next_update += 1
        if self.webhook and self.webhook_target:
            task = asyncio.get_running_loop().create_task(self._push(update))
            self._push_tasks.add(task)
            task.add_done_callback(self._push_tasks.discard)
        else:
            self.updates.append(update)
            self._new_update.set()
        return int(update["update_id"])

    async def _push(self, update: dict[str, Any]) -> None:
        """Deliver like Telegram does to a webhook: POST with the secret header."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": self.webhook_secret or ""}
        async with aiohttp.ClientSession() as http, http.post(
                str(self.webhook_target), json=update, headers=headers) as resp:
            self.pushed.append((int(update["update_id"]), resp.status))

    def send_text(self, user_id: int, text: str, *, chat_id: int | None = None,
                  date: float | None = None, first_name: str = "tester") -> int:
        """The user `user_id` sends `text` (a private chat unless chat_id is given)."""
        return self.enqueue(self.text_update(user_id, text, chat_id=chat_id, date=date,
                                             first_name=first_name))

    def text_update(self, user_id: int, text: str, *, chat_id: int | None = None,
                    date: float | None = None, first_name: str = "tester") -> dict[str, Any]:
        """The update `send_text` delivers, built but not delivered (no update_id yet)."""
        chat = chat_id if chat_id is not None else user_id
        msg: dict[str, Any] = {
            "message_id": self._msg_id(),
            "date": int(date if date is not None else time.time()),
            "chat": {"id": chat, "type": "private" if chat == user_id else "group",
                     **({"first_name": first_name} if chat == user_id else {"title": "ops"})},
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        if text.startswith("/"):
            msg["entities"] = [{"type": "bot_command", "offset": 0,
                                "length": len(text.split()[0])}]
        return {"message": msg}

    def press(self, user_id: int, data: str, message: dict[str, Any] | None = None,
              chat_id: int | None = None) -> int:
        """The user presses an inline button carrying `data` under `message`."""
        if message is None:
            chat = chat_id if chat_id is not None else user_id
            message = {"message_id": self._msg_id(), "date": int(time.time()),
                       "chat": {"id": chat, "type": "private"}, "from": BOT_USER, "text": "?"}
        return self.enqueue({"callback_query": {
            "id": f"cq{self._next_update}", "chat_instance": "ci",
            "from": {"id": user_id, "is_bot": False, "first_name": "tester"},
            "message": message, "data": data}})

    def press_inline(self, user_id: int, data: str) -> int:
        """A press on a button of an inline-mode message: Telegram sends no message and
        no chat, only an inline_message_id."""
        return self.enqueue({"callback_query": {
            "id": f"cq{self._next_update}", "chat_instance": "ci",
            "from": {"id": user_id, "is_bot": False, "first_name": "tester"},
            "inline_message_id": f"inline{self._next_update}", "data": data}})

    def press_confirm(self, user_id: int) -> int:
        """`user_id` presses Confirm under the last prompt the bot sent them."""
        msg = self.last_markup_message(user_id)
        return self.press(user_id, self.buttons(msg)["✅ Confirm"], msg)

    # --- what the bot did -------------------------------------------------------------
    def calls_to(self, method: str, ok_only: bool = True) -> list[Call]:
        m = method.lower()
        return [c for c in self.calls if c.method == m and (c.status == 200 or not ok_only)]

    def texts(self, chat_id: int | None = None) -> list[str]:
        """What the user saw: every delivered sendMessage/editMessageText (to chat_id if
        given), HTML rendered to its visible text."""
        out = []
        for c in self.calls:
            if c.status == 200 and c.method in ("sendmessage", "editmessagetext") and (
                    chat_id is None or int(c.params.get("chat_id", 0)) == chat_id):
                text = str(c.params.get("text", ""))
                out.append(_plain(text) if _is_html(c.params.get("parse_mode")) else text)
        return out

    def last_markup_message(self, chat_id: int) -> dict[str, Any]:
        """The newest message to chat_id that carries inline buttons."""
        for (chat, _mid), msg in sorted(self.messages.items(), key=lambda kv: -kv[0][1]):
            if chat == chat_id and msg.get("reply_markup"):
                return msg
        raise AssertionError(f"no message with buttons in chat {chat_id}: {self.texts(chat_id)}")

    @staticmethod
    def buttons(message: dict[str, Any]) -> dict[str, str]:
        """{button text: callback_data}"""
        rows = message["reply_markup"]["inline_keyboard"]
        return {b["text"]: b["callback_data"] for row in rows for b in row}

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0,
                       what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; texts so far: {self.texts()}")

    async def wait_text(self, chat_id: int, needle: str, timeout: float = 10.0) -> str:
        def find() -> str | None:
            return next((t for t in self.texts(chat_id) if needle in t), None)
        return str(await self.wait_for(find, timeout, f"{needle!r} in chat {chat_id}"))

    def next_call(self, match: Callable[[Call], bool]) -> asyncio.Future[Call]:
        """A future for the next call `match` accepts, resolved once it is answered.
        For a measuring driver (benchmarks/telegram.py): no polling of `calls`, and
        `Call.perf` says when the request arrived, not when the future woke it."""
        fut: asyncio.Future[Call] = asyncio.get_running_loop().create_future()
        self._waiters.append((match, fut))
        return fut

    def _resolve(self, call: Call) -> None:
        keep = []
        for match, fut in self._waiters:
            if fut.done():  # cancelled or timed out by its awaiter
                continue
            if match(call):
                fut.set_result(call)
            else:
                keep.append((match, fut))
        self._waiters = keep

    # --- the admin endpoints ----------------------------------------------------------
    async def _admin_sent(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"sent": [c.as_json() for c in self.calls if c.method not in _POLLING]})

    async def _admin_enqueue(self, request: web.Request) -> web.Response:
        return web.json_response({"queued": self.enqueue(await request.json())})

    # --- the HTTP side --------------------------------------------------------------
    def _msg_id(self) -> int:
        self._next_message += 1
        return self._next_message

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _err(code: int, description: str, **parameters: Any) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=code)

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], list[str]]:
        """Query, JSON or form parameters (aiogram sends forms; uploads are multipart),
        with JSON-serialized fields (reply_markup, commands) decoded as Telegram does."""
        params: dict[str, Any] = dict(request.query)
        files: list[str] = []
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                post = await request.post()
                for key, value in post.items():
                    if isinstance(value, web.FileField):
                        value.file.read()
                        files.append(value.filename)
                        params[key] = f"<file {value.filename}>"
                    else:
                        params[key] = value
        for key, value in list(params.items()):
            if isinstance(value, str) and value[:1] in "[{":
                try:
                    params[key] = json.loads(value)
                except ValueError:
                    pass
        return params, files

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.perf_counter()  # before the body is read: "the request arrived"
        method = request.match_info["method"].lower()
        params, files = await self._params(request)
        call = Call(method, params, time.time(), arrived, files=files)
        self.calls.append(call)
        response = await self._answer(call)
        call.status = response.status
        self._resolve(call)
        return response

    async def _answer(self, call: Call) -> web.Response:
        fault = self._take_fault(call.method)
        if fault is not None:
            return await self._fault(fault)
        handler = getattr(self, f"_m_{call.method}", None)
        if handler is None:
            return self._err(404, "Not Found: method not found")
        response: web.Response = await handler(call.params)
        return response

    async def _fault(self, fault: Fault) -> web.Response:
        if fault.kind == "429":
            return self._err(429, f"Too Many Requests: retry after {fault.retry_after}",
                             retry_after=fault.retry_after)
        if fault.kind == "403":
            return self._err(403, "Forbidden: bot was kicked from the group chat")
        if fault.kind == "5xx":
            return self._err(502, "Bad Gateway")
        if fault.kind == "html":
            return web.Response(status=502, text="<html>502 Bad Gateway</html>",
                                content_type="text/html")
        if fault.kind == "timeout":
            try:
                await asyncio.wait_for(self._closing.wait(), fault.delay_s)
            except TimeoutError:
                pass
            return self._err(504, "Gateway Timeout")
        raise ValueError(f"unknown fault {fault.kind}")

    # --- methods --------------------------------------------------------------------
    async def _m_getme(self, p: dict[str, Any]) -> web.Response:
        return self._ok(BOT_USER)

    async def _m_getupdates(self, p: dict[str, Any]) -> web.Response:
        if self.webhook:
            return self._err(409, "Conflict: can't use getUpdates method while webhook is active;"
                             " use deleteWebhook to delete the webhook first")
        offset = int(p.get("offset") or 0)
        if offset:  # the bot confirms everything below offset: Telegram forgets it
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        timeout = min(float(p.get("timeout") or 0), self.max_poll_s)
        deadline = time.monotonic() + timeout
        while not self.updates and not self._closing.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._new_update.clear()
            try:
                await asyncio.wait_for(self._new_update.wait(), left)
            except TimeoutError:
                break
        return self._ok(self.updates[: int(p.get("limit") or 100)])

    def _check_text(self, text: str, parse_mode: str | None) -> web.Response | None:
        if not text:
            return self._err(400, "Bad Request: message text is empty")
        if _is_html(parse_mode):
            problem = html_problem(text)
            if problem:
                return self._err(400, f"Bad Request: can't parse entities: {problem}")
        if visible_length(text, parse_mode) > 4096:
            return self._err(400, "Bad Request: message is too long")
        return None

    def _check_markup(self, markup: Any) -> web.Response | None:
        if not markup:
            return None
        for row in markup.get("inline_keyboard", []):
            for b in row:
                if len(str(b.get("callback_data", "")).encode()) > 64:
                    return self._err(400, "Bad Request: BUTTON_DATA_INVALID")
        return None

    def _new_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        """A message from the bot to chat_id, kept for later edits and button presses."""
        msg: dict[str, Any] = {"message_id": self._msg_id(), "date": int(time.time()),
                               "chat": {"id": chat_id, "type": "private"}, "from": BOT_USER,
                               **content}
        self.messages[(chat_id, msg["message_id"])] = msg
        return msg

    async def _m_sendmessage(self, p: dict[str, Any]) -> web.Response:
        text = str(p.get("text", ""))
        bad = self._check_text(text, p.get("parse_mode")) or self._check_markup(
            p.get("reply_markup"))
        if bad is not None:
            return bad
        markup = {"reply_markup": p["reply_markup"]} if p.get("reply_markup") else {}
        return self._ok(self._new_message(
            int(p["chat_id"]), text=_plain(text) if p.get("parse_mode") else text, **markup))

    async def _m_editmessagetext(self, p: dict[str, Any]) -> web.Response:
        text = str(p.get("text", ""))
        bad = self._check_text(text, p.get("parse_mode")) or self._check_markup(
            p.get("reply_markup"))
        if bad is not None:
            return bad
        key = (int(p["chat_id"]), int(p["message_id"]))
        msg = self.messages.get(key)
        if msg is None:
            return self._err(400, "Bad Request: message to edit not found")
        new_text = _plain(text) if p.get("parse_mode") else text
        if new_text == msg["text"] and p.get("reply_markup") == msg.get("reply_markup"):
            return self._err(400, "Bad Request: message is not modified")
        msg["text"] = new_text
        if p.get("reply_markup"):
            msg["reply_markup"] = p["reply_markup"]
        else:
            msg.pop("reply_markup", None)
        msg["edit_date"] = int(time.time())
        return self._ok(msg)

    async def _m_answercallbackquery(self, p: dict[str, Any]) -> web.Response:
        if len(str(p.get("text") or "")) > 200:
            return self._err(400, "Bad Request: MESSAGE_TOO_LONG")
        return self._ok(True)

    async def _m_sendphoto(self, p: dict[str, Any]) -> web.Response:
        caption = str(p.get("caption") or "")
        if caption and p.get("parse_mode") and html_problem(caption):
            return self._err(400, "Bad Request: can't parse entities in caption")
        if visible_length(caption, p.get("parse_mode")) > 1024:
            return self._err(400, "Bad Request: message caption is too long")
        photo = [{"file_id": "f1", "file_unique_id": "u1", "width": 1, "height": 1}]
        return self._ok(self._new_message(int(p["chat_id"]), photo=photo, caption=caption))

    async def _m_senddocument(self, p: dict[str, Any]) -> web.Response:
        document = {"file_id": "d1", "file_unique_id": "du1"}
        return self._ok(self._new_message(int(p["chat_id"]), document=document))

    async def _m_setmycommands(self, p: dict[str, Any]) -> web.Response:
        commands = p.get("commands") or []
        for c in commands:
            if not _COMMAND.match(str(c.get("command", ""))) or not (
                    1 <= len(str(c.get("description", ""))) <= 256):
                return self._err(400, f"Bad Request: BOT_COMMAND_INVALID {c}")
        self.commands = list(commands)
        return self._ok(True)

    async def _m_deletewebhook(self, p: dict[str, Any]) -> web.Response:
        self.webhook = ""
        self.webhook_secret = None
        if str(p.get("drop_pending_updates", "")).lower() == "true":
            self.updates.clear()
        return self._ok(True)

    async def _m_setwebhook(self, p: dict[str, Any]) -> web.Response:
        secret = p.get("secret_token")
        if secret is not None and not _SECRET_TOKEN.fullmatch(str(secret)):
            return self._err(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = str(p.get("url", ""))
        self.webhook_secret = None if secret is None else str(secret)
        return self._ok(True)

    async def _m_getwebhookinfo(self, p: dict[str, Any]) -> web.Response:
        return self._ok({"url": self.webhook, "has_custom_certificate": False,
                         "pending_update_count": len(self.updates)})


__all__ = ["BOT_ID", "BOT_USER", "TOKEN", "BotApiStandIn", "Call", "Fault", "html_problem",
           "visible_length"]
