"""ccxt constructor config for each venue (venues.md §1): pure data, no ccxt import.

Binance is restricted to spot so `load_markets` makes one call, and every API
family is pointed at the configured base, so at the emulator a stray
sapi/fapi call shows up as a 404 instead of reaching a real venue.
"""
from __future__ import annotations

from typing import Any

from core.domain.models import Venue

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



def ccxt_config(venue: Venue | str, base_url: str, api_key: str | None, secret: str | None,
                timeout_ms: int = 10_000) -> dict[str, Any]:
    """The `ccxt.async_support.<venue>(config)` dict for a venue at `base_url`."""
    base = base_url.rstrip("/")
    try:
        v = Venue(venue)
    except ValueError:
        raise ValueError(f"unknown venue {venue!r}: expected 'binance' or 'upbit'") from None
    cfg: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms}
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    if v is Venue.BINANCE:
        cfg["urls"] = {"api": {name: base + path for name, path in BINANCE_API_PATHS.items()}}
        cfg["options"] = {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
        }
    else:
        cfg["urls"] = {"api": {"public": base, "private": base}}
        # Market buys are sized in KRW through `cost`, never amount x price.
        cfg["options"] = {"createMarketBuyOrderRequiresPrice": False}
    return cfg
