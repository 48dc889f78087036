"""The aiohttp application: both venues and the Telegram Bot API stand-in on one
port, plus /admin.

The middleware routes by prefix (/api/v3 = Binance, /v1 = Upbit, /bot = Telegram,
/admin; /ws, /stream and /websocket/v1 are the venues' public websocket streams,
/ws-api/v3 and /websocket/v1/private their private ones), enforces the venues'
request limits (bot.drill.emulator.limits), applies request-level faults, turns
ApiError into venue-shaped responses, adds the venues' rate-limit headers, logs
every venue request and then publishes on the private streams what the request
changed (an order's acceptance, its fills on arrival, a cancel).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.drill.emulator import binance_api, upbit_api
from bot.drill.emulator.admin_api import AdminApi
from bot.drill.emulator.errors import (
    BN_BAD_KEY,
    ApiError,
    binance_error,
    not_found_json,
    plain_error,
    upbit_error,
)
from bot.drill.emulator.faults import REQUEST_KINDS, Fault
from bot.drill.emulator.state import EmulatorCore
from bot.drill.emulator.telegram_api import BotApiStandIn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CORE_KEY = web.AppKey("emulator_core", EmulatorCore)


def venue_of(path: str) -> str | None:
    if path in ("/ws", "/stream", "/websocket/v1", "/ws-api/v3", "/websocket/v1/private") \
            or path.startswith("/ws/"):
        return "stream"
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
    """The response a request-level fault produces, or None to carry on normally.
    An injected 429 or 418 binds the client like a real one: its window opens in
    the venue's limits, so a client that ignores it is banned."""
    kind = fault.kind
    retry = str(max(1, int(fault.seconds or 1)))
    limits = core.venues[venue].limits
    assert limits is not None
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
    if kind == "auth_error":
        return _auth_error(venue, fault.name).response()
    group, _ = upbit_api.remaining_req_group(request.method, request.path)
    if kind == "http_429":
        if venue == "binance":
            limits.open_window("*", float(retry))
            msg = (
                "Too many requests; current limit of IP(127.0.0.1) request weight is 6000 per "
                "1 MINUTE. Please use WebSocket Streams for live updates to avoid bans."
            )
            return binance_error(429, -1003, msg, {"Retry-After": retry}).response()
        # Upbit's 429 names no wait: the group's one-second window is all it binds.
        limits.open_window(group, 1.0)
        headers = {"Remaining-Req": f"group={group}; min=0; sec=0"}
        if fault.body == "json":  # ccxt reads a JSON-bodied 429 as a generic error
            err = upbit_error(429, "too_many_requests", "요청 수 제한을 초과했습니다.")
            err.headers.update(headers)
            return err.response()
        return plain_error(429, "Too many API requests.", headers).response()
    limits.ban_for(float(retry))
    if venue == "binance":
        ban_until = int(time.time() * 1000) + int(retry) * 1000
        msg = f"Way too much request weight used; IP banned until {ban_until}."
        return binance_error(418, -1003, msg, {"Retry-After": retry}).response()
    return plain_error(418, f"IP blocked for {retry} seconds.", {"Retry-After": retry}).response()


def _auth_error(venue: str, name: str | None) -> ApiError:
    """A 401 as the venue words it (fault kind auth_error)."""
    if venue == "binance":
        codes = {"-2015": BN_BAD_KEY, "-2014": "API-key format invalid.",
                 "-1022": "Signature for this request is not valid."}
        code = name if name in codes else "-2015"
        return binance_error(401, int(code), codes[code])
    messages = {
        "invalid_query_payload": "JWT 페이로드의 쿼리가 일치하지 않습니다.",
        "nonce_used": "이미 요청한 nonce값이 다시 사용되었습니다.",
        "no_authorization_i_p": "This is not a verified IP.",
        "expired_access_key": "This key has expired.",
        "jwt_verification": "Jwt 토큰 검증에 실패했습니다.",
    }
    key = name if name in messages else "jwt_verification"
    return upbit_error(401, key, messages[key])


def _request_cost(venue: str, request: web.Request) -> tuple[int, str, bool]:
    """(Binance weight, Upbit group, is an order) of a venue request."""
    method, path = request.method, request.path
    if venue == "binance":
        is_order = path == "/api/v3/order" and method == "POST"
        return binance_api.weight(method, path, dict(request.query)), "", is_order
    group, _ = upbit_api.remaining_req_group(method, path)
    return 1, group, group == "order"


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
        if venue in ("admin", "telegram", "stream"):
            try:
                return await handler(request)
            except web.HTTPException as exc:
                return _http_exception_response(venue, exc, request.path)
        limits = core.venues[venue].limits
        assert limits is not None
        weight, group, is_order = _request_cost(venue, request)
        resp: web.StreamResponse | None = None
        try:
            limits.check(request.method, request.path, weight, group, is_order)
            fault = core.faults.take(venue, request.method, request.path, REQUEST_KINDS)
            if fault is not None:
                resp = await _apply_fault(core, venue, fault, request, handler)
            if resp is None:
                resp = await handler(request)
        except ApiError as exc:
            resp = exc.response()
        except web.HTTPException as exc:
            resp = _http_exception_response(venue, exc, request.path)
        for key, value in limits.headers(group, is_order).items():
            if key not in resp.headers:  # a 429 states its own Remaining-Req
                resp.headers[key] = value
        core.log_request(venue, request.method, request.path, resp.status)
        await core.private.sync(venue)
        return resp

    app = web.Application(middlewares=[middleware])
    app[CORE_KEY] = core
    app.add_routes(binance_api.BinanceApi(core).routes())
    app.add_routes(upbit_api.UpbitApi(core).routes())
    app.add_routes(AdminApi(core, autostep).routes())
    app.add_routes(core.streams.routes())
    app.add_routes(core.private.routes())
    # Long polls held as long as Telegram holds them (aiogram asks for 10 s), so a drill's
    # bot polls as rarely as in production.
    telegram = BotApiStandIn(max_poll_s=10.0)
    app.add_routes(telegram.routes())

    async def end_telegram_polls(_app: web.Application) -> None:
        # on_shutdown runs before the runner waits for open requests: a bot's pending
        # getUpdates returns now instead of holding up the emulator's stop.
        await telegram.close()

    app.on_shutdown.append(end_telegram_polls)

    async def end_streams(_app: web.Application) -> None:
        for venue in ("binance", "upbit"):
            await core.streams.disconnect(venue)
            await core.private.disconnect(venue)

    app.on_shutdown.append(end_streams)
    return app


__all__ = ["CORE_KEY", "build_app", "venue_of"]
