"""Venue knowledge as data: one frozen VenueProfile per venue.

The adapters (ccxt config, the ccxt exchange, market data, reconciliation,
recovery) read these fields instead of asking which venue they talk to. What
is venue-specific is either a value (a parameter name, a marker in an error
body, a limit) or a small pure function of the venue's own data (how its
rules read from a ccxt market, how its headers report usage).
"""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.domain.models import Market, Venue
from core.venues.rate_budget import RateModel
from core.venues.rate_models import BINANCE_RATES, UPBIT_RATES
from core.venues.rules import BinanceSymbolRules, UpbitKrwRules, VenueRules

# Binance urls['api'] keys (ccxt 4.5.x) and the path each one appends to the host.
BINANCE_API_PATHS: dict[str, str] = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}
UPBIT_API_PATHS: dict[str, str] = {"public": "", "private": ""}


@dataclass(frozen=True, slots=True)
class StreamCapabilities:
    """What the venue's websocket streams offer through ccxt.pro (for the stream
    adapters; REST is the fallback). Method names are ccxt.pro's."""

    books: str  # the watch method for many books at once
    books_in_one_subscription: bool  # Upbit: many codes in one message
    book_resync: str  # how a gap is repaired: "snapshot+update_id" | "full_snapshot"
    orders: str = "watch_orders"
    my_trades: str = "watch_my_trades"
    balance: str = "watch_balance"
    ws_url_key: str = "ws"  # urls['api'][key] to point ccxt.pro at another host
    ws_market_key: str | None = None  # ...and the key under it (Binance: "spot")
    ws_path: str = ""  # the stream endpoint's path on that host
    # Binance's user data arrives over its WebSocket API (urls['api']['ws'][key][market]),
    # Upbit's on the public endpoint's path + "/private" (ccxt.pro appends it).
    private_ws_key: str | None = None
    orders_ack: bool = False  # the order-stream subscription is acknowledged (Binance)
    private_ws_path: str = ""
    production_base: str = ""  # the REST base whose streams are ccxt's own defaults


@dataclass(frozen=True, slots=True)
class KeySettings:
    """Settings (and their environment names) that carry this venue's key and URL."""

    key: str
    secret: str
    key_env: str
    secret_env: str
    api_base: str
    fee_bps: str


@dataclass(frozen=True, slots=True)
class VenueProfile:
    venue: Venue
    ccxt_id: str
    quote: str
    api_paths: Mapping[str, str]  # urls['api'] key -> path appended to the base URL
    ccxt_options: Mapping[str, Any]
    client_id_param: str  # how create_order sends our client order id
    # How an order is found by client id: "param" (the unified methods with a
    # clientOrderId param) or "identifier" (the implicit endpoints Upbit needs).
    client_id_lookup: str
    # Cancel-everything: "per_symbol" (DELETE openOrders per symbol) or "batch"
    # (one DELETE for every market, answered with what was accepted).
    cancel_all: str
    rejection_markers: tuple[str, ...]  # generic errors that are refusals
    cancel_race_markers: tuple[str, ...]  # "already done" answers to a cancel
    inactive_markers: tuple[str, ...]  # the market is closed: reject and mark it
    time_sync_markers: tuple[str, ...]  # our clock is off: reject, re-sync, alert
    auth_problems: Mapping[str, str]  # marker -> the key problem it names
    market_from_ccxt: Callable[[Venue, str, dict[str, Any]], tuple[Market, VenueRules]]
    rate: RateModel
    keys: KeySettings
    default_fee_bps: float
    fee_asset_rule: str  # documentation of how the venue charges (fills carry the truth)
    streams: StreamCapabilities
    # Where fills (and their fee currency) come from: "order" (the order carries
    # its fills and fee, as cumulative figures) or "trades" (the venue's fills:
    # the create answer's, then its trade list per order).
    fills_from: str = "order"
    # The price of an asset in the quote, for a fee charged in neither (BNB).
    asset_price: Callable[[Any, str, str], Awaitable[float]] | None = None
    # Read per-pair ticks from the venue (Upbit's /v1/orderbook/instruments).
    pair_ticks: bool = False
    # REST books: many symbols in one request (Upbit), else one request per symbol.
    books_in_one_request: bool = False
    # Reconciliation: a quote balance this close to the journal's is not drift.
    quote_tolerance: str = "0"
    # ccxt order fields for a market buy sized in quote: (budget, executed cost).
    cost_budget: Callable[[Mapping[str, Any]], float | None] = field(
        default=lambda info: None)


def _binance_market(venue: Venue, symbol: str, m: dict[str, Any]
                    ) -> tuple[Market, VenueRules]:
    rules = BinanceSymbolRules.from_exchange_info(m["info"])
    market = Market(symbol, m["base"], m["quote"], venue, bool(m.get("active")),
                    float(m["precision"]["amount"]),
                    float((m["limits"]["amount"] or {}).get("min") or 0),
                    float((m["limits"]["cost"] or {}).get("min") or 0),
                    float(m["precision"]["price"]))
    return market, rules


def _upbit_market(venue: Venue, symbol: str, m: dict[str, Any]) -> tuple[Market, VenueRules]:
    # ccxt applies none of Upbit's KRW rules: the tick table (or the pair's own
    # tick, read later) and the 5,000 KRW minimum come from core.venues.rules.
    rules = UpbitKrwRules(symbol)
    market = Market(symbol, m["base"], m["quote"], venue, bool(m.get("active", True)),
                    1e-8, 1e-8, float(rules.min_total), None)
    return market, rules


