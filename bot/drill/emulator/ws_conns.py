"""One websocket client connection of the emulator's streams (public books and
private orders alike): an outgoing queue drained by a writer task, so a venue's
event fans out to every connection without waiting for any, and a client that
stops reading is dropped once its queue is full, as a venue drops it."""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

QUEUE_MAX = 10_000


@dataclass(eq=False)
class WsConn:
    venue: str
    ws: web.WebSocketResponse
    queue: asyncio.Queue[str | bytes | None] = field(default_factory=asyncio.Queue)

    def push(self, msg: str | bytes) -> None:
        if self.queue.qsize() >= QUEUE_MAX:
            self.queue.put_nowait(None)  # the writer closes it
            return
        self.queue.put_nowait(msg)


async def serve(conns: set[Any], c: WsConn,
                on_text: Callable[[Any, str], Awaitable[bool]]) -> web.WebSocketResponse:
    """Read the client's requests (text or binary) until it leaves or `on_text`
    says to hang up; its writer runs meanwhile."""
    conns.add(c)
    writer = asyncio.create_task(_writer(c))
    try:
        async for msg in c.ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = msg.data if isinstance(msg.data, str) else msg.data.decode()
                if not await on_text(c, data):
                    break
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break
    finally:
        conns.discard(c)
        c.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await writer
        await c.ws.close()
    return c.ws


async def close_all(conns: Iterable[WsConn], venue: str) -> int:
    """The `disconnect` fault: every connection of a venue closed."""
    gone = [c for c in conns if c.venue == venue]
    for c in gone:
        c.queue.put_nowait(None)
        await c.ws.close()
    return len(gone)


async def _writer(c: WsConn) -> None:
    while True:
        msg = await c.queue.get()
        if msg is None or c.ws.closed:
            await c.ws.close()
            return
        try:
            if isinstance(msg, bytes):
                await c.ws.send_bytes(msg)
            else:
                await c.ws.send_str(msg)
        except (ConnectionError, RuntimeError):
            return
