"""The aiohttp application: both venues and the Telegram Bot API stand-in on one
port, plus /admin.

The middleware routes by prefix (/api/v3 = Binance, /v1 = Upbit, /bot = Telegram,
/admin), applies request-level faults, turns ApiError into venue-shaped responses,
adds the venues' rate-limit headers and logs every venue request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.drill.emulator import binance_api, upbit_api
from bot.drill.emulator.admin_api import AdminApi
from bot.drill.emulator.errors import ApiError, binance_error, not_found_json, plain_error
from bot.drill.emulator.faults import REQUEST_KINDS, Fault
from bot.drill.emulator.state import EmulatorCore, VenueState
from bot.drill.emulator.telegram_api import BotApiStandIn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORE_KEY = web.AppKey("emulator_core", EmulatorCore)


def venue_of(path: str) -> str | None:
    if path.startswith(("/api/v3/", "/sapi/v1/account/apiRestrictions")):
        return "binance"
    if path.startswith("/bot"):
        return "telegram"
    if path.startswith("/v1/"):
        return "upbit"
    if path.startswith("/admin/"):
        return "admin"
    return None


async def _wait_or_stop(core: EmulatorCore, seconds: float) -> None:
    try:
        await asyncio.wait_for(core.stopping.wait(), timeout=seconds)
    except TimeoutError:
        pass


async def _apply_fault(
    core: EmulatorCore, venue: str, fault: Fault, request: web.Request, handler: Handler
) -> web.StreamResponse | None:
    """The response a request-level fault produces, or None to carry on normally."""
    kind = fault.kind
    retry = str(max(1, int(fault.seconds or 1)))
    if kind == "latency":
        await _wait_or_stop(core, fault.seconds or 1.0)
        return None
    if kind == "timeout":
        if fault.execute:
            try:
                await handler(request)
            except (ApiError, web.HTTPException):
                pass
        await _wait_or_stop(core, fault.seconds or 30.0)
        return plain_error(504, "Gateway Timeout").response()
    if kind == "maintenance":
        return plain_error(
            fault.status or 503, "Service Unavailable: system maintenance"
        ).response()
    if venue == "binance":
        if kind == "http_429":
            msg = (
                "Too many requests; current limit of IP(127.0.0.1) request weight is 6000 per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid bans."
            )
            return binance_error(429, -1003, msg, {"Retry-After": retry}).response()
        ban_until = int(time.time() * 1000) + int(retry) * 1000
        msg = f"Way too much request weight used; IP banned until {ban_until}."
        return binance_error(418, -1003, msg, {"Retry-After": retry}).response()
    group, _ = upbit_api.remaining_req_group(request.method, request.path)
    if kind == "http_429":
        headers = {"Remaining-Req": f"group={group}; min=0; sec=0"}
        return plain_error(429, "Too many API requests.", headers).response()
    return plain_error(418, f"IP blocked for {retry} seconds.", {"Retry-After": retry}).response()


def _rate_headers(vs: VenueState, request: web.Request, resp: web.StreamResponse) -> None:
    now = time.monotonic()
    method, path = request.method, request.path
    if vs.venue.value == "binance":
        w = binance_api.weight(method, path, dict(request.query))
        vs.weights.append((now, w))
        while vs.weights and now - vs.weights[0][0] > 60.0:
            vs.weights.popleft()
        resp.headers["X-MBX-USED-WEIGHT-1M"] = str(sum(x for _, x in vs.weights))
        if path == "/api/v3/order" and method == "POST":
            vs.order_times.append(now)
            while vs.order_times and now - vs.order_times[0] > 86_400.0:
                vs.order_times.popleft()
            recent = sum(1 for t in vs.order_times if now - t <= 10.0)
            resp.headers["X-MBX-ORDER-COUNT-10S"] = str(recent)
            resp.headers["X-MBX-ORDER-COUNT-1D"] = str(len(vs.order_times))
        return
    if "Remaining-Req" in resp.headers:
        return
    group, limit = upbit_api.remaining_req_group(method, path)
    sec = int(now)
    key = (group, sec)
    used = vs.second_counts.get(key, 0) + 1
    vs.second_counts = {k: v for k, v in vs.second_counts.items() if k[1] == sec}
    vs.second_counts[key] = used
    resp.headers["Remaining-Req"] = f"group={group}; min=1800; sec={max(0, limit - used)}"


def _http_exception_response(venue: str, exc: web.HTTPException, path: str) -> web.Response:
    if exc.status == 404:
        return not_found_json(path)
    if exc.content_type == "application/json":
        return web.Response(status=exc.status, text=exc.text, content_type="application/json")
    return web.json_response({"error": exc.reason, "path": path}, status=exc.status)


def build_app(core: EmulatorCore, autostep: bool) -> web.Application:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        venue = venue_of(request.path)
        if venue is None:
            return not_found_json(request.path)
        if venue in ("admin", "telegram"):
            try:
                return await handler(request)
            except web.HTTPException as exc:
                return _http_exception_response(venue, exc, request.path)
        vs = core.venues[venue]
        resp: web.StreamResponse | None = None
        try:
            fault = core.faults.take(venue, request.method, request.path, REQUEST_KINDS)
            if fault is not None:
                resp = await _apply_fault(core, venue, fault, request, handler)
            if resp is None:
                resp = await handler(request)
        except ApiError as exc:
            resp = exc.response()
        except web.HTTPException as exc:
            resp = _http_exception_response(venue, exc, request.path)
        _rate_headers(vs, request, resp)
        core.log_request(venue, request.method, request.path, resp.status)
        return resp

    app = web.Application(middlewares=[middleware])
    app[CORE_KEY] = core
    app.add_routes(binance_api.BinanceApi(core).routes())
    app.add_routes(upbit_api.UpbitApi(core).routes())
    app.add_routes(AdminApi(core, autostep).routes())
    # Long polls held as long as Telegram holds them (aiogram asks for 10 s), so a drill's
    # bot polls as rarely as in production.
    telegram = BotApiStandIn(max_poll_s=10.0)
    app.add_routes(telegram.routes())

    async def end_telegram_polls(_app: web.Application) -> None:
        # on_shutdown runs before the runner waits for open requests: a bot's pending
        # getUpdates returns now instead of holding up the emulator's stop.
        await telegram.close()

    app.on_shutdown.append(end_telegram_polls)
    return app


__all__ = ["CORE_KEY", "build_app", "venue_of"]
