"""Universe selection (R-M7).

Candidates are Upbit KRW markets also listed on Binance USDT (a base with no
volume on either venue is treated as not listed there), filtered by depth and
spread, ranked by 24 h quote volume. The rank key is the thinner venue's volume
in USD: min(Binance USDT volume, Upbit KRW volume / FX), since an arbitrage pair
is only as tradable as its weaker leg. Ties break on the base name, so the
selection is deterministic.
"""

from __future__ import annotations

from collections.abc import Collection

from core.domain.models import SymbolStats

UNIVERSES: dict[str, int] = {"top10": 10, "top20": 20, "top50": 50, "top100": 100, "top200": 200}


def parse_universe(text: str) -> int:
    """'top20' -> 20. Only the names in UNIVERSES are accepted."""
    key = text.strip().lower() if isinstance(text, str) else text
    if key not in UNIVERSES:
        raise ValueError(f"unknown universe {text!r}: expected one of {', '.join(UNIVERSES)}")
    return UNIVERSES[key]


def rank_volume_usd(stat: SymbolStats, fx_krw: float) -> float:
    """The thinner venue's 24 h quote volume, in USD(T)."""
    return min(stat.binance_quote_volume_usdt, stat.upbit_quote_volume_krw / fx_krw)


def select_universe(
    stats: list[SymbolStats],
    top_n: int,
    min_depth_usd: float = 2_000,
    max_spread_bps: float = 50,
    fx_krw: float = 1380.0,
    binance_bases: Collection[str] | None = None,
) -> list[str]:
    """The top_n bases by rank volume among those listed on both venues that pass
    the depth (>= min_depth_usd) and spread (<= max_spread_bps) filters.

    binance_bases, when given, is the set of bases with a Binance USDT market;
    otherwise a positive Binance volume stands for the listing.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if fx_krw <= 0:
        raise ValueError(f"fx_krw must be > 0, got {fx_krw}")
    best: dict[str, SymbolStats] = {}
    for s in stats:
        if not (s.upbit_quote_volume_krw > 0 and s.binance_quote_volume_usdt > 0):
            continue  # not traded (listed) on one of the venues
        if binance_bases is not None and s.base not in binance_bases:
            continue
        # written as 'not (ok)' so a NaN depth or spread is filtered out, not let through
        if not (s.depth_usd >= min_depth_usd and s.spread_bps <= max_spread_bps):
            continue
        prev = best.get(s.base)
        if prev is None or rank_volume_usd(s, fx_krw) > rank_volume_usd(prev, fx_krw):
            best[s.base] = s
    ranked = sorted(best.values(), key=lambda s: (-rank_volume_usd(s, fx_krw), s.base))
    return [s.base for s in ranked[:top_n]]
