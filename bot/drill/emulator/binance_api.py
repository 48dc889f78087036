"""Binance spot REST subset under /api/v3."""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web

from bot.drill.emulator import binance_shapes as shapes
from bot.drill.emulator.auth import binance_verify
from bot.drill.emulator.errors import (
    BN_DUPLICATE,
    BN_NO_SUCH_ORDER,
    BN_UNKNOWN_ORDER,
    ApiError,
    binance_error,
    bn_insufficient,
    plain_error,
)
from bot.drill.emulator.numfmt import dec_str, parse_num
from bot.drill.emulator.state import EmulatorCore, OrderRecord, VenueState
from core.domain.models import OrderRequest, OrderType, Side
from core.errors import OrderRejected, RuleViolation
from core.venues.rules import BinanceSymbolRules

PREFIX = "/api/v3"


class BinanceApi:
    def __init__(self, core: EmulatorCore) -> None:
        self.core = core
        self.vs: VenueState = core.venues["binance"]
        self.infos: dict[str, dict[str, Any]] = {}
        self.symbols: dict[str, str] = {}  # BTCUSDT -> BTC/USDT
        self.rules: dict[str, BinanceSymbolRules] = {}
        for base in core.universe:
            m = self.vs.engine.market(f"{base}/USDT")
            sid = shapes.symbol_id(m)
            self.infos[sid] = shapes.symbol_info(m)
            self.symbols[sid] = m.symbol
            self.rules[sid] = BinanceSymbolRules.from_exchange_info(self.infos[sid])

    def routes(self) -> list[web.RouteDef]:
        p = PREFIX
        return [
            web.get(p + "/ping", self.ping),
            web.get(p + "/time", self.time),
            web.get(p + "/exchangeInfo", self.exchange_info),
            web.get(p + "/depth", self.depth),
            web.get(p + "/ticker/24hr", self.ticker_24hr),
            web.get(p + "/ticker/price", self.ticker_price),
            web.get(p + "/myTrades", self.my_trades),
            web.get(p + "/account", self.account),
            web.post(p + "/order", self.create_order),
            web.get(p + "/order", self.get_order),
            web.delete(p + "/order", self.cancel_order),
            web.get(p + "/openOrders", self.open_orders),
            web.delete(p + "/openOrders", self.cancel_open_orders),
            # The key's permissions (preflight: withdrawals must be off). The
            # emulator's keys can trade and read, never withdraw.
            web.get("/sapi/v1/account/apiRestrictions", self.api_restrictions),
        ]

    # --- helpers ---------------------------------------------------------------
    async def _signed(self, request: web.Request) -> dict[str, str]:
        body = (await request.text()) if request.method == "POST" else ""
        params = binance_verify(
            self.core.secrets.get("binance", {}),
            request.headers.get("X-MBX-APIKEY"),
            request.rel_url.raw_query_string,
            body,
            now_ms=self.core.now_ms("binance"),
        )
        return dict(params)

    def _symbol(self, params: dict[str, str], required: bool = True) -> str | None:
        sid = params.get("symbol")
        if not sid:
            if required:
                raise binance_error(
                    400,
                    -1102,
                    "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
                )
            return None
        if sid not in self.symbols:
            raise binance_error(400, -1121, "Invalid symbol.")
        return sid

    def _find(self, params: dict[str, str], missing_code: int) -> OrderRecord:
        sid = self._symbol(params)
        oid, cid = params.get("orderId"), params.get("origClientOrderId")
        if not oid and not cid:
            raise binance_error(
                400,
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        rec = self.vs.by_order_id.get(oid) if oid else self.vs.by_client.get(cid or "")
        if rec is None or rec.symbol != self.symbols[sid or ""]:
            msg = BN_UNKNOWN_ORDER if missing_code == -2011 else BN_NO_SUCH_ORDER
            raise binance_error(400, missing_code, msg)
        return rec

    def _sid(self, rec: OrderRecord) -> str:
        return (rec.symbol or "").replace("/", "")

    # --- public -----------------------------------------------------------------
    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({})

    async def time(self, request: web.Request) -> web.Response:
        return web.json_response({"serverTime": self.core.now_ms("binance")})

    async def exchange_info(self, request: web.Request) -> web.Response:
        q = request.query
        wanted: list[str] | None = None
        if "symbol" in q:
            wanted = [q["symbol"]]
        elif "symbols" in q:
            try:
                wanted = list(json.loads(q["symbols"]))
            except ValueError:
                raise binance_error(
                    400, -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
        if wanted is not None and any(s not in self.infos for s in wanted):
            raise binance_error(400, -1121, "Invalid symbol.")
        infos = [{**self.infos[s], "status": self.vs.market_status.get(self.symbols[s], "TRADING")}
                 for s in (wanted or self.infos)]
        return web.json_response(shapes.exchange_info(infos, self.core.now_ms()))

    async def depth(self, request: web.Request) -> web.Response:
        sid = self._symbol(dict(request.query))
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            raise binance_error(
                400, -1100, "Illegal characters found in parameter 'limit'."
            ) from None
        if not 1 <= limit <= 5000:
            raise binance_error(
                400,
                -1100,
                "Illegal characters found in parameter 'limit'; legal range is '1' to '5000'.",
            )
        base = self.symbols[sid or ""].split("/")[0]
        book = self.core.book("binance", base)
        assert book is not None
        # The diff-depth stream's counter: a client resyncs a stream on this answer.
        return web.json_response(shapes.depth(book, limit, self.core.streams.last_id.get(base)))

    async def ticker_24hr(self, request: web.Request) -> web.Response:
        q = request.query
        if "symbol" in q:
            sid = self._symbol(dict(q))
            return web.json_response(self._ticker(sid or ""))
        wanted = list(self.symbols)
        if "symbols" in q:
            try:
                wanted = list(json.loads(q["symbols"]))
            except ValueError:
                raise binance_error(
                    400, -1100, "Illegal characters found in parameter 'symbols'."
                ) from None
            if any(s not in self.symbols for s in wanted):
                raise binance_error(400, -1121, "Invalid symbol.")
        return web.json_response([self._ticker(s) for s in wanted])

    async def ticker_price(self, request: web.Request) -> web.Response:
        """Last prices; BNBUSDT too (BNB is not simulated: a fixed price), for fees."""
        sid = request.query.get("symbol")
        if sid == "BNBUSDT":
            return web.json_response({"symbol": sid, "price": f"{self.core.bnb_usdt:.8f}"})
        sids = [self._symbol(dict(request.query)) or ""] if sid else list(self.symbols)
        rows = []
        for s in sids:
            book = self.core.book("binance", self.symbols[s].split("/")[0])
            assert book is not None
            rows.append({"symbol": s, "price": dec_str(book.mid)})
        return web.json_response(rows[0] if sid else rows)

    def _ticker(self, sid: str) -> dict[str, Any]:
        base = self.symbols[sid].split("/")[0]
        book = self.core.book("binance", base)
        assert book is not None
        vol = self.core.volumes[base].binance_quote_volume_usdt
        return shapes.ticker(
            sid, book, self.core.tickers.get("binance", base), vol, self.core.now_ms()
        )

    # --- private ------------------------------------------------------------------
    async def api_restrictions(self, request: web.Request) -> web.Response:
        await self._signed(request)
        return web.json_response({
            "ipRestrict": False, "createTime": self.core.now_ms(), "enableReading": True,
            "enableWithdrawals": False, "enableSpotAndMarginTrading": True,
            "enableInternalTransfer": False, "enableMargin": False, "enableFutures": False,
            "permitsUniversalTransfer": False, "enableVanillaOptions": False,
        })

    async def account(self, request: web.Request) -> web.Response:
        await self._signed(request)
        bals = await self.vs.engine.fetch_balance()
        return web.json_response(
            shapes.account({a: (b.free, b.used) for a, b in bals.items()}, self.core.now_ms())
        )

    async def create_order(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        vs, core = self.vs, self.core
        rec = vs.record(
            OrderRecord(
                seq=len(vs.records) + 1,
                venue="binance",
                received_ms=core.now_ms(),
                client_order_id=p.get("newClientOrderId"),
                symbol=self.symbols.get(p.get("symbol", "")),
                side=(p.get("side") or "").lower() or None,
                wire_type=p.get("type"),
                params=p,
                time_in_force=p.get("timeInForce"),
            )
        )
        try:
            resp = await self._create(p, rec)
        except ApiError as exc:
            if rec.outcome != "accepted":
                rec.outcome, rec.error = "rejected", exc.label
            rec.http_status = exc.status
            raise
        rec.http_status = 200
        return resp

    async def _create(self, p: dict[str, str], rec: OrderRecord) -> web.Response:
        vs, core = self.vs, self.core
        sid = self._symbol(p) or ""
        side_s, type_s = p.get("side"), p.get("type")
        if side_s not in ("BUY", "SELL"):
            raise binance_error(400, -1117, "Invalid side.")
        if type_s not in ("LIMIT", "MARKET"):
            raise binance_error(400, -1116, "Invalid orderType.")
        side = Side.BUY if side_s == "BUY" else Side.SELL
        cid = p.get("newClientOrderId") or f"emu{secrets.token_hex(10)}"
        rec.client_order_id = cid
        # A client order id must be unique among the account's open orders; once
        # the order is done the id may be used again (lookups find the newest).
        prev = vs.by_client.get(cid)
        if prev is not None and prev.paper_id is not None and vs.engine.is_working(prev.paper_id):
            raise binance_error(400, -2010, BN_DUPLICATE)
        if vs.market_status.get(self.symbols[sid], "TRADING") != "TRADING":
            raise binance_error(400, -1013, "Market is closed.")
        book = core.book("binance", self.symbols[sid].split("/")[0])
        assert book is not None
        ref = book.best_ask if side is Side.BUY else book.best_bid
        qty, price, cost = (
            parse_num(p.get("quantity")),
            parse_num(p.get("price")),
            parse_num(p.get("quoteOrderQty")),
        )
        otype = OrderType.LIMIT if type_s == "LIMIT" else OrderType.MARKET
        if otype is OrderType.LIMIT:
            tif = p.get("timeInForce")
            if tif is None:
                raise binance_error(
                    400,
                    -1102,
                    "Mandatory parameter 'timeInForce' was not sent, was empty/null, or malformed.",
                )
            if tif not in ("GTC", "IOC", "FOK"):
                raise binance_error(400, -1115, "Invalid timeInForce.")
            if qty is None or price is None:
                raise binance_error(
                    400,
                    -1102,
                    "Mandatory parameter 'quantity' or 'price' was not sent, was empty/null, or malformed.",
                )
            cost = None
        else:
            if "timeInForce" in p:
                raise binance_error(400, -1106, "Parameter 'timeInForce' sent when not required.")
            if (qty is None) == (cost is None):
                raise binance_error(
                    400,
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty!",
                )
            price = None
            rec.quote_qty = cost
        try:
            self.rules[sid].check(side, otype, qty, price, cost, ref)
        except RuleViolation as exc:
            raise _filter_error(exc) from None
        if cost is not None and side is Side.SELL:  # the matcher sizes sells in base
            qty, cost = self.rules[sid].round_amount(cost / ref, OrderType.MARKET), None
            if not qty:
                raise binance_error(400, -1013, "Filter failure: LOT_SIZE")
        path = "/api/v3/order"
        if core.faults.take("binance", "POST", path, ("insufficient_funds",)) is not None:
            rec.fault = "insufficient_funds"
            raise bn_insufficient()
        req = OrderRequest(self.symbols[sid], side, otype, qty, cid, price, cost)
        try:
            order = await core.place(vs, rec, req, str(next(vs.order_ids)))
        except OrderRejected as exc:
            if "insufficient" in str(exc):
                raise bn_insufficient() from None
            raise binance_error(400, -2010, str(exc)) from None
        if otype is OrderType.LIMIT and rec.time_in_force in ("IOC", "FOK"):
            vs.engine.make_immediate_or_cancel(order.id)
        self._order_faults(rec, order.id, path, immediate=otype is OrderType.MARKET)
        order = await vs.order_of(rec)  # with the fills made on arrival
        body = shapes.order_created(
            rec, order, sid, p.get("newOrderRespType", "FULL"), core.now_ms()
        )
        return web.json_response(body)

    def _order_faults(self, rec: OrderRecord, paper_id: str, path: str, immediate: bool) -> None:
        faults = self.core.faults
        pf = faults.take("binance", "POST", path, ("partial_fill",))
        if pf is not None:
            self.vs.engine.set_fill_ratio(paper_id, pf.ratio or 0.5)
            rec.fault = "partial_fill"
        if immediate:
            self.vs.engine.match_now(paper_id)  # a market order fills on arrival, or expires
        f5 = faults.take("binance", "POST", path, ("http_5xx_after_execute",))
        if f5 is not None:
            rec.fault = "http_5xx_after_execute"
            raise plain_error(f5.status or 503, "Service Unavailable")

    async def my_trades(self, request: web.Request) -> web.Response:
        """GET /api/v3/myTrades: the account's fills on a symbol (of one order with
        orderId), each with its commission and the asset it was charged in."""
        p = await self._signed(request)
        sid = self._symbol(p) or ""
        oid = p.get("orderId")
        paper_of = {r.paper_id: r for r in self.vs.records if r.paper_id is not None}
        rows = []
        for t in self.vs.engine.trades_of(self.symbols[sid]):
            rec = paper_of.get(t.order_id)
            if rec is None or (oid is not None and rec.order_id != oid):
                continue
            rows.append(shapes.my_trade(t, rec, sid))
        return web.json_response(rows)

    async def get_order(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        rec = self._find(p, -2013)
        order = await self.vs.order_of(rec)
        return web.json_response(
            shapes.order_queried(rec, order, self._sid(rec), self.core.now_ms())
        )

    async def cancel_order(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        rec = self._find(p, -2011)
        body = await self._cancel(rec, p.get("newClientOrderId"))
        return web.json_response(body)

    async def _cancel(self, rec: OrderRecord, cancel_id: str | None) -> dict[str, Any]:
        assert rec.paper_id is not None and rec.symbol is not None
        if not self.vs.engine.is_working(rec.paper_id):
            raise binance_error(400, -2011, BN_UNKNOWN_ORDER)
        rec.user_canceled = True
        cid = cancel_id or f"emucancel{secrets.token_hex(8)}"
        rec.cancel_client_id = cid  # the stream's CANCELED report carries it as `c`
        order = await self.vs.engine.cancel_order(rec.paper_id, rec.symbol)
        return shapes.order_canceled(rec, order, self._sid(rec), cid, self.core.now_ms())

    async def open_orders(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        sid = self._symbol(p, required=False)
        symbol = self.symbols[sid] if sid else None
        now = self.core.now_ms()
        out = []
        for rec in self.vs.open_records(symbol):
            order = await self.vs.order_of(rec)
            out.append(shapes.order_queried(rec, order, self._sid(rec), now))
        return web.json_response(out)

    async def cancel_open_orders(self, request: web.Request) -> web.Response:
        p = await self._signed(request)
        sid = self._symbol(p) or ""
        recs = self.vs.open_records(self.symbols[sid])
        if not recs:
            raise binance_error(400, -2011, BN_UNKNOWN_ORDER)
        return web.json_response([await self._cancel(r, None) for r in recs])


def _filter_error(exc: RuleViolation) -> ApiError:
    text = str(exc)
    if exc.rule == "price_filter":
        return binance_error(400, -1013, "Filter failure: PRICE_FILTER")
    if exc.rule in ("lot_size", "max_qty"):
        name = "MARKET_LOT_SIZE" if "MARKET_LOT_SIZE" in text else "LOT_SIZE"
        return binance_error(400, -1013, f"Filter failure: {name}")
    if exc.rule in ("min_notional", "max_notional"):
        return binance_error(400, -1013, "Filter failure: NOTIONAL")
    if exc.rule == "cost_precision":
        return binance_error(400, -1111, "Parameter 'quoteOrderQty' has too much precision.")
    return binance_error(400, -1102, text)


def weight(method: str, path: str, query: dict[str, str]) -> int:
    """Binance IP weight of a request."""
    sub = path[len(PREFIX) :]
    if sub == "/exchangeInfo" or sub == "/account":
        return 20
    if sub == "/depth":
        limit = int(query.get("limit", "100")) if query.get("limit", "100").isdigit() else 100
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    if sub == "/ticker/24hr":
        return 2 if "symbol" in query else 80
    if sub == "/ticker/price":
        return 2 if "symbol" in query else 4
    if sub == "/myTrades":
        return 20
    if sub == "/order":
        return 4 if method == "GET" else 1
    if sub == "/openOrders":
        return 1 if method == "DELETE" else (6 if "symbol" in query else 80)
    return 1
