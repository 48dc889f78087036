"""Binance spot response bodies, built from sim objects."""

from __future__ import annotations

from typing import Any

from bot.drill.emulator.numfmt import dec_str
from bot.drill.emulator.state import OrderRecord
from bot.drill.emulator.ticker_stats import Ohl
from core.domain.models import Market, Order, OrderBook, OrderStatus, Side, Trade

_BIG = "9000000.00000000"


def symbol_id(market: Market) -> str:
    return f"{market.base}{market.quote}"


def symbol_info(market: Market) -> dict[str, Any]:
    tick = dec_str(market.price_tick or 0)
    step = dec_str(market.amount_step)
    return {
        "symbol": symbol_id(market),
        "status": "TRADING",
        "baseAsset": market.base,
        "baseAssetPrecision": 8,
        "quoteAsset": market.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "MARKET"],
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": _BIG, "tickSize": tick},
            {"filterType": "LOT_SIZE", "minQty": step, "maxQty": _BIG, "stepSize": step},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": _BIG,
                "stepSize": "0.00000000",
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": dec_str(market.min_cost, 8),
                "applyMinToMarket": True,
                "maxNotional": _BIG,
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def exchange_info(infos: list[dict[str, Any]], now_ms: int) -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "serverTime": now_ms,
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
            },
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {
                "rateLimitType": "RAW_REQUESTS",
                "interval": "MINUTE",
                "intervalNum": 5,
                "limit": 61000,
            },
        ],
        "exchangeFilters": [],
        "symbols": infos,
    }


def depth(book: OrderBook, limit: int, last_update_id: int | None = None) -> dict[str, Any]:
    return {
        "lastUpdateId": book.seq if last_update_id is None else last_update_id,
        "bids": [[dec_str(p), dec_str(q, 8)] for p, q in book.bids[:limit]],
        "asks": [[dec_str(p), dec_str(q, 8)] for p, q in book.asks[:limit]],
    }


def ticker(
    sym_id: str, book: OrderBook, ohl: Ohl | None, volume_quote: float, now_ms: int
) -> dict[str, Any]:
    last = book.mid
    o = ohl or Ohl(last, last, last, last, now_ms)
    vol_base = volume_quote / last if last > 0 else 0.0
    return {
        "symbol": sym_id,
        "priceChange": dec_str(last - o.open),
        "priceChangePercent": dec_str(round((last / o.open - 1) * 100, 3) if o.open else 0.0),
        "weightedAvgPrice": dec_str(last),
        "prevClosePrice": dec_str(o.open),
        "lastPrice": dec_str(last),
        "lastQty": dec_str(book.bids[0][1], 8),
        "bidPrice": dec_str(book.best_bid),
        "bidQty": dec_str(book.bids[0][1], 8),
        "askPrice": dec_str(book.best_ask),
        "askQty": dec_str(book.asks[0][1], 8),
        "openPrice": dec_str(o.open),
        "highPrice": dec_str(max(o.high, last)),
        "lowPrice": dec_str(min(o.low, last)),
        "volume": dec_str(round(vol_base, 8)),
        "quoteVolume": dec_str(round(volume_quote, 8)),
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": 1,
        "lastId": 1000,
        "count": 1000,
    }


def status_of(rec: OrderRecord, order: Order) -> str:
    if order.status is OrderStatus.OPEN:
        return "PARTIALLY_FILLED" if order.filled > 0 else "NEW"
    if order.status is OrderStatus.CLOSED:
        return "FILLED"
    if order.status is OrderStatus.CANCELED:
        return "CANCELED" if rec.user_canceled else "EXPIRED"
    return str(order.status).upper()


def _base_fields(rec: OrderRecord, order: Order, sym_id: str) -> dict[str, Any]:
    orig = order.amount if order.amount is not None else order.filled
    return {
        "symbol": sym_id,
        "orderId": int(rec.order_id or 0),
        "orderListId": -1,
        "clientOrderId": rec.client_order_id,
        "price": dec_str(order.price) if order.price else "0.00000000",
        "origQty": dec_str(orig, 8),
        "executedQty": dec_str(order.filled, 8),
        "origQuoteOrderQty": dec_str(rec.quote_qty or 0.0, 8),
        "cummulativeQuoteQty": dec_str(order.cost, 8),
        "status": status_of(rec, order),
        "timeInForce": rec.time_in_force or "GTC",
        "type": rec.wire_type,
        "side": "BUY" if order.side is Side.BUY else "SELL",
        "workingTime": order.timestamp_ms,
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def trade_id(t: Trade) -> int:
    tail = t.id.rsplit("t", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def fills(order: Order) -> list[dict[str, Any]]:
    return [
        {
            "price": dec_str(t.price),
            "qty": dec_str(t.amount, 8),
            "commission": dec_str(t.fee_cost, 8),
            "commissionAsset": t.fee_currency,
            "tradeId": trade_id(t),
        }
        for t in order.trades
    ]


def my_trade(t: Trade, rec: OrderRecord, sym_id: str) -> dict[str, Any]:
    """One row of GET /api/v3/myTrades."""
    return {
        "symbol": sym_id,
        "id": trade_id(t),
        "orderId": int(rec.order_id or 0),
        "orderListId": -1,
        "price": dec_str(t.price),
        "qty": dec_str(t.amount, 8),
        "quoteQty": dec_str(t.cost, 8),
        "commission": dec_str(t.fee_cost, 8),
        "commissionAsset": t.fee_currency,
        "time": t.timestamp_ms,
        "isBuyer": t.side is Side.BUY,
        "isMaker": False,
        "isBestMatch": True,
    }


def order_created(
    rec: OrderRecord, order: Order, sym_id: str, resp_type: str, now_ms: int
) -> dict[str, Any]:
    if resp_type == "ACK":
        return {
            "symbol": sym_id,
            "orderId": int(rec.order_id or 0),
            "orderListId": -1,
            "clientOrderId": rec.client_order_id,
            "transactTime": now_ms,
        }
    out = _base_fields(rec, order, sym_id)
    out["transactTime"] = now_ms
    if resp_type == "FULL":
        out["fills"] = fills(order)
    return out


def order_queried(rec: OrderRecord, order: Order, sym_id: str, now_ms: int) -> dict[str, Any]:
    out = _base_fields(rec, order, sym_id)
    out.update(
        stopPrice="0.00000000",
        icebergQty="0.00000000",
        time=order.timestamp_ms,
        updateTime=order.trades[-1].timestamp_ms if order.trades else order.timestamp_ms,
        isWorking=True,
    )
    return out


def order_canceled(
    rec: OrderRecord, order: Order, sym_id: str, cancel_id: str, now_ms: int
) -> dict[str, Any]:
    out = _base_fields(rec, order, sym_id)
    out["origClientOrderId"] = rec.client_order_id
    out["clientOrderId"] = cancel_id
    out["transactTime"] = now_ms
    return out


def account(balances: dict[str, tuple[float, float]], now_ms: int) -> dict[str, Any]:
    return {
        "makerCommission": 10,
        "takerCommission": 10,
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": "0.00100000",
            "taker": "0.00100000",
            "buyer": "0.00000000",
            "seller": "0.00000000",
        },
        "canTrade": True,
        "canWithdraw": True,
        "canDeposit": True,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": now_ms,
        "accountType": "SPOT",
        "balances": [
            {"asset": a, "free": dec_str(max(f, 0.0), 8), "locked": dec_str(max(u, 0.0), 8)}
            for a, (f, u) in sorted(balances.items())
        ],
        "permissions": ["SPOT"],
        "uid": 354937868,
    }
