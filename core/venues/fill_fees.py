"""A fill's fee in the asset the venue charged, valued in the pair's quote.

Binance takes a BUY's commission from the base asset received (a SELL's from
the quote), or in BNB when the account's discount is on; Upbit always in KRW.
The fill carries the amount and the asset; for PnL the fee is valued in the
quote at the fill: a base fee at the fill's price, another asset (BNB) at its
current price on the venue, read once a minute at most.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.errors import ExchangeError
from core.venues.profiles import VenueProfile

PRICE_TTL_S = 60.0


class FeePricer:
    def __init__(self, profile: VenueProfile, client: Any,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.profile = profile
        self.client = client
        self._now = monotonic
        self._prices: dict[tuple[str, str], tuple[float, float]] = {}  # -> (price, read at)

    async def in_quote(self, symbol: str, fee_ccy: str, fee: float, price: float) -> float:
        base, _, quote = symbol.partition("/")
        if fee_ccy == quote or fee == 0.0:
            return fee
        if fee_ccy == base:
            return fee * price
        return fee * await self.asset_price(fee_ccy, quote)

    async def asset_price(self, asset: str, quote: str) -> float:
        cached = self._prices.get((asset, quote))
        if cached is not None and self._now() - cached[1] < PRICE_TTL_S:
            return cached[0]
        if self.profile.asset_price is None:
            raise ExchangeError(f"{self.profile.venue}: no price source for a fee in {asset}")
        try:
            px = await self.profile.asset_price(self.client, asset, quote)
        except Exception as exc:
            raise ExchangeError(f"{self.profile.venue}: no {asset}/{quote} price for a fee: "
                                f"{exc}") from exc
        self._prices[(asset, quote)] = (px, self._now())
        return px
