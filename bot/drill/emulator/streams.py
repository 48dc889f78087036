"""The venues' public order-book websocket streams, with their real message shapes.

Binance (`/ws`, `/ws/<streams>`, `/stream`): SUBSCRIBE / UNSUBSCRIBE /
LIST_SUBSCRIPTIONS requests answered `{"result": ..., "id": ...}`; diff-depth
events `depthUpdate` (E event time, U first and u final update id, b/a changed
levels with quantity "0" for a removed level) for `<symbol>@depth` and
`<symbol>@depth@100ms`. Update ids are per symbol and advance by one per
changed level; the REST depth answer's lastUpdateId is the same counter, so a
client can apply the documented snapshot + update-id resync. More than 5
incoming messages a second closes the connection, as the venue does.

Upbit (`/websocket/v1`): a JSON array `[{"ticket"}, {"type": "orderbook",
"codes": [...]}, ...]` (many codes in one entry, or one entry per code; a new
request replaces the connection's subscription); every book sent whole, first
`stream_type` SNAPSHOT then REALTIME, in binary frames as Upbit sends them.

Faults for tests and drills: `gap` (the next event of a venue's books is not
sent, its update ids are spent anyway), `disconnect` (every connection of a
venue is closed) and `silence` (connections stay open, nothing is sent).
"""
from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.drill.emulator.numfmt import dec_str
from bot.drill.emulator.ws_conns import WsConn, close_all, serve
from core.domain.models import MarketSnapshot, OrderBook

BINANCE_MAX_MESSAGES_PER_S = 5
BINANCE_MAX_STREAMS = 1024
UPBIT_LEVELS = 15


@dataclass(eq=False)
class _Conn(WsConn):
    combined: bool = False  # Binance /stream: events wrapped in {"stream", "data"}
    streams: set[str] = field(default_factory=set)  # Binance stream names
    codes: list[str] = field(default_factory=list)  # Upbit codes
    only_snapshot: bool = False
    only_realtime: bool = False
    received: deque[float] = field(default_factory=deque)


def _levels(book: OrderBook) -> tuple[dict[float, float], dict[float, float]]:
    return dict(book.bids), dict(book.asks)


def _px(p: float) -> str:
    """A price as the REST depth writes it (the same float once parsed), cheaply:
    every level of 50 books changes every step."""
    r = repr(p)
    return dec_str(p) if "e" in r else r


def _diff(old: dict[float, float], new: dict[float, float]) -> list[list[str]]:
    out = [[_px(p), f"{q:.8f}"] for p, q in new.items() if old.get(p) != q]
    out += [[_px(p), "0.00000000"] for p in old if p not in new]
    return out


