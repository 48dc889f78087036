"""A minimal Telegram Bot API for drills: enough for preflight's getMe, the
notifier's messages and a polling bot that receives nothing unless the drill
queues updates. Everything sent is kept for `GET /admin/telegram`.

In-process users (benchmarks/telegram.py) can `enqueue()` an update and await
`next_call()` instead of polling `GET /admin/telegram`; `start_telegram_api()`
serves this stand-in alone, without the exchange emulator's market loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from core.http_listener import listen

Record = dict[str, Any]


class TelegramApi:
    def __init__(self) -> None:
        self.sent: list[Record] = []
        self.updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._new = asyncio.Event()
        self._waiters: list[tuple[Callable[[Record], bool], asyncio.Future[Record]]] = []
        self.polls = 0  # getUpdates calls received (a long poll is pending once this moves)

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/bot{token}/{method}", self.call),
                web.get("/admin/telegram", self.admin_sent),
                web.post("/admin/telegram/updates", self.admin_enqueue)]

    async def call(self, request: web.Request) -> web.Response:
        arrived = time.perf_counter()  # before the body is read: "the request arrived"
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update({k: v for k, v in (await request.post()).items()
                               if isinstance(v, str)})
        if method == "getMe":
            return _ok({"id": 4242, "is_bot": True, "first_name": "arbops drill",
                        "username": "arbops_drill_bot"})
        if method == "getUpdates":
            self.polls += 1
            return _ok(await self._get_updates(params))
        record = {"method": method, "params": params, "ts": time.time(), "perf": arrived}
        self.sent.append(record)
        self._resolve(record)
        if method in ("sendMessage", "sendPhoto", "sendDocument", "editMessageText"):
            return _ok({"message_id": next(self._ids), "date": int(time.time()),
                        "chat": {"id": int(params.get("chat_id") or 0), "type": "private"},
                        "text": params.get("text", "")})
        return _ok(True)

    def enqueue(self, update: dict[str, Any]) -> int:
        """Queue an update for the bot's getUpdates (a pending long poll returns it now)."""
        update.setdefault("update_id", len(self.updates) + 1)
        self.updates.append(update)
        self._new.set()
        return int(update["update_id"])

    def next_call(self, match: Callable[[Record], bool]) -> asyncio.Future[Record]:
        """A future for the next recorded call (not getMe/getUpdates) that `match` accepts;
        its record carries `perf`, the perf_counter when the request arrived."""
        fut: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        self._waiters.append((match, fut))
        return fut

    def _resolve(self, record: Record) -> None:
        keep = []
        for match, fut in self._waiters:
            if fut.done():
                continue
            if match(record):
                fut.set_result(record)
            else:
                keep.append((match, fut))
        self._waiters = keep

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = min(float(params.get("timeout") or 0), 10.0)
        pending = [u for u in self.updates if u["update_id"] >= offset]
        if not pending and timeout > 0:
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), timeout)
            except TimeoutError:
                return []
            pending = [u for u in self.updates if u["update_id"] >= offset]
        return pending

    async def admin_sent(self, request: web.Request) -> web.Response:
        return web.json_response({"sent": self.sent})

    async def admin_enqueue(self, request: web.Request) -> web.Response:
        return web.json_response({"queued": self.enqueue(await request.json())})


@dataclasses.dataclass
class TelegramApiHandle:
    url: str
    api: TelegramApi
    _runner: web.AppRunner

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_telegram_api(host: str = "127.0.0.1", port: int = 0) -> TelegramApiHandle:
    """Serve the Bot API stand-in alone (port=0 picks a free one)."""
    api = TelegramApi()
    app = web.Application()
    app.add_routes(api.routes())
    runner, bound = await listen(app, host, port, shutdown_timeout=1.0)
    return TelegramApiHandle(f"http://{host}:{bound}", api, runner)


def _ok(result: Any) -> web.Response:
    return web.Response(text=json.dumps({"ok": True, "result": result}),
                        content_type="application/json")
