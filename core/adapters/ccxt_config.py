"""ccxt constructor config for each venue (venues.md §1): pure data, no ccxt import.

Binance is restricted to spot so `load_markets` makes one call, and every other
API family is pointed at the same base so a stray call shows up (as a 404 at
the emulator) instead of leaving the machine.
"""
from __future__ import annotations

from typing import Any

from core.domain.models import Venue

BINANCE_API_KEYS = ("public", "private", "sapi", "sapiV2", "sapiV3", "sapiV4", "fapiPublic",
                    "fapiPrivate", "fapiPublicV2", "fapiPrivateV2", "dapiPublic", "dapiPrivate",
                    "eapiPublic", "eapiPrivate", "papi", "v1")


def ccxt_config(venue: Venue | str, base_url: str, api_key: str | None, secret: str | None,
                timeout_ms: int = 10_000) -> dict[str, Any]:
    base = base_url.rstrip("/")
    cfg: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms}
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    if Venue(venue) is Venue.BINANCE:
        api = {k: f"{base}/api/v3" for k in ("public", "private")}
        api.update({k: f"{base}/{k}" for k in BINANCE_API_KEYS if k not in api})
        cfg["urls"] = {"api": api}
        cfg["options"] = {
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
            "fetchOpenOrders": {"warnWithoutSymbol": False},
            "defaultType": "spot",
        }
    else:
        cfg["urls"] = {"api": {"public": base, "private": base}}
        cfg["options"] = {"createMarketBuyOrderRequiresPrice": False}
    return cfg
