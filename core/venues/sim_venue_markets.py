"""Venue market descriptions for simulated symbols, shaped like the real ones.

Binance: tick and step chosen from the price scale the way Binance lists
symbols (about five significant price digits; a step worth about one dollar at
most), minNotional 5 USDT. Upbit: the KRW tick table applies and the minimum
order is 5,000 KRW.
"""
from __future__ import annotations

import math

from core.domain.models import Market, Venue

UPBIT_MIN_TOTAL_KRW = 5000.0
BINANCE_MIN_NOTIONAL_USDT = 5.0


def sim_market(venue: Venue, base: str, mid: float) -> Market:
    if venue is Venue.UPBIT:
        return Market(
            symbol=f"{base}/KRW",
            base=base,
            quote="KRW",
            venue=venue,
            active=True,
            amount_step=1e-8,
            min_amount=1e-8,
            min_cost=UPBIT_MIN_TOTAL_KRW,
            price_tick=None,
        )
    exp = math.floor(math.log10(mid))
    tick = 10.0 ** (exp - 6) if exp >= 2 else 10.0 ** (exp - 4)
    step = 10.0 ** math.floor(math.log10(1.0 / mid))
    return Market(
        symbol=f"{base}/USDT",
        base=base,
        quote="USDT",
        venue=venue,
        active=True,
        amount_step=float(f"{step:.0e}"),
        min_amount=float(f"{step:.0e}"),
        min_cost=BINANCE_MIN_NOTIONAL_USDT,
        price_tick=float(f"{tick:.0e}"),
    )
