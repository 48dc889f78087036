"""The venues' published request limits, as RateModel data (see rate_budget).

Binance spot: REQUEST_WEIGHT 6,000 per minute per IP, ORDERS 100 per 10 s and
200,000 per day per account (exchangeInfo.rateLimits); the used figures come
back in X-MBX-USED-WEIGHT-1M and X-MBX-ORDER-COUNT-10S/-1D. A request's weight
is ccxt's cost for it divided by 0.2, ccxt's own scale for Binance's spot API
(the sapi family is scaled by 0.1).

Upbit: requests per second per group - the quotation groups 10/s per IP, the
exchange `default` group 30/s, `order` 8/s, batch cancel far lower (one per two
seconds, ccxt budgets 0.5/s); every answer says what is left this second in
`Remaining-Req: group=default; min=1800; sec=29`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

from core.venues.rate_budget import ALL, Block, Limit, RateModel, Units, retry_after_s


def _header(headers: Mapping[str, str], name: str) -> str | None:
    low = name.lower()
    for key, value in headers.items():
        if key.lower() == low:
            return value
    return None


# --- Binance --------------------------------------------------------------------------
BINANCE_LIMITS = (
    Limit("weight", 6000, 60.0),
    Limit("orders_10s", 100, 10.0),
    Limit("orders_1d", 200_000, 86_400.0),
)
BINANCE_BAN_DEFAULT_S = 120.0  # a 418 is "2 minutes to 3 days"; its Retry-After says which


def _binance_classify(api: str, method: str, path: str, cost: float) -> Units:
    scale = 10.0 if api.startswith("sapi") else 5.0
    units: list[tuple[str, float]] = [("weight", max(cost * scale, 1.0))]
    if method == "POST" and path == "order":
        units += [("orders_10s", 1.0), ("orders_1d", 1.0)]
    return tuple(units)


def _binance_usage(headers: Mapping[str, str]) -> list[tuple[str, float]]:
    out = []
    for header, name in (("X-MBX-USED-WEIGHT-1M", "weight"),
                         ("X-MBX-ORDER-COUNT-10S", "orders_10s"),
                         ("X-MBX-ORDER-COUNT-1D", "orders_1d")):
        value = _header(headers, header)
        if value is not None and value.strip().isdigit():
            out.append((name, float(value)))
    return out


def _binance_code(body: str) -> int | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    code = data.get("code") if isinstance(data, dict) else None
    return code if isinstance(code, int) else None


def _binance_block(status: int, headers: Mapping[str, str], body: str, units: Units) -> Block:
    if status == 418:  # an IP ban: nothing at all until it ends
        return Block((ALL,), retry_after_s(headers, BINANCE_BAN_DEFAULT_S))
    if _binance_code(body) == -1015:  # too many orders: an account limit, orders only
        return Block(("orders_10s",), retry_after_s(headers, 10.0))
    # Request weight is counted per IP on every request: all of them wait.
    return Block((ALL,), retry_after_s(headers, 60.0))


BINANCE_RATES = RateModel(limits=BINANCE_LIMITS, classify=_binance_classify,
                          usage=_binance_usage, block=_binance_block, pace_slices=4)


# --- Upbit ----------------------------------------------------------------------------
UPBIT_LIMITS = (
    Limit("market", 10, 1.0),
    Limit("candle", 10, 1.0),
    Limit("trade", 10, 1.0),
    Limit("ticker", 10, 1.0),
    Limit("orderbook", 10, 1.0),
    Limit("default", 30, 1.0),
    Limit("order", 8, 1.0),
    Limit("order-cancel-all", 1, 2.0),
)
_UPBIT_LIMIT = {lim.name: lim.limit for lim in UPBIT_LIMITS}
UPBIT_BAN_DEFAULT_S = 60.0


def upbit_group(api: str, method: str, path: str) -> str:
    """The Remaining-Req group of a request, from ccxt's path (no /v1 prefix)."""
    path = path.lstrip("/")
    if path.startswith("v1/"):
        path = path[3:]
    if path.startswith("market/"):
        return "market"
    if path.startswith("candles"):
        return "candle"
    if path.startswith("trades"):
        return "trade"
    if path.startswith("ticker"):
        return "ticker"
    if path.startswith("orderbook"):
        return "orderbook"
    if path == "orders" and method == "POST":
        return "order"
    if path == "orders/open" and method == "DELETE":
        return "order-cancel-all"
    return "default"


def _upbit_classify(api: str, method: str, path: str, cost: float) -> Units:
    return ((upbit_group(api, method, path), 1.0),)


def parse_remaining_req(value: str) -> tuple[str, int] | None:
    """`group=default; min=1800; sec=29` -> ("default", 29)."""
    fields = dict(part.strip().split("=", 1) for part in value.split(";") if "=" in part)
    group, sec = fields.get("group"), fields.get("sec", "")
    if group is None or not sec.strip().lstrip("-").isdigit():
        return None
    return group.strip(), int(sec)


def _upbit_usage(headers: Mapping[str, str]) -> list[tuple[str, float]]:
    value = _header(headers, "Remaining-Req")
    parsed = parse_remaining_req(value) if value else None
    if parsed is None or parsed[0] not in _UPBIT_LIMIT:
        return []
    group, left = parsed
    return [(group, max(_UPBIT_LIMIT[group] - left, 0.0))]


def _upbit_block(status: int, headers: Mapping[str, str], body: str, units: Units) -> Block:
    if status == 418:
        return Block((ALL,), retry_after_s(headers, UPBIT_BAN_DEFAULT_S))
    # A 429 is per group: the one the answer names, else the request's own.
    value = _header(headers, "Remaining-Req")
    parsed = parse_remaining_req(value) if value else None
    groups = (parsed[0],) if parsed is not None else tuple(n for n, _ in units) or (ALL,)
    return Block(groups, retry_after_s(headers, 1.0))


UPBIT_RATES = RateModel(limits=UPBIT_LIMITS, classify=_upbit_classify, usage=_upbit_usage,
                        block=_upbit_block)
