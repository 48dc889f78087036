"""A minimal Telegram Bot API for drills: enough for preflight's getMe, the
notifier's messages and a polling bot that receives nothing unless the drill
queues updates. Everything sent is kept for `GET /admin/telegram`.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web


class TelegramApi:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._new = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/bot{token}/{method}", self.call),
                web.get("/admin/telegram", self.admin_sent),
                web.post("/admin/telegram/updates", self.admin_enqueue)]

    async def call(self, request: web.Request) -> web.Response:
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
            return _ok(await self._get_updates(params))
        self.sent.append({"method": method, "params": params, "ts": time.time()})
        if method in ("sendMessage", "sendPhoto", "sendDocument", "editMessageText"):
            return _ok({"message_id": next(self._ids), "date": int(time.time()),
                        "chat": {"id": int(params.get("chat_id") or 0), "type": "private"},
                        "text": params.get("text", "")})
        return _ok(True)

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
        update = await request.json()
        update.setdefault("update_id", len(self.updates) + 1)
        self.updates.append(update)
        self._new.set()
        return web.json_response({"queued": update["update_id"]})


def _ok(result: Any) -> web.Response:
    return web.Response(text=json.dumps({"ok": True, "result": result}),
                        content_type="application/json")
