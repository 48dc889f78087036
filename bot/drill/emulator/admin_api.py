"""Admin endpoints under /admin: faults, order log, balances, stepping, funding.

POST   /admin/faults    {"venue","kind","count","seconds","ratio",...} or a list -> {"added":[...],"faults":[...]}
GET    /admin/faults    -> {"faults":[...]}
DELETE /admin/faults    (?venue=) -> {"cleared": n}
GET    /admin/orders    (?venue=) -> {"binance":[record...], "upbit":[record...]}
GET    /admin/balances  -> {"binance":{"USDT":{"free","used","total"}}, "upbit":{...}}
POST   /admin/step      {"n":1} -> {"seq": n}
POST   /admin/advance   {"seconds": s} -> {"seq","time","snapshot"}: the manual clock moves
                        s on, the market steps once per interval passed (emulator on a
                        manual clock only); snapshot is a recording line (replay format)
POST   /admin/fund      {"venue","asset","amount"} -> balances of that venue
GET    /admin/state     -> {"seq","time","universe","stats","autostep","interval_s","markets"}
GET    /admin/requests  (?venue=) -> {"requests":[{"ts_ms","venue","method","path","status"}]}
GET    /admin/limits    -> {"config":{...}, "binance":{stats}, "upbit":{stats}}
POST   /admin/limits    {LimitConfig fields} -> the same; DELETE /admin/limits lifts bans/windows
POST   /admin/clock     {"venue","offset_ms"} -> the venue's clock runs offset_ms ahead of ours
POST   /admin/market    {"venue","symbol","status"} -> e.g. HALT: orders get "Market is closed."
GET    /admin/streams   -> the public streams' connections and events sent, "private": the same
POST   /admin/streams   {"venue","action":"gap"|"disconnect"|"silence","n","seconds",
                        "streams":"public"|"private"|"all"} -> as GET
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web

from bot.drill.emulator.state import EmulatorCore
from core.domain.models import SymbolStats
from core.venues.replay_market import snapshot_json


def _bad(msg: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f'{{"error": "{msg}"}}', content_type="application/json")


async def _json_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return {}
    try:
        return await request.json()
    except ValueError:
        raise _bad("body is not JSON") from None


class AdminApi:
    def __init__(self, core: EmulatorCore, autostep: bool) -> None:
        self.core = core
        self.autostep = autostep

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/admin/faults", self.list_faults),
            web.post("/admin/faults", self.add_faults),
            web.delete("/admin/faults", self.clear_faults),
            web.get("/admin/orders", self.orders),
            web.get("/admin/balances", self.balances),
            web.post("/admin/step", self.step),
            web.post("/admin/advance", self.advance),
            web.post("/admin/fund", self.fund),
            web.get("/admin/state", self.state),
            web.get("/admin/requests", self.requests),
            web.get("/admin/limits", self.limits),
            web.post("/admin/limits", self.set_limits),
            web.delete("/admin/limits", self.reset_limits),
            web.post("/admin/clock", self.clock),
            web.post("/admin/market", self.market_status),
            web.get("/admin/streams", self.streams),
            web.post("/admin/streams", self.stream_fault),
        ]

    def _streams_json(self) -> dict[str, Any]:
        return {**self.core.streams.state(), "private": self.core.private.state()}

    async def streams(self, request: web.Request) -> web.Response:
        return web.json_response(self._streams_json())

    async def stream_fault(self, request: web.Request) -> web.Response:
        """{"venue": "binance"|"upbit", "action": "gap"|"disconnect"|"silence",
        "n": events to drop (gap), "seconds": how long (silence),
        "streams": "public" (the default: the books) | "private" (orders, fills,
        balances; disconnect and silence only) | "all"}"""
        body = await _json_body(request)
        if not isinstance(body, dict) or body.get("venue") not in self.core.venues:
            raise _bad("venue must be binance or upbit")
        venue, action = body["venue"], body.get("action")
        which = body.get("streams", "public")
        if which not in ("public", "private", "all"):
            raise _bad("streams must be public, private or all")
        if which != "public":
            private = self.core.private
            if action == "disconnect":
                await private.disconnect(venue)
            elif action == "silence":
                seconds = body.get("seconds")
                if not isinstance(seconds, int | float) or seconds <= 0:
                    raise _bad("seconds must be a positive number")
                private.silence(venue, float(seconds))
            else:
                raise _bad("the private streams take disconnect or silence")
            if which == "private":
                return web.json_response(self._streams_json())
        streams = self.core.streams
        if action == "gap":
            n = body.get("n", 1)
            if not isinstance(n, int) or n < 1:
                raise _bad("n must be a positive integer")
            streams.gap(venue, n)
        elif action == "disconnect":
            await streams.disconnect(venue)
        elif action == "silence":
            seconds = body.get("seconds")
            if not isinstance(seconds, int | float) or seconds <= 0:
                raise _bad("seconds must be a positive number")
            streams.silence(venue, float(seconds))
        else:
            raise _bad("action must be gap, disconnect or silence")
        return web.json_response(self._streams_json())

    def _limits_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"config": dataclasses.asdict(self.core.limit_config)}
        for name, vs in self.core.venues.items():
            assert vs.limits is not None
            out[name] = vs.limits.stats.to_json(time.monotonic())
        return out

    async def limits(self, request: web.Request) -> web.Response:
        return web.json_response(self._limits_json())

    async def set_limits(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        try:
            self.core.limit_config.update(body if isinstance(body, dict) else {})
        except (ValueError, TypeError) as exc:
            raise _bad(str(exc).replace('"', "'")) from None
        return web.json_response(self._limits_json())

    async def reset_limits(self, request: web.Request) -> web.Response:
        for vs in self.core.venues.values():
            assert vs.limits is not None
            vs.limits.reset()
        return web.json_response(self._limits_json())

    async def clock(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        venue = body.get("venue") if isinstance(body, dict) else None
        if venue not in self.core.venues or not isinstance(body.get("offset_ms"), int):
            raise _bad("venue (binance|upbit) and offset_ms (integer) are required")
        self.core.venues[venue].clock_offset_ms = body["offset_ms"]
        return web.json_response({"venue": venue, "offset_ms": body["offset_ms"]})

    async def market_status(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        venue = body.get("venue") if isinstance(body, dict) else None
        if venue not in self.core.venues or not isinstance(body.get("symbol"), str):
            raise _bad("venue and symbol are required")
        status = str(body.get("status") or "TRADING")
        statuses = self.core.venues[venue].market_status
        if status == "TRADING":
            statuses.pop(body["symbol"], None)
        else:
            statuses[body["symbol"]] = status
        return web.json_response({"venue": venue, "market_status": statuses})

    async def list_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"faults": [f.to_json() for f in self.core.faults.active()]})

    async def add_faults(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        specs = body if isinstance(body, list) else [body]
        added = []
        try:
            for spec in specs:
                if not isinstance(spec, dict):
                    raise TypeError("a fault is a JSON object")
                added.extend(self.core.faults.add(spec))
        except (ValueError, TypeError) as exc:
            raise _bad(str(exc).replace('"', "'")) from None
        return web.json_response(
            {
                "added": [f.to_json() for f in added],
                "faults": [f.to_json() for f in self.core.faults.active()],
            }
        )

    async def clear_faults(self, request: web.Request) -> web.Response:
        return web.json_response({"cleared": self.core.faults.clear(request.query.get("venue"))})

    async def orders(self, request: web.Request) -> web.Response:
        want = request.query.get("venue")
        out: dict[str, list[dict[str, Any]]] = {}
        for name, vs in self.core.venues.items():
            if want not in (None, name):
                continue
            rows = []
            for rec in vs.records:
                order = await vs.order_of(rec) if rec.paper_id is not None else None
                rows.append(rec.to_json(order))
            out[name] = rows
        return web.json_response(out)

    async def balances(self, request: web.Request) -> web.Response:
        return web.json_response(await self.core.balances())

    async def step(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        n = body.get("n", 1) if isinstance(body, dict) else 1
        if not isinstance(n, int) or not 1 <= n <= 10_000:
            raise _bad("n must be an integer in 1..10000")
        return web.json_response({"seq": self.core.step(n)})

    async def advance(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or not 0 <= seconds <= 3600:
            raise _bad("seconds must be a number in 0..3600")
        try:
            snap = self.core.advance(float(seconds))
        except ValueError as exc:
            raise _bad(str(exc)) from None
        return web.json_response({"seq": snap.seq, "time": self.core.clock.time(),
                                  "snapshot": snapshot_json(snap)})

    async def fund(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        venue = body.get("venue") if isinstance(body, dict) else None
        if venue not in self.core.venues:
            raise _bad("venue must be binance or upbit")
        asset, amount = body.get("asset"), body.get("amount")
        if not isinstance(asset, str) or not isinstance(amount, int | float):
            raise _bad("asset (string) and amount (number) are required")
        self.core.venues[venue].engine.fund(asset, float(amount))
        return web.json_response((await self.core.balances())[venue])

    async def state(self, request: web.Request) -> web.Response:
        core = self.core
        snap = core.snapshot()
        return web.json_response(
            {
                "seq": snap.seq,
                "time": core.clock.time(),
                "universe": core.universe,
                "stats": [{f: getattr(st, f) for f in SymbolStats.__slots__}
                          for st in core.sim.symbol_stats() if st.base in core.universe],
                "autostep": self.autostep,
                "interval_s": core.sim.interval_s,
                "fx": snap.fx.mid,
                "markets": {
                    name: sorted(await vs.engine.load_markets()) for name, vs in core.venues.items()
                },
            }
        )

    async def requests(self, request: web.Request) -> web.Response:
        want = request.query.get("venue")
        rows = [r for r in self.core.requests if want in (None, r["venue"])]
        counts = [{"venue": v, "method": m, "path": p, "status": s, "count": n}
                  for (v, m, p, s), n in self.core.request_counts.items()
                  if want in (None, v)]
        return web.json_response({"requests": rows, "counts": counts})
