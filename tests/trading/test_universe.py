"""Universe selection (R-M7) and the topN names."""

from __future__ import annotations

import math

import pytest

from core.clock import ManualClock
from core.domain.models import SymbolStats
from core.trading.universe import UNIVERSES, parse_universe, rank_volume_usd, select_universe
from core.venues.sim_market import SimMarket

FX = 1000.0  # round number so KRW volumes read as USD x 1000


def st(
    base: str,
    bn_usdt: float,
    up_usd: float,
    spread: float = 5.0,
    depth: float = 50_000.0,
) -> SymbolStats:
    return SymbolStats(
        base=base,
        upbit_quote_volume_krw=up_usd * FX,
        binance_quote_volume_usdt=bn_usdt,
        spread_bps=spread,
        depth_usd=depth,
    )


def test_ranks_by_the_thinner_venues_usd_volume() -> None:
    stats = [
        st("AAA", bn_usdt=1e9, up_usd=1e6),  # huge on Binance, thin on Upbit -> 1e6
        st("BBB", bn_usdt=5e7, up_usd=4e7),  # 4e7
        st("CCC", bn_usdt=2e7, up_usd=9e8),  # 2e7
        st("DDD", bn_usdt=3e6, up_usd=3e6),  # 3e6
    ]
    assert select_universe(stats, 10, fx_krw=FX) == ["BBB", "CCC", "DDD", "AAA"]
    assert select_universe(stats, 2, fx_krw=FX) == ["BBB", "CCC"]
    assert rank_volume_usd(stats[0], FX) == 1e6


def test_krw_volume_is_converted_with_fx() -> None:
    a = st("AAA", bn_usdt=1e7, up_usd=2e6)  # 2e9 KRW
    b = st("BBB", bn_usdt=3e6, up_usd=1e9)
    assert select_universe([a, b], 1, fx_krw=FX) == ["BBB"]  # 3e6 > 2e6
    # at 1 KRW per USDT the same KRW volume is worth 1000x more
    assert select_universe([a, b], 1, fx_krw=1.0) == ["AAA"]


def test_filters_on_depth_and_spread_with_inclusive_bounds() -> None:
    stats = [
        st("THIN", 1e9, 1e9, depth=1_999.0),
        st("EDGE_DEPTH", 1e8, 1e8, depth=2_000.0),
        st("WIDE", 1e9, 1e9, spread=50.01),
        st("EDGE_SPREAD", 1e7, 1e7, spread=50.0),
        st("NAN", 1e9, 1e9, spread=math.nan),
        st("NAND", 1e9, 1e9, depth=math.nan),
    ]
    assert select_universe(stats, 10, fx_krw=FX) == ["EDGE_DEPTH", "EDGE_SPREAD"]
    assert select_universe(stats, 10, min_depth_usd=1_000, max_spread_bps=100, fx_krw=FX) == [
        "THIN",
        "WIDE",
        "EDGE_DEPTH",
        "EDGE_SPREAD",
    ]


def test_requires_a_listing_on_both_venues() -> None:
    stats = [
        st("UPONLY", bn_usdt=0.0, up_usd=1e9),
        st("BNONLY", bn_usdt=1e9, up_usd=0.0),
        st("BOTH", 1e6, 1e6),
        st("ALSO", 2e6, 2e6),
    ]
    assert select_universe(stats, 10, fx_krw=FX) == ["ALSO", "BOTH"]
    assert select_universe(stats, 10, fx_krw=FX, binance_bases={"BOTH"}) == ["BOTH"]


def test_ties_break_on_name_and_duplicates_collapse() -> None:
    stats = [st("ZZZ", 1e6, 1e6), st("AAA", 1e6, 1e6), st("AAA", 1e6, 1e6)]
    assert select_universe(stats, 10, fx_krw=FX) == ["AAA", "ZZZ"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="top_n"):
        select_universe([st("A", 1, 1)], 0)
    with pytest.raises(ValueError, match="fx_krw"):
        select_universe([st("A", 1, 1)], 1, fx_krw=0)
    assert select_universe([], 10) == []


def test_on_the_sim_market() -> None:
    m = SimMarket(seed=7, clock=ManualClock())
    stats = m.symbol_stats()
    fx = m.fx
    for name, n in UNIVERSES.items():
        picked = select_universe(stats, n, fx_krw=fx)
        assert len(picked) == len(set(picked)) <= n
        by_base = {s.base: s for s in stats}
        keys = [rank_volume_usd(by_base[b], fx) for b in picked]
        assert keys == sorted(keys, reverse=True), name
        assert all(by_base[b].spread_bps <= 50 and by_base[b].depth_usd >= 2_000 for b in picked)
    assert len(select_universe(stats, 10, fx_krw=fx)) == 10
    top20 = select_universe(stats, 20, fx_krw=fx)
    assert select_universe(stats, 10, fx_krw=fx) == top20[:10]
    m.subscribe(top20)  # every selected base is a sim market
    assert set(m.step().upbit) == set(top20)


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("top10", 10),
        ("top20", 20),
        ("top50", 50),
        ("top100", 100),
        ("top200", 200),
        (" TOP20 ", 20),
    ],
)
def test_parse_universe(text: str, n: int) -> None:
    assert parse_universe(text) == n


@pytest.mark.parametrize("text", ["", "top", "top15", "10", "top-10", "top 10", "all", "top1000"])
def test_parse_universe_rejects_everything_else(text: str) -> None:
    with pytest.raises(ValueError, match="expected one of top10, top20, top50, top100, top200"):
        parse_universe(text)
