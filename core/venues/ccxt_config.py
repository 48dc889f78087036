"""ccxt constructor config for each venue: pure data, no ccxt import.

Everything venue-specific comes from the venue's profile: which `urls['api']`
keys to point at the base URL (for Binance every API family, so at the
emulator a stray sapi/fapi call shows up as a 404 instead of reaching a real
venue, and the websocket streams on the same host) and the ccxt options (Binance spot only, so `load_markets` makes one call).
"""
from __future__ import annotations

import copy
from typing import Any

from core.domain.models import Venue
from core.venues.profiles import BINANCE_API_PATHS, profile_of

__all__ = ["BINANCE_API_PATHS", "ccxt_config"]


def ccxt_config(venue: Venue | str, base_url: str, api_key: str | None, secret: str | None,
                timeout_ms: int = 10_000) -> dict[str, Any]:
    """The `ccxt.async_support.<venue>(config)` dict for a venue at `base_url`."""
    profile = profile_of(venue)
    base = base_url.rstrip("/")
    cfg: dict[str, Any] = {"enableRateLimit": True, "timeout": timeout_ms}
    if api_key is not None:
        cfg["apiKey"] = api_key
    if secret is not None:
        cfg["secret"] = secret
    cfg["urls"] = {"api": {name: base + path for name, path in profile.api_paths.items()}}
    streams = profile.streams
    if base != streams.production_base.rstrip("/"):
        # Anywhere but the venue itself (the emulator), its streams live on the same host.
        ws = "ws" + base.removeprefix("http") + streams.ws_path
        cfg["urls"]["api"][streams.ws_url_key] = (
            {streams.ws_market_key: ws} if streams.ws_market_key else ws)
        if streams.private_ws_key is not None and streams.ws_market_key is not None:
            # ccxt deep-merges this into its own URLs: without it the private
            # streams would go to the real venue.
            private = "ws" + base.removeprefix("http") + streams.private_ws_path
            cfg["urls"]["api"][streams.ws_url_key][streams.private_ws_key] = {
                streams.ws_market_key: private}
    cfg["options"] = copy.deepcopy(dict(profile.ccxt_options))
    return cfg
