"""The venues' private websocket streams (own orders, fills, balances), with their
real message shapes, so ccxt.pro's watch_orders / watch_my_trades / watch_balance
work against the emulator.

Binance (`/ws-api/v3`, the spot WebSocket API): requests `{"id", "method",
"params"}`; `userDataStream.subscribe.signature` (params apiKey, timestamp,
recvWindow optional, signature = HMAC-SHA256 over the other params sorted by
name, checked like a signed REST request: -2014/-2015 key, -1022 signature,
-1021 timestamp, -1131 recvWindow) answers `{"id", "status": 200, "result":
{"subscriptionId": N}, "rateLimits": [...]}`, an error `{"id", "status",
"error": {"code", "msg"}, "rateLimits"}`; `userDataStream.unsubscribe`,
`session.subscriptions`, `ping` and `time` too. Every request spends the IP's
REQUEST_WEIGHT shared with REST (2 for the user data stream requests, 1 else:
over the limit 429 -1003, then bans, as over REST) and each answer's rateLimits
counts it. Events go out as
`{"subscriptionId": N, "event": {...}}`: `executionReport` (x NEW on accept,
TRADE per fill with that fill's l/L/Y and commission n/N, CANCELED on a cancel -
`c` the cancel request's client id, `C` the order's own - and EXPIRED for what a
market/IOC order left), then `outboundAccountPosition` with the assets that
changed.

Upbit (`/websocket/v1/private`): the connection must carry `Authorization:
Bearer <JWT>` (HS256, a known access_key, a nonce); without it every request is
answered `{"error": {"name": "INVALID_AUTH", ...}}` and the connection closed.
`[{"ticket"}, {"type": "myOrder", "codes": [...]}, {"type": "myAsset"}]`;
`myOrder` messages (state wait on accept, trade per fill - price/volume/trade_fee
of that fill, paid_fee cumulative - then done or cancel) and `myAsset` messages
with the changed currencies, in binary frames. Nothing is sent on subscribing:
the venue sends only on a change.

How changes are found: `sync(venue)` compares every accepted order with what was
last published for it (accepted, trades published, final) and the account's
balances with the last ones published, and sends what is new. It runs after each
venue REST request (app middleware) and after every market step (a sim listener
added after the matchers and the pending cancels), so the stream says what a
REST read right after would say.

Faults: `disconnect` closes a venue's private connections, `silence` sends
nothing for a while (events of that time are lost; a client must reconcile by
REST, as after a real outage).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.drill.emulator import binance_shapes
from bot.drill.emulator.auth import binance_verify
from bot.drill.emulator.errors import ApiError
from bot.drill.emulator.numfmt import dec_str
from bot.drill.emulator.upbit_shapes import market_code
from bot.drill.emulator.ws_conns import WsConn, close_all, serve
from core.domain.models import MarketSnapshot, Order, OrderStatus, Side, Trade

if TYPE_CHECKING:
    from bot.drill.emulator.state import EmulatorCore, OrderRecord

UPBIT_AUTH_WAIT_S = 10.0  # an unauthenticated connection is closed after this at the latest
BINANCE_RATE_LIMITS = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                        "intervalNum": 1, "limit": 6000}]
_INVALID_AUTH = {"error": {"name": "INVALID_AUTH", "message": "인증 정보가 올바르지 않습니다."}}
_ZERO = "0.00000000"


@dataclass(eq=False)
class _Conn(WsConn):
    subscriptions: set[int] = field(default_factory=set)  # Binance subscription ids
    next_id: int = 0
    types: dict[str, list[str]] = field(default_factory=dict)  # Upbit type -> codes


@dataclass
class _Published:
    accepted: bool = False  # NEW / wait sent
    trades: int = 0  # fills sent
    final: bool = False  # FILLED / CANCELED / EXPIRED, done / cancel sent


def _d8(x: float | None) -> str:
    return dec_str(x or 0.0, 8)


def _r8(x: float) -> float:
    return round(x, 8)


class PrivateStreams:
    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.conns: set[_Conn] = set()
        self.silent_until: dict[str, float] = {}
        self.events_sent: dict[str, int] = {"binance": 0, "upbit": 0}
        self._pub: dict[str, dict[str, _Published]] = {v: {} for v in core.venues}
        self._live: dict[str, dict[str, OrderRecord]] = {v: {} for v in core.venues}
        self._cursor: dict[str, int] = {v: 0 for v in core.venues}
        self._balances: dict[str, dict[str, tuple[float, float]]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ignore_seq = 0
        for venue, vs in core.venues.items():  # the funded balances are no change
            self._balances[venue] = {a: (v.free, v.used) for a, v in _balances_now(vs.engine).items()}

    # --- faults -----------------------------------------------------------------
    def silence(self, venue: str, seconds: float) -> None:
        self.silent_until[venue] = time.monotonic() + seconds

    async def disconnect(self, venue: str) -> int:
        return await close_all(self.conns, venue)

    def state(self) -> dict[str, Any]:
        venues = ("binance", "upbit")
        return {"connections": {v: sum(1 for c in self.conns if c.venue == v) for v in venues},
                # Binance: user data subscriptions; Upbit: connections' types (myOrder, myAsset)
                "subscribed": {"binance": sum(len(c.subscriptions) for c in self.conns
                                              if c.venue == "binance"),
                               "upbit": sorted({t for c in self.conns if c.venue == "upbit"
                                                for t in c.types})},
                "events_sent": dict(self.events_sent)}

    # --- finding changes ------------------------------------------------------------
    def on_snapshot(self, _snap: MarketSnapshot) -> None:
        """A sim listener: the step's fills and cancels go out once it is done."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a core used without a server): nobody to tell
            return
        for venue in self.core.venues:
            task = loop.create_task(self.sync(venue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def sync(self, venue: str) -> None:
        """Publish every change of the venue's orders and balances since the last sync."""
        lock = self._locks.setdefault(venue, asyncio.Lock())
        async with lock:
            vs = self.core.venues[venue]
            live, pub = self._live[venue], self._pub[venue]
            records = vs.records
            i = self._cursor[venue]
            while i < len(records) and records[i].outcome != "pending":
                rec = records[i]
                if rec.paper_id is not None:
                    live[rec.paper_id] = rec
                    pub.setdefault(rec.paper_id, _Published())
                i += 1
            self._cursor[venue] = i
            out: list[dict[str, Any]] = []
            for pid, rec in list(live.items()):
                order = await vs.order_of(rec)
                p = pub[pid]
                if venue == "binance":
                    out += self._binance_reports(rec, order, p)
                else:
                    out += self._upbit_orders(rec, order, p)
                if p.final:  # nothing more will happen to it
                    del live[pid], pub[pid]
            bal = self._balance_changes(venue, await vs.engine.fetch_balance())
            if venue == "binance":
                if bal:
                    now = self.core.now_ms("binance")
                    out.append({"e": "outboundAccountPosition", "E": now, "u": now,
                                "B": [{"a": a, "f": _d8(max(f, 0.0)), "l": _d8(max(u, 0.0))}
                                      for a, (f, u) in bal]})
            elif bal:
                now = self.core.now_ms("upbit")
                out.append({"type": "myAsset", "asset_uuid": str(uuid.uuid4()),
                            "assets": [{"currency": a, "balance": _r8(max(f, 0.0)),
                                        "locked": _r8(max(u, 0.0))} for a, (f, u) in bal],
                            "asset_timestamp": now, "timestamp": now,
                            "stream_type": "REALTIME"})
            for ev in out:
                self._send(venue, ev)

    def _balance_changes(self, venue: str,
                         bals: dict[str, Any]) -> list[tuple[str, tuple[float, float]]]:
        now = {a: (b.free, b.used) for a, b in bals.items()}
        last = self._balances[venue]
        changed = [(a, fu) for a, fu in sorted(now.items()) if last.get(a) != fu]
        self._balances[venue] = now
        return changed

    def _send(self, venue: str, ev: dict[str, Any]) -> None:
        if self.silent_until.get(venue, 0.0) > time.monotonic():
            return
        for c in list(self.conns):
            if c.venue != venue:
                continue
            if venue == "binance":
                for sid in sorted(c.subscriptions):
                    c.push(json.dumps({"subscriptionId": sid, "event": ev}))
                    self.events_sent[venue] += 1
            elif ev["type"] in c.types:
                codes = c.types[ev["type"]]
                if ev["type"] == "myOrder" and codes and ev["code"] not in codes:
                    continue
                c.push(json.dumps(ev, ensure_ascii=False).encode())
                self.events_sent[venue] += 1

    # --- Binance executionReport -------------------------------------------------------
    def _binance_reports(self, rec: OrderRecord, order: Order,
                         p: _Published) -> list[dict[str, Any]]:
        out = []
        if not p.accepted:
            p.accepted = True
            out.append(self._report(rec, order, "NEW", "NEW", order.timestamp_ms, 0))
        while p.trades < len(order.trades):
            n = p.trades + 1
            t = order.trades[n - 1]
            last = n == len(order.trades) and order.status is OrderStatus.CLOSED
            out.append(self._report(rec, order, "TRADE", "FILLED" if last else "PARTIALLY_FILLED",
                                    t.timestamp_ms, n, t))
            p.trades = n
        if order.status is OrderStatus.CLOSED:
            p.final = True
        elif order.status is OrderStatus.CANCELED and not p.final:
            p.final = True
            kind = "CANCELED" if rec.user_canceled else "EXPIRED"
            out.append(self._report(rec, order, kind, kind, self.core.now_ms("binance"),
                                    len(order.trades)))
        return out

    def _report(self, rec: OrderRecord, order: Order, x: str, status: str, when: int,
                n_trades: int, trade: Trade | None = None) -> dict[str, Any]:
        """One executionReport: the order as it stood after its first n_trades fills."""
        done = order.trades[:n_trades]
        cum_qty = sum(t.amount for t in done)
        cum_quote = sum(t.cost for t in done)
        cid = rec.client_order_id or ""
        c, orig_c = cid, ""
        if x == "CANCELED":  # c: the cancel request's id, C: the order's own
            c, orig_c = rec.cancel_client_id or cid, cid
        limit = rec.wire_type == "LIMIT"
        orig = order.amount if order.amount is not None else order.filled
        on_book = limit and status in ("NEW", "PARTIALLY_FILLED") and \
            (rec.time_in_force or "GTC") == "GTC"
        ev: dict[str, Any] = {
            "e": "executionReport", "E": self.core.now_ms("binance"),
            "s": (order.symbol or "").replace("/", ""), "c": c,
            "S": "BUY" if order.side is Side.BUY else "SELL", "o": rec.wire_type,
            "f": rec.time_in_force or "GTC", "q": _d8(orig),
            "p": _d8(order.price) if order.price else _ZERO, "P": _ZERO, "F": _ZERO,
            "g": -1, "C": orig_c, "x": x, "X": status, "r": "NONE",
            "i": int(rec.order_id or 0),
            "l": _d8(trade.amount) if trade else _ZERO,
            "z": _d8(cum_qty),
            "L": _d8(trade.price) if trade else _ZERO,
            "n": _d8(trade.fee_cost) if trade else "0",
            "N": trade.fee_currency if trade else None,
            "T": when, "t": binance_shapes.trade_id(trade) if trade else -1,
            "I": self._next_ignore(), "w": on_book, "m": False, "M": False,
            "O": order.timestamp_ms, "Z": _d8(cum_quote),
            "Y": _d8(trade.cost) if trade else _ZERO, "Q": _d8(rec.quote_qty),
            "V": "EXPIRE_MAKER",
        }
        if limit:
            ev["W"] = order.timestamp_ms  # working time: on the book since
        return ev

    def _next_ignore(self) -> int:
        self._ignore_seq += 1
        return self._ignore_seq

    # --- Upbit myOrder ---------------------------------------------------------------------
    def _upbit_orders(self, rec: OrderRecord, order: Order,
                      p: _Published) -> list[dict[str, Any]]:
        out = []
        if not p.accepted:
            p.accepted = True
            out.append(self._my_order(rec, order, "wait", 0))
        while p.trades < len(order.trades):
            p.trades += 1
            out.append(self._my_order(rec, order, "trade", p.trades))
        if order.status.done and not p.final:
            p.final = True
            state = "done" if order.status is OrderStatus.CLOSED else "cancel"
            out.append(self._my_order(rec, order, state, len(order.trades)))
        return out

    def _my_order(self, rec: OrderRecord, order: Order, state: str,
                  n_trades: int) -> dict[str, Any]:
        from bot.drill.emulator.state import FEE_BPS

        fee_rate = FEE_BPS["upbit"] / 1e4
        done = order.trades[:n_trades]
        trade = done[-1] if state == "trade" else None
        cum_qty = _r8(sum(t.amount for t in done))
        cum_cost = _r8(sum(t.cost for t in done))
        cum_fee = _r8(sum(t.fee_cost for t in done))
        bid = order.side is Side.BUY
        if rec.wire_type == "price":
            price: float | None = rec.quote_qty
            volume: float | None = None
            remaining: float | None = None
            reserved_fee = (rec.quote_qty or 0.0) * fee_rate
        else:
            price, volume = order.price, order.amount
            remaining = _r8(max((order.amount or 0.0) - cum_qty, 0.0))
            reserved_fee = (order.amount or 0.0) * (order.price or 0.0) * fee_rate if bid else 0.0
        open_ = state in ("wait", "trade")
        # What the order locks now (0 once it is done): a venue states the current figure.
        locked = self.core.venues["upbit"].engine.reserved(rec.paper_id or "") if open_ else 0.0
        if trade is not None:
            price, volume = trade.price, trade.amount
        return {
            "type": "myOrder", "code": market_code(order.symbol), "uuid": rec.order_id,
            "ask_bid": "BID" if bid else "ASK", "order_type": rec.wire_type, "state": state,
            "trade_uuid": trade.id if trade else None,
            "price": price, "avg_price": _r8(cum_cost / cum_qty) if cum_qty else 0.0,
            "volume": volume, "remaining_volume": remaining, "executed_volume": cum_qty,
            "trades_count": n_trades, "reserved_fee": _r8(reserved_fee),
            "remaining_fee": _r8(max(reserved_fee - cum_fee, 0.0)) if open_ else 0.0,
            "paid_fee": cum_fee, "locked": _r8(locked), "executed_funds": cum_cost,
            "time_in_force": rec.time_in_force, "trade_fee": trade.fee_cost if trade else None,
            "is_maker": False if trade else None, "identifier": rec.client_order_id,
            "smp_type": None, "prevented_volume": 0, "prevented_locked": 0,
            "trade_timestamp": done[-1].timestamp_ms if done else None,
            "order_timestamp": order.timestamp_ms, "timestamp": self.core.now_ms("upbit"),
            "stream_type": "REALTIME",
        }

    # --- connections ------------------------------------------------------------------------
    async def binance(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        return await serve(self.conns, _Conn("binance", ws), self._binance_request)

    async def upbit(self, request: web.Request) -> web.WebSocketResponse:
        try:
            self.core.upbit_auth.verify(request.headers.get("Authorization"), "",
                                        single_use_nonce=False)
            authorized = True
        except ApiError:
            authorized = False
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        if not authorized:
            # Upbit answers the first request with INVALID_AUTH and hangs up.
            with contextlib.suppress(asyncio.TimeoutError, RuntimeError):
                await ws.receive(timeout=UPBIT_AUTH_WAIT_S)
                await ws.send_bytes(json.dumps(_INVALID_AUTH, ensure_ascii=False).encode())
            await ws.close()
            return ws
        return await serve(self.conns, _Conn("upbit", ws), self._upbit_request)

    # --- Binance WebSocket API requests --------------------------------------------------------
    def _answer(self, c: _Conn, rid: Any, result: Any = None, status: int = 200,
                error: dict[str, Any] | None = None) -> None:
        msg: dict[str, Any] = {"id": rid, "status": status}
        if error is not None:
            msg["error"] = error
        else:
            msg["result"] = result
        limits = self.core.venues["binance"].limits
        used = int(limits.headers("", False)["X-MBX-USED-WEIGHT-1M"]) if limits else 0
        msg["rateLimits"] = [{**BINANCE_RATE_LIMITS[0], "count": used}]
        c.push(json.dumps(msg))

    async def _binance_request(self, c: _Conn, text: str) -> bool:
        try:
            req = json.loads(text)
            if not isinstance(req, dict) or not isinstance(req.get("method"), str):
                raise ValueError("no method")
        except ValueError:
            self._answer(c, None, status=400,
                         error={"code": -1100, "msg": "Malformed request."})  # not JSON
            return True
        rid, method = req.get("id"), req["method"]
        params = req.get("params") or {}
        # The WebSocket API spends the IP's REQUEST_WEIGHT, as REST does: over the
        # limit it answers 429, inside a 429's window or a ban 418.
        limits = self.core.venues["binance"].limits
        weight = 2 if method.startswith(("userDataStream.", "session.")) else 1
        try:
            if limits is not None:
                limits.check("WS", "/ws-api/v3", weight, "", False)
        except ApiError as exc:
            self._answer(c, rid, status=exc.status, error=json.loads(exc.body))
            return True
        if not isinstance(params, dict):
            self._answer(c, rid, status=400,
                         error={"code": -1100, "msg": "Illegal characters found in 'params'."})
        elif method == "ping":
            self._answer(c, rid, {})
        elif method == "time":
            self._answer(c, rid, {"serverTime": self.core.now_ms("binance")})
        elif method == "userDataStream.subscribe.signature":
            err = self._verify(params)
            if err is not None:
                self._answer(c, rid, status=err[0], error=err[1])
                return True
            sid = c.next_id
            c.next_id += 1
            c.subscriptions.add(sid)
            self._answer(c, rid, {"subscriptionId": sid})
        elif method == "userDataStream.unsubscribe":
            which = params.get("subscriptionId")
            if which is None:
                c.subscriptions.clear()
            elif not isinstance(which, int) or which not in c.subscriptions:
                self._answer(c, rid, status=400, error={
                    "code": -2035, "msg": "User Data Stream subscription not active."})
                return True
            else:
                c.subscriptions.discard(which)
            self._answer(c, rid, {})
        elif method == "session.subscriptions":
            self._answer(c, rid, [{"subscriptionId": s} for s in sorted(c.subscriptions)])
        else:
            self._answer(c, rid, status=400,
                         error={"code": -1102, "msg": f"Unknown method '{method}'."})
        return True

    def _verify(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """A signed request's check, as REST does it: the signature covers every
        param but itself, sorted by name."""
        sig = params.get("signature")
        rest = {k: _param_str(v) for k, v in params.items() if k != "signature"}
        payload = "&".join(f"{k}={v}" for k, v in sorted(rest.items()))
        raw = (payload + ("&" if payload else "") + f"signature={sig}") if sig else payload
        try:
            binance_verify(self.core.secrets.get("binance", {}), rest.get("apiKey"), raw, "",
                           now_ms=self.core.now_ms("binance"))
        except ApiError as exc:
            return exc.status, json.loads(exc.body)
        return None

    # --- Upbit requests ---------------------------------------------------------------------------
    async def _upbit_request(self, c: _Conn, text: str) -> bool:
        try:
            req = json.loads(text)
            if not isinstance(req, list):
                raise ValueError("not a list")
        except ValueError:
            c.push(_upbit_error("WRONG_FORMAT", "요청 형식이 올바르지 않습니다."))
            return True
        if not any(isinstance(e, dict) and "ticket" in e for e in req):
            c.push(_upbit_error("NO_TICKET", "ticket 필드가 존재하지 않습니다."))
            return True
        types: dict[str, list[str]] = {}
        for entry in req:
            if not isinstance(entry, dict) or "type" not in entry:
                continue
            kind = entry["type"]
            if kind not in ("myOrder", "myAsset"):
                c.push(_upbit_error("INVALID_PARAM", f"지원하지 않는 타입입니다: {kind}"))
                return True
            codes = entry.get("codes") or []
            if kind == "myOrder" and not all(isinstance(x, str) and x == x.upper()
                                             for x in codes):
                c.push(_upbit_error("INVALID_PARAM", "codes 는 대문자로 요청해야 합니다."))
                return True
            types[kind] = list(codes) if kind == "myOrder" else []
        if not types:
            c.push(_upbit_error("NO_TYPE", "type 필드가 존재하지 않습니다."))
            return True
        c.types = types  # a new request replaces the connection's subscription
        return True

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ws-api/v3", self.binance),
                web.get("/websocket/v1/private", self.upbit)]


def _balances_now(engine: Any) -> dict[str, Any]:
    """The engine's balances at set-up, from a constructor (its fetch_balance run to
    the end at once: the emulator's engine has no latency, so it never suspends)."""
    coro = engine.fetch_balance()
    try:
        coro.send(None)
    except StopIteration as done:
        return dict(done.value)
    coro.close()
    raise RuntimeError("the emulator's matching engine has a latency: balances not at hand")


def _param_str(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _upbit_error(name: str, message: str) -> bytes:
    return json.dumps({"error": {"name": name, "message": message}}, ensure_ascii=False).encode()


__all__ = ["PrivateStreams"]
