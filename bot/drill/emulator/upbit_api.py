"""Upbit REST subset under /v1."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bot.drill.emulator import upbit_shapes as shapes
from bot.drill.emulator.auth import upbit_query_string
from bot.drill.emulator.errors import (
    ApiError,
    plain_error,
    up_insufficient,
    up_not_found,
    up_validation,
    upbit_error,
)
from bot.drill.emulator.numfmt import dec_str, parse_num
from bot.drill.emulator.state import FEE_BPS, EmulatorCore, OrderRecord, VenueState
from core.domain.models import FX_SYMBOL, OrderRequest, OrderType, Side
from core.errors import OrderRejected, RuleViolation
from core.venues.rules import UpbitKrwRules

_FEE = FEE_BPS["upbit"] / 1e4
_NAMES = {
    "BTC": ("비트코인", "Bitcoin"),
    "ETH": ("이더리움", "Ethereum"),
    "XRP": ("리플", "XRP"),
    "USDT": ("테더", "Tether"),
}


class UpbitApi:
    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.vs: VenueState = core.venues["upbit"]
        self.codes: dict[str, str] = {f"KRW-{b}": f"{b}/KRW" for b in core.universe}
        self.codes["KRW-USDT"] = FX_SYMBOL  # the FX book: quoted, not tradable here

    def rules(self, code: str) -> UpbitKrwRules:
        """A pair's own tick (start_emulator(upbit_ticks=...), or set on the venue
        state) binds its orders at every price and is what /v1/orderbook/instruments
        reports; else the published table applies."""
        symbol = self.codes[code]
        return UpbitKrwRules(symbol, tick_size=self.vs.tick_overrides.get(symbol))

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/market/all", self.market_all),
            web.get("/v1/orderbook", self.orderbook),
            web.get("/v1/orderbook/instruments", self.instruments),
            web.get("/v1/ticker", self.ticker),
            web.get("/v1/ticker/all", self.ticker_all),
            web.get("/v1/accounts", self.accounts),
            web.post("/v1/orders", self.create_order),
            web.get("/v1/order", self.get_order),
            web.delete("/v1/order", self.cancel_order),
            web.get("/v1/orders/open", self.open_orders),
            web.delete("/v1/orders/open", self.cancel_open_orders),
            web.get("/v1/orders/closed", self.closed_orders),
        ]

    # --- helpers ----------------------------------------------------------------
    async def _private(self, request: web.Request) -> list[tuple[str, str]]:
        """Authenticate; returns the request params (query or JSON body) in order."""
        raw_query = request.rel_url.raw_query_string
        body: Any = None
        if request.method == "POST":
            text = await request.text()
            if text:
                try:
                    body = json.loads(text)
                except ValueError:
                    raise up_validation("request body is not valid JSON") from None
        hashed = upbit_query_string(request.method, raw_query, body)
        self.core.upbit_auth.verify(request.headers.get("Authorization"), hashed)
        if isinstance(body, dict):
            return [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in body.items()]
        return parse_qsl(raw_query, keep_blank_values=True)

    def _markets_param(self, request: web.Request, key: str = "markets") -> list[str]:
        raw = request.query.get(key, "")
        codes = [c.strip() for c in raw.split(",") if c.strip()]
        if not codes:
            raise up_validation(f"{key} is missing")
        if any(c not in self.codes for c in codes):
            raise upbit_error(404, "404", "Code not found")
        return codes

    def _book(self, code: str) -> Any:
        book = self.core.book("upbit", self.codes[code].split("/")[0])
        assert book is not None
        return book

    def _json(
        self, rec: OrderRecord, order: Any, trades: bool = False, state: str | None = None
    ) -> dict[str, Any]:
        locked = self.vs.engine.reserved(rec.paper_id or "")
        return shapes.order_json(rec, order, _FEE, locked, trades, state)

    # --- quotation --------------------------------------------------------------
    async def market_all(self, request: web.Request) -> web.Response:
        out = []
        for code in self.codes:
            base = code.split("-")[1]
            ko, en = _NAMES.get(base, (base, base))
            row: dict[str, Any] = {"market": code, "korean_name": ko, "english_name": en}
            if (
                request.query.get("is_details") == "true"
                or request.query.get("isDetails") == "true"
            ):
                row["market_event"] = {"warning": False, "caution": {}}
            out.append(row)
        return web.json_response(out)

    async def orderbook(self, request: web.Request) -> web.Response:
        codes = self._markets_param(request)
        count = (
            int(request.query.get("count", "30"))
            if request.query.get("count", "30").isdigit()
            else 30
        )
        count = max(1, min(30, count))
        return web.json_response([shapes.orderbook(c, self._book(c), count) for c in codes])

    async def instruments(self, request: web.Request) -> web.Response:
        out = []
        for code in self._markets_param(request):
            tick = self.rules(code).tick(Decimal(repr(self._book(code).best_bid)))
            out.append(
                {
                    "market": code,
                    "quote_currency": "KRW",
                    "tick_size": dec_str(float(tick)),
                    "supported_levels": ["0"],
                }
            )
        return web.json_response(out)

    def _ticker(self, code: str) -> dict[str, Any]:
        base = code.split("-")[1]
        stats = self.core.volumes.get(base)
        vol = stats.upbit_quote_volume_krw if stats is not None and base != "USDT" else 5.0e11
        return shapes.ticker(
            code, self._book(code), self.core.tickers.get("upbit", base), vol, self.core.now_ms()
        )

    async def ticker(self, request: web.Request) -> web.Response:
        return web.json_response([self._ticker(c) for c in self._markets_param(request)])

    async def ticker_all(self, request: web.Request) -> web.Response:
        quotes = [q for q in request.query.get("quote_currencies", "KRW").split(",") if q]
        return web.json_response([self._ticker(c) for c in self.codes if c.split("-")[0] in quotes])

    # --- exchange -----------------------------------------------------------------
    async def accounts(self, request: web.Request) -> web.Response:
        await self._private(request)
        bals = await self.vs.engine.fetch_balance()
        return web.json_response(
            shapes.account_rows({a: (b.free, b.used) for a, b in bals.items()})
        )

    async def create_order(self, request: web.Request) -> web.Response:
        params = await self._private(request)
        p = dict(params)
        vs = self.vs
        rec = vs.record(
            OrderRecord(
                seq=len(vs.records) + 1,
                venue="upbit",
                received_ms=self.core.now_ms(),
                client_order_id=p.get("identifier"),
                symbol=self.codes.get(p.get("market", "")),
                side={"bid": "buy", "ask": "sell"}.get(p.get("side", "")),
                wire_type=p.get("ord_type"),
                params=p,
                time_in_force=p.get("time_in_force"),
            )
        )
        try:
            body = await self._create(p, rec)
        except ApiError as exc:
            if rec.outcome != "accepted":
                rec.outcome, rec.error = "rejected", exc.label
            rec.http_status = exc.status
            raise
        rec.http_status = 201
        return web.json_response(body, status=201)

    async def _create(self, p: dict[str, str], rec: OrderRecord) -> dict[str, Any]:
        vs, core = self.vs, self.core
        ident = p.get("identifier")
        if ident is not None:
            if ident in vs.used_identifiers:
                raise up_validation(f"identifier {ident} has already been used")
            vs.used_identifiers.add(ident)
        code = p.get("market", "")
        if code not in self.codes:
            raise up_validation("market does not exist")
        if self.codes[code] == FX_SYMBOL:
            raise upbit_error(
                400,
                "create_bid_error" if p.get("side") == "bid" else "create_ask_error",
                "USDT/KRW orders are not supported by the emulator",
            )
        side_s, ord_type = p.get("side"), p.get("ord_type")
        if side_s not in ("bid", "ask"):
            raise upbit_error(
                400, "validation_error", "side is missing, side does not have a valid value"
            )
        side = Side.BUY if side_s == "bid" else Side.SELL
        tif = p.get("time_in_force")
        if tif is not None and tif not in ("ioc", "fok", "post_only"):
            raise up_validation("time_in_force does not have a valid value")
        price, volume = parse_num(p.get("price")), parse_num(p.get("volume"))
        cost = None
        if ord_type == "limit":
            if price is None or volume is None:
                raise up_validation("limit order requires price and volume")
            otype = OrderType.LIMIT
        elif ord_type == "price":
            if side is not Side.BUY or price is None or p.get("volume") not in (None, ""):
                raise up_validation("ord_type=price is a bid with price (KRW) and no volume")
            otype, cost, price = OrderType.MARKET, price, None
            rec.quote_qty = cost
        elif ord_type == "market":
            if side is not Side.SELL or volume is None or p.get("price") not in (None, ""):
                raise up_validation("ord_type=market is an ask with volume and no price")
            otype = OrderType.MARKET
        else:
            raise up_validation("ord_type does not have a valid value")
        book = self._book(code)
        ref = book.best_ask if side is Side.BUY else book.best_bid
        try:
            self.rules(code).check(
                side, otype, volume if ord_type != "price" else None, price, cost, ref
            )
        except RuleViolation as exc:
            raise _rule_error(exc, side_s) from None
        path = "/v1/orders"
        currency = "KRW" if side is Side.BUY else code.split("-")[1]
        if core.faults.take("upbit", "POST", path, ("insufficient_funds",)) is not None:
            rec.fault = "insufficient_funds"
            raise up_insufficient(side_s, currency)
        cid = ident if ident is not None else f"emu-{uuid.uuid4()}"
        req = OrderRequest(
            self.codes[code], side, otype, None if cost is not None else volume, cid, price, cost
        )
        try:
            order = await core.place(vs, rec, req, str(uuid.uuid4()))
        except OrderRejected as exc:
            if "insufficient" in str(exc):
                raise up_insufficient(side_s, currency) from None
            raise upbit_error(400, f"create_{side_s}_error", str(exc)) from None
        if tif in ("ioc", "fok"):
            vs.engine.make_immediate_or_cancel(order.id)
        pf = core.faults.take("upbit", "POST", path, ("partial_fill",))
        if pf is not None:
            vs.engine.set_fill_ratio(order.id, pf.ratio or 0.5)
            rec.fault = "partial_fill"
        if otype is OrderType.MARKET:
            vs.engine.match_now(order.id)  # fills on arrival; the unspent rest is released
        f5 = core.faults.take("upbit", "POST", path, ("http_5xx_after_execute",))
        if f5 is not None:
            rec.fault = "http_5xx_after_execute"
            raise plain_error(f5.status or 503, "Service Unavailable")
        return self._json(rec, await vs.order_of(rec))

    def _find(self, p: dict[str, str]) -> OrderRecord:
        oid, ident = p.get("uuid"), p.get("identifier")
        if not oid and not ident:
            raise up_validation("uuid or identifier is required")
        rec = self.vs.by_order_id.get(oid) if oid else self.vs.by_client.get(ident or "")
        if rec is None:
            raise up_not_found()
        return rec

    async def get_order(self, request: web.Request) -> web.Response:
        rec = self._find(dict(await self._private(request)))
        return web.json_response(self._json(rec, await self.vs.order_of(rec), trades=True))

    async def cancel_order(self, request: web.Request) -> web.Response:
        rec = self._find(dict(await self._private(request)))
        if rec.paper_id is None or not self.vs.engine.is_working(rec.paper_id):
            raise upbit_error(
                400,
                "canceled_order" if rec.user_canceled else "done_order",
                "이미 체결되었거나 취소된 주문입니다.",
            )
        body = self._json(
            rec, await self.vs.order_of(rec)
        )  # Upbit answers with the pre-cancel state
        rec.user_canceled = True
        await self.vs.engine.cancel_order(rec.paper_id, rec.symbol or "")
        return web.json_response(body)

    def _state_filter(
        self, params: list[tuple[str, str]], default: tuple[str, ...]
    ) -> tuple[str, ...]:
        states = [v for k, v in params if k in ("states[]", "states")]
        one = dict(params).get("state")
        return tuple(states) or ((one,) if one else default)

    async def _listing(
        self, params: list[tuple[str, str]], default: tuple[str, ...]
    ) -> list[dict[str, Any]]:
        p = dict(params)
        states = self._state_filter(params, default)
        market = p.get("market")
        symbol = self.codes.get(market) if market else None
        if market and symbol is None:
            raise upbit_error(404, "404", "Code not found")
        limit = max(1, min(1000, int(p["limit"]) if p.get("limit", "").isdigit() else 100))
        page = max(1, int(p["page"]) if p.get("page", "").isdigit() else 1)
        rows = []
        for rec in self.vs.records:
            if rec.paper_id is None or symbol not in (None, rec.symbol):
                continue
            order = await self.vs.order_of(rec)
            if shapes.state_of(order) in states:
                rows.append(self._json(rec, order))
        if p.get("order_by", "desc") == "desc":
            rows.reverse()
        return rows[(page - 1) * limit : page * limit]

    async def open_orders(self, request: web.Request) -> web.Response:
        return web.json_response(
            await self._listing(await self._private(request), ("wait", "watch"))
        )

    async def closed_orders(self, request: web.Request) -> web.Response:
        return web.json_response(
            await self._listing(await self._private(request), ("done", "cancel"))
        )

    async def cancel_open_orders(self, request: web.Request) -> web.Response:
        p = dict(await self._private(request))
        side = {"bid": Side.BUY, "ask": Side.SELL}.get(p.get("cancel_side", "all"))
        pairs = {c for c in p.get("pairs", "").split(",") if c}
        excluded = {c for c in p.get("excluded_pairs", "").split(",") if c}
        quotes = {c for c in p.get("quote_currencies", "").split(",") if c}
        count = max(1, min(300, int(p["count"]) if p.get("count", "").isdigit() else 20))
        recs = self.vs.open_records()
        if p.get("order_by", "desc") == "desc":
            recs.reverse()
        done = []
        for rec in recs:
            code = shapes.market_code(rec.symbol or "")
            if (pairs and code not in pairs) or code in excluded:
                continue
            if quotes and code.split("-")[0] not in quotes:
                continue
            if side is not None and rec.side != side.value:
                continue
            # An acceptance, not a cancel: it is applied at the next book (after
            # matching), so the order may still fill; read it back to know.
            self.vs.pending_cancels.append(rec)
            done.append({"uuid": rec.order_id, "market": code, "identifier": rec.client_order_id})
            if len(done) >= count:
                break
        return web.json_response(
            {"success": {"count": len(done), "orders": done}, "failed": {"count": 0, "orders": []}}
        )


def _rule_error(exc: RuleViolation, side: str) -> ApiError:
    if exc.rule == "price_filter":
        return upbit_error(
            400,
            f"invalid_price_{side}",
            "주문 가격 단위를 잘못 입력하셨습니다. 확인 후 다시 시도해주세요.",
        )
    if exc.rule == "min_total":
        return upbit_error(400, f"under_min_total_{side}", "최소주문금액 이상으로 주문해주세요")
    return up_validation(str(exc))


def remaining_req_group(method: str, path: str) -> tuple[str, int]:
    """(group, per-second limit) of an Upbit request."""
    if path.startswith("/v1/market"):
        return "market", 10
    if path.startswith("/v1/orderbook"):
        return "orderbook", 10
    if path.startswith("/v1/ticker"):
        return "ticker", 10
    if path == "/v1/orders" and method == "POST":
        return "order", 8
    if path == "/v1/orders/open" and method == "DELETE":
        return "order-cancel-all", 1
    return "default", 30