class BookStreams:
    def __init__(self, sim: Any, now_ms: Any, binance_ids: dict[str, str]) -> None:
        """binance_ids: BTCUSDT -> BTC (the listed symbols)."""
        self._now_ms = now_ms
        self.binance_ids = binance_ids
        self._by_stream_symbol = {sid.lower(): base for sid, base in binance_ids.items()}
        self.last_id: dict[str, int] = {}  # Binance base -> its last update id
        self._prev: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
        self.conns: set[_Conn] = set()
        self.gaps: dict[str, int] = {}  # venue -> events still to drop
        self.silent_until: dict[str, float] = {}
        self.events_sent: dict[str, int] = {"binance": 0, "upbit": 0}
        self._latest: MarketSnapshot | None = sim.latest()
        if self._latest is not None:
            self._seed(self._latest)
        sim.add_listener(self.on_snapshot)

    def _seed(self, snap: MarketSnapshot) -> None:
        for base, book in snap.binance.items():
            self.last_id.setdefault(base, 1000 + snap.seq)
            self._prev[base] = _levels(book)

    # --- faults -----------------------------------------------------------------
    def gap(self, venue: str, n: int = 1) -> None:
        self.gaps[venue] = self.gaps.get(venue, 0) + n

    def silence(self, venue: str, seconds: float) -> None:
        self.silent_until[venue] = time.monotonic() + seconds

    async def disconnect(self, venue: str) -> int:
        return await close_all(self.conns, venue)

    def state(self) -> dict[str, Any]:
        return {"connections": {v: sum(1 for c in self.conns if c.venue == v)
                                for v in ("binance", "upbit")},
                "events_sent": dict(self.events_sent), "gaps_pending": dict(self.gaps)}

    # --- publishing -------------------------------------------------------------
    def on_snapshot(self, snap: MarketSnapshot) -> None:
        self._latest = snap
        now = time.monotonic()
        events: dict[str, dict[str, Any]] = {}
        for base, book in snap.binance.items():
            bids, asks = _levels(book)
            old_b, old_a = self._prev.get(base, ({}, {}))
            b, a = _diff(old_b, bids), _diff(old_a, asks)
            self._prev[base] = (bids, asks)
            if not b and not a:
                continue
            first = self.last_id.get(base, 1000) + 1
            self.last_id[base] = first + len(b) + len(a) - 1
            events[base] = {"e": "depthUpdate", "E": self._now_ms("binance"),
                            "s": f"{base}USDT", "U": first, "u": self.last_id[base],
                            "b": b, "a": a}
        drop_bn = self._take_gap("binance")
        drop_up = self._take_gap("upbit")
        for c in list(self.conns):
            if self.silent_until.get(c.venue, 0.0) > now:
                continue
            if c.venue == "binance" and not drop_bn:
                self._send_binance(c, events)
            elif c.venue == "upbit" and not drop_up and not c.only_snapshot:
                self._send_upbit(c, snap, "REALTIME")

    def _take_gap(self, venue: str) -> bool:
        if self.gaps.get(venue, 0) > 0:
            self.gaps[venue] -= 1
            return True
        return False

    def _send_binance(self, c: _Conn, events: dict[str, dict[str, Any]]) -> None:
        for stream in c.streams:
            sym, _, kind = stream.partition("@")
            base = self._by_stream_symbol.get(sym)
            if base is None or kind not in ("depth", "depth@100ms") or base not in events:
                continue
            ev = events[base]
            c.push(json.dumps({"stream": stream, "data": ev} if c.combined else ev))
            self.events_sent["binance"] += 1

    def _send_upbit(self, c: _Conn, snap: MarketSnapshot, stream_type: str) -> None:
        for code in c.codes:
            quote, _, base = code.partition("-")
            book = snap.fx if base == "USDT" and quote == "KRW" else snap.upbit.get(base)
            if quote != "KRW" or book is None:
                continue
            n = min(UPBIT_LEVELS, len(book.bids), len(book.asks))
            asks, bids = book.asks[:n], book.bids[:n]
            msg = {
                "type": "orderbook", "code": code, "timestamp": book.timestamp_ms,
                "total_ask_size": round(sum(q for _, q in asks), 8),
                "total_bid_size": round(sum(q for _, q in bids), 8),
                "orderbook_units": [{"ask_price": a[0], "bid_price": b[0],
                                     "ask_size": round(a[1], 8), "bid_size": round(b[1], 8)}
                                    for a, b in zip(asks, bids, strict=True)],
                "stream_type": stream_type, "level": 0,
            }
            c.push(json.dumps(msg).encode())
            self.events_sent["upbit"] += 1

    # --- connections ------------------------------------------------------------
    async def binance(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        c = _Conn("binance", ws, combined=request.path.startswith("/stream"))
        tail = request.match_info.get("streams", "")
        for name in filter(None, tail.split("/")):
            if "@" in name:  # /ws/<stream>: subscribed by the URL
                c.streams.add(name.lower())
        for name in request.query.get("streams", "").split("/"):
            if name:
                c.streams.add(name.lower())
        return await serve(self.conns, c, self._binance_request)

    async def upbit(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        return await serve(self.conns, _Conn("upbit", ws), self._upbit_request)

    async def _binance_request(self, c: _Conn, text: str) -> bool:
        now = time.monotonic()
        c.received.append(now)
        while c.received and now - c.received[0] > 1.0:
            c.received.popleft()
        if len(c.received) > BINANCE_MAX_MESSAGES_PER_S:
            return False  # the venue drops a connection that sends too much
        try:
            req = json.loads(text)
            method, rid = req["method"], req.get("id")
        except (ValueError, KeyError, TypeError):
            c.push(json.dumps({"error": {"code": 2, "msg": "Invalid request"}, "id": None}))
            return True
        params = [str(p).lower() for p in req.get("params") or []]
        if method == "SUBSCRIBE":
            if len(c.streams | set(params)) > BINANCE_MAX_STREAMS:
                c.push(json.dumps({"error": {"code": 2, "msg": "Too many streams"}, "id": rid}))
                return True
            c.streams.update(params)
            c.push(json.dumps({"result": None, "id": rid}))
        elif method == "UNSUBSCRIBE":
            c.streams.difference_update(params)
            c.push(json.dumps({"result": None, "id": rid}))
        elif method == "LIST_SUBSCRIPTIONS":
            c.push(json.dumps({"result": sorted(c.streams), "id": rid}))
        else:
            c.push(json.dumps({"error": {"code": 1, "msg": f"Unknown method {method}"},
                               "id": rid}))
        return True

    async def _upbit_request(self, c: _Conn, text: str) -> bool:
        try:
            req = json.loads(text)
            if not isinstance(req, list) or not any(isinstance(e, dict) and "ticket" in e
                                                    for e in req):
                raise ValueError("no ticket")
        except ValueError:
            c.push(json.dumps({"error": {"name": "WRONG_FORMAT",
                                         "message": "요청 형식이 올바르지 않습니다."}}).encode())
            return True
        codes: list[str] = []
        c.only_snapshot = c.only_realtime = False
        for entry in req:
            if isinstance(entry, dict) and entry.get("type") == "orderbook":
                codes += [str(code).upper() for code in entry.get("codes") or []]
                c.only_snapshot = bool(entry.get("is_only_snapshot") or entry.get("isOnlySnapshot"))
                c.only_realtime = bool(entry.get("is_only_realtime") or entry.get("isOnlyRealtime"))
        c.codes = list(dict.fromkeys(codes))  # a new request replaces the subscription
        if self._latest is not None and not c.only_realtime:
            self._send_upbit(c, self._latest, "SNAPSHOT")
        return True

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/ws", self.binance),
            web.get("/ws/{streams:.*}", self.binance),
            web.get("/stream", self.binance),
            web.get("/websocket/v1", self.upbit),
        ]