async def _binance_asset_price(client: Any, asset: str, quote: str) -> float:
    raw = await client.public_get_ticker_price({"symbol": f"{asset}{quote}"})
    return float(raw["price"])


def _binance_budget(info: Mapping[str, Any]) -> float | None:
    q = info.get("origQuoteOrderQty")
    return float(q) if q is not None and float(q) > 0 else None


def _upbit_budget(info: Mapping[str, Any]) -> float | None:
    # ord_type=price: `price` is the KRW to spend, not a limit price.
    if info.get("ord_type") == "price" and info.get("price") is not None:
        return float(info["price"])
    return None


BINANCE = VenueProfile(
    venue=Venue.BINANCE,
    ccxt_id="binance",
    quote="USDT",
    api_paths=BINANCE_API_PATHS,
    # Spot only, so load_markets makes one call; open orders may be listed
    # without a symbol (weight 80: only recovery and reconciliation do it).
    ccxt_options={
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
        "fetchOpenOrders": {"warnWithoutSymbol": False},
    },
    client_id_param="newClientOrderId",
    client_id_lookup="param",
    cancel_all="per_symbol",
    rejection_markers=(),  # ccxt's own table classifies Binance's codes
    cancel_race_markers=(),  # -2011 is OrderNotFound
    inactive_markers=("Market is closed.", "CANCEL_ONLY"),
    time_sync_markers=("-1021",),
    auth_problems={
        "-2015": "the API key is invalid, this IP is not allowed, or it lacks the permission",
        "-2014": "the API key's format is invalid",
        "-1022": "the signature is invalid (check the API secret)",
    },
    market_from_ccxt=_binance_market,
    rate=BINANCE_RATES,
    keys=KeySettings("binance_api_key", "binance_api_secret", "BINANCE_API_KEY",
                     "BINANCE_API_SECRET", "binance_api_base", "binance_fee_bps"),
    default_fee_bps=10.0,
    fee_asset_rule=("per fill: a BUY pays in the base asset received, a SELL in the "
                    "quote; both in BNB when the account's BNB discount is on"),
    streams=StreamCapabilities(books="watch_order_book_for_symbols",
                               books_in_one_subscription=False,
                               book_resync="snapshot+update_id",
                               ws_market_key="spot", ws_path="/ws",
                               private_ws_key="ws-api", private_ws_path="/ws-api/v3",
                               orders_ack=True,
                               production_base="https://api.binance.com"),
    cost_budget=_binance_budget,
    quote_tolerance="0.02",
    fills_from="trades",
    asset_price=_binance_asset_price,
)

UPBIT = VenueProfile(
    venue=Venue.UPBIT,
    ccxt_id="upbit",
    quote="KRW",
    api_paths=UPBIT_API_PATHS,
    # Market buys are sized in KRW through `cost`, never amount x price.
    ccxt_options={"createMarketBuyOrderRequiresPrice": False},
    client_id_param="identifier",
    client_id_lookup="identifier",
    cancel_all="batch",
    # ccxt raises a bare ExchangeError for these: they are refusals.
    rejection_markers=("under_min_total", "invalid_price", "create_bid_error",
                       "create_ask_error", "validation_error", "insufficient_funds",
                       "invalid_volume", "volume_too_large", "invalid_funds", "identifier"),
    cancel_race_markers=("done_order", "canceled_order"),
    inactive_markers=(),
    time_sync_markers=(),  # a JWT nonce, no timestamp: nothing to re-sync
    auth_problems={
        "invalid_query_payload": "the signed query does not match the request (JWT query_hash)",
        "nonce_used": "a JWT nonce was used twice",
        "no_authorization_i_p": "this IP is not on the API key's allowed list",
        "expired_access_key": "the API key has expired",
        "This key has expired.": "the API key has expired",
        "jwt_verification": "the JWT signature is invalid (check the secret key)",
        "invalid_access_key": "the access key is unknown",
        "no_authorization_token": "no Authorization header was sent",
        "out_of_scope": "the API key lacks the permission for this call",
    },
    market_from_ccxt=_upbit_market,
    rate=UPBIT_RATES,
    keys=KeySettings("upbit_access_key", "upbit_secret_key", "UPBIT_ACCESS_KEY",
                     "UPBIT_SECRET_KEY", "upbit_api_base", "upbit_fee_bps"),
    default_fee_bps=5.0,
    fee_asset_rule="per order, in KRW (paid_fee), on buys and sells alike",
    # ccxt.pro's Upbit watches one book per call; one orderbook request with
    # every code is what the venue documents (core.venues.book_streams).
    streams=StreamCapabilities(books="orderbook_codes",
                               books_in_one_subscription=True,
                               book_resync="full_snapshot", ws_path="/websocket/v1",
                               production_base="https://api.upbit.com"),
    pair_ticks=True,
    books_in_one_request=True,
    quote_tolerance="20",
    cost_budget=_upbit_budget,
)

PROFILES: dict[Venue, VenueProfile] = {p.venue: p for p in (UPBIT, BINANCE)}


def profile_of(venue: Venue | str) -> VenueProfile:
    try:
        return PROFILES[Venue(venue)]
    except ValueError:
        raise ValueError(f"unknown venue {venue!r}: expected one of "
                         f"{', '.join(map(str, PROFILES))}") from None
