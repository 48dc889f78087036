"""ccxt constructor configs that point a venue client at the local emulator.

Pure dicts, no ccxt import: the ccxt adapter builds its client from these
(venues.md §1). Every Binance API family is pointed at the emulator so a stray
sapi/fapi call shows up there as a 404 instead of reaching the real venue.
"""

from __future__ import annotations

from typing import Any

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


def ccxt_config(venue: str, url: str, key: str, secret: str) -> dict[str, Any]:
    """The `ccxt.async_support.<venue>(config)` dict for the emulator at `url`.

    venue is "binance" or "upbit"; url is the emulator base, e.g. "http://127.0.0.1:8765".
    """
    base = url.rstrip("/")
    if venue == "binance":
        return {
            "apiKey": key,
            "secret": secret,
            "enableRateLimit": True,
            "urls": {"api": {name: base + path for name, path in BINANCE_API_PATHS.items()}},
            "options": {
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
        }
    if venue == "upbit":
        return {
            "apiKey": key,
            "secret": secret,
            "enableRateLimit": True,
            "urls": {"api": {"public": base, "private": base}},
        }
    raise ValueError(f"unknown venue {venue!r}: expected 'binance' or 'upbit'")
