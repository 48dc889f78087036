"""Upbit response bodies: quotation numbers, exchange decimal strings."""

from __future__ import annotations

import datetime as dt
from typing import Any

from bot.drill.emulator.numfmt import dec_str
from bot.drill.emulator.state import OrderRecord
from bot.drill.emulator.ticker_stats import Ohl
from core.domain.models import Order, OrderBook, OrderStatus, Side

KST = dt.timezone(dt.timedelta(hours=9))


def iso_kst(ms: int, micro: bool = False) -> str:
    t = dt.datetime.fromtimestamp(ms / 1000.0, tz=KST)
    return t.isoformat(timespec="microseconds" if micro else "seconds")


def market_code(symbol: str) -> str:
    base, quote = symbol.split("/")
    return f"{quote}-{base}"


def orderbook(code: str, book: OrderBook, count: int) -> dict[str, Any]:
    n = min(count, len(book.bids), len(book.asks))
    bids, asks = book.bids[:n], book.asks[:n]
    return {
        "market": code,
        "timestamp": book.timestamp_ms,
        "total_ask_size": round(sum(q for _, q in asks), 8),
        "total_bid_size": round(sum(q for _, q in bids), 8),
        "orderbook_units": [
            {
                "ask_price": a[0],
                "bid_price": b[0],
                "ask_size": round(a[1], 8),
                "bid_size": round(b[1], 8),
            }
            for a, b in zip(asks, bids, strict=True)
        ],
        "level": 0,
    }


def ticker(
    code: str, book: OrderBook, ohl: Ohl | None, volume_krw: float, now_ms: int
) -> dict[str, Any]:
    last = book.best_bid  # a trade at the bid: on the tick grid, unlike the mid
    o = ohl or Ohl(last, last, last, last, now_ms)
    change = last - o.open
    t = dt.datetime.fromtimestamp(now_ms / 1000.0, tz=dt.UTC)
    k = t.astimezone(KST)
    return {
        "market": code,
        "trade_date": t.strftime("%Y%m%d"),
        "trade_time": t.strftime("%H%M%S"),
        "trade_date_kst": k.strftime("%Y%m%d"),
        "trade_time_kst": k.strftime("%H%M%S"),
        "trade_timestamp": now_ms,
        "opening_price": o.open,
        "high_price": max(o.high, last),
        "low_price": min(o.low, last),
        "trade_price": last,
        "prev_closing_price": o.open,
        "change": "RISE" if change > 0 else "FALL" if change < 0 else "EVEN",
        "change_price": abs(change),
        "change_rate": abs(change) / o.open if o.open else 0.0,
        "signed_change_price": change,
        "signed_change_rate": change / o.open if o.open else 0.0,
        "trade_volume": round(book.bids[0][1] * 0.01, 8),
        "acc_trade_price": volume_krw / 2,
        "acc_trade_price_24h": volume_krw,
        "acc_trade_volume": volume_krw / 2 / last if last else 0.0,
        "acc_trade_volume_24h": volume_krw / last if last else 0.0,
        "highest_52_week_price": max(o.high, last) * 1.5,
        "highest_52_week_date": "2025-12-01",
        "lowest_52_week_price": min(o.low, last) * 0.5,
        "lowest_52_week_date": "2025-04-07",
        "timestamp": now_ms,
    }


def state_of(order: Order) -> str:
    if order.status is OrderStatus.OPEN:
        return "wait"
    return "done" if order.status is OrderStatus.CLOSED else "cancel"


def order_json(
    rec: OrderRecord,
    order: Order,
    fee_rate: float,
    locked: float,
    with_trades: bool = False,
    state: str | None = None,
) -> dict[str, Any]:
    bid = order.side is Side.BUY
    st = state or state_of(order)
    if rec.wire_type == "price":
        price: str | None = dec_str(rec.quote_qty)
        volume = remaining = None
        reserved_fee = (rec.quote_qty or 0.0) * fee_rate
    else:
        price = dec_str(order.price) if order.price is not None else None
        volume = dec_str(order.amount)
        remaining = dec_str(round(max((order.amount or 0.0) - order.filled, 0.0), 8))
        reserved_fee = (order.amount or 0.0) * (order.price or 0.0) * fee_rate if bid else 0.0
    remaining_fee = max(reserved_fee - order.fee_cost, 0.0) if st == "wait" else 0.0
    out: dict[str, Any] = {
        "uuid": rec.order_id,
        "side": "bid" if bid else "ask",
        "ord_type": rec.wire_type,
        "price": price,
        "state": st,
        "market": market_code(order.symbol),
        "created_at": iso_kst(order.timestamp_ms),
        "volume": volume,
        "remaining_volume": remaining,
        "reserved_fee": dec_str(round(reserved_fee, 8)),
        "remaining_fee": dec_str(round(remaining_fee, 8)),
        "paid_fee": dec_str(round(order.fee_cost, 8)),
        "locked": dec_str(round(locked, 8)),
        "prevented_volume": "0",
        "prevented_locked": "0",
        "executed_volume": dec_str(round(order.filled, 8)),
        "executed_funds": dec_str(round(order.cost, 8)),
        "trades_count": len(order.trades),
    }
    if rec.client_order_id is not None:
        out["identifier"] = rec.client_order_id
    if rec.time_in_force:
        out["time_in_force"] = rec.time_in_force
    if with_trades:
        out["trades"] = [
            {
                "market": out["market"],
                "uuid": t.id,
                "price": dec_str(t.price),
                "volume": dec_str(round(t.amount, 8)),
                "funds": dec_str(round(t.cost, 8)),
                "trend": None,
                "created_at": iso_kst(t.timestamp_ms, micro=True),
                "side": out["side"],
            }
            for t in order.trades
        ]
    return out


def account_rows(balances: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    return [
        {
            "currency": a,
            "balance": dec_str(round(max(f, 0.0), 8)),
            "locked": dec_str(round(max(u, 0.0), 8)),
            "avg_buy_price": "0",
            "avg_buy_price_modified": False,
            "unit_currency": "KRW",
        }
        for a, (f, u) in sorted(balances.items(), key=lambda kv: (kv[0] != "KRW", kv[0]))
    ]
