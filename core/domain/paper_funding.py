"""What the paper venues hold before the first order (R-M4: pre-funded inventory).

Each venue gets its quote (`paper_initial_usd` worth: KRW at the FX on Upbit, USDT
on Binance) and every traded base (`paper_base_usd` worth, or 20 x the order
notional, at least $1,000, at that venue's own price); `paper_funding` overrides
any (venue, asset) in units of the asset. These holdings are what the inventory
revaluation figure revalues.
"""
from __future__ import annotations

from core.domain.models import MarketSnapshot, Venue

Holdings = dict[tuple[Venue, str], float]


def parse_funding(text: str) -> Holdings:
    """`upbit:BTC=0.5,binance:USDT=5000` -> {(UPBIT, "BTC"): 0.5, ...}; a bad item is
    a ValueError naming it."""
    out: Holdings = {}
    for item in (x.strip() for x in text.split(",")):
        if not item:
            continue
        try:
            where, amount = item.split("=")
            venue, asset = where.split(":")
            qty = float(amount)
            key = (Venue(venue.strip().lower()), asset.strip().upper())
        except ValueError:
            raise ValueError(f"paper funding item {item!r} is not venue:ASSET=amount "
                             "(venue upbit or binance)") from None
        if not qty >= 0.0:
            raise ValueError(f"paper funding item {item!r}: the amount must be >= 0")
        out[key] = qty
    return out


def paper_holdings(universe: list[str], snap: MarketSnapshot, *, quote_usd: float,
                   base_usd: float, notional_usd: float, overrides: str = "") -> Holdings:
    fx = snap.fx.mid
    per_base = base_usd or max(20.0 * notional_usd, 1000.0)
    out: Holdings = {(Venue.UPBIT, "KRW"): quote_usd * fx, (Venue.BINANCE, "USDT"): quote_usd}
    for base in universe:
        out[(Venue.UPBIT, base)] = per_base / (snap.upbit[base].mid / fx)
        out[(Venue.BINANCE, base)] = per_base / snap.binance[base].mid
    out.update(parse_funding(overrides))
    return out
