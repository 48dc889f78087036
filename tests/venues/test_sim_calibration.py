"""The sim's default ("calibrated") market against the real BTC recordings: the
premium's 1- and 5-minute changes, its slow level, rare jumps, and the books'
spreads and depth, computed the same way from both."""
from __future__ import annotations

import gzip
import itertools
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from core.config.settings import Settings
from core.venues.sim_market import SimMarket

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
STEP_S = 10.0
DAYS = 2


def _lines(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


def _mid(book: dict[str, Any]) -> float:
    return (book["b"][0][0] + book["a"][0][0]) / 2


def _premium_bps(snap: dict[str, Any]) -> float:
    fx = _mid(snap["fx"])
    return ((_mid(snap["u"]["BTC"]) / fx) / _mid(snap["n"]["BTC"]) - 1.0) * 1e4


def _changes(series: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(series)]


def _ar1(series: list[float]) -> float:
    x, y = series[:-1], series[1:]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / sum((a - mx) ** 2 for a in x)


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    one = [_premium_bps(s) for s in _lines(REAL / "real_btc_1m_20250601.jsonl.gz")[1:]]
    five: list[float] = []
    hour: list[float] = []
    blocks = []
    for path in sorted(REAL.glob("real_btc_5m_block*.jsonl.gz")):
        block = [_premium_bps(s) for s in _lines(path)[1:]]
        blocks.append(block)
        five += _changes(block)
        hour += [b - a for a, b in zip(block, block[12:], strict=False)]
    books = {}
    for venue, name in (("upbit", "upbit_BTC_KRW"), ("binance", "binance_BTC_USDT")):
        snap = _lines(next(REAL.glob(f"{name}_book_snapshots_*.jsonl.gz")))[0]
        books[venue] = ((snap["asks"][0][0] / snap["bids"][0][0] - 1.0) * 1e4,
                        sum(p * q for p, q in snap["bids"][:5]))
    return {"sd1": statistics.pstdev(_changes(one)), "sd5": statistics.pstdev(five),
            "sd60": statistics.pstdev(hour),
            "max5": max(abs(c) for c in five),
            "ar1": statistics.fmean(_ar1(b) for b in blocks), "books": books}


@pytest.fixture(scope="module")
def sim() -> dict[str, Any]:
    s = Settings(sim_profile="calibrated")
    market = SimMarket(
        3, n_symbols=1, interval_s=STEP_S, clock=ManualClock(),
        mean_reversion=s.sim_mean_reversion, premium_vol_bps=s.sim_premium_vol_bps,
        jump_rate_per_min=s.sim_jump_rate_per_min, jump_bps=s.sim_jump_bps,
        level_vol_bps=s.sim_level_vol_bps, level_halflife_s=s.sim_level_halflife_s,
        fx_krw=s.sim_fx_krw)
    # Measured as on the real data: from the books' mids and the FX book.
    market.subscribe(["BTC"])
    series = []
    for _ in range(int(DAYS * 86_400 / STEP_S)):
        snap = market.step()
        fx_mid, up, bn = snap.fx.mid, snap.upbit["BTC"], snap.binance["BTC"]
        series.append(((up.mid / fx_mid) / bn.mid - 1.0) * 1e4)
    per_min, per_5 = series[::6], series[::30]
    fx = snap.fx.mid
    books = {}
    for venue, book, to_usd in (("upbit", snap.upbit["BTC"], 1.0 / fx),
                                ("binance", snap.binance["BTC"], 1.0)):
        books[venue] = ((book.asks[0][0] / book.bids[0][0] - 1.0) * 1e4,
                        sum(p * q for p, q in book.bids[:5]) * to_usd)
    return {"sd1": statistics.pstdev(_changes(per_min)),
            "sd5": statistics.pstdev(_changes(per_5)),
            "sd60": statistics.pstdev([b - a for a, b in zip(per_5, per_5[12:], strict=False)]),
            "max5": max(abs(c) for c in _changes(per_5)),
            # As measured on the real data: over windows of 200 five-minute steps.
            "ar1": statistics.fmean(_ar1(per_5[i:i + 200])
                                    for i in range(0, len(per_5) - 199, 200)),
            "fx": fx, "books": books}


def test_premium_changes_match_the_real_ones(real: dict[str, Any], sim: dict[str, Any]) -> None:
    # Real: about 4 bps a minute, 5-8 bps in five minutes, ~12 in an hour.
    assert 3.0 < real["sd1"] < 5.0 and 4.0 < real["sd5"] < 9.0 and real["sd60"] > 8.0
    for key in ("sd1", "sd5", "sd60"):
        assert 0.7 < sim[key] / real[key] < 1.5, (key, sim[key], real[key])
    # Not white noise: five minutes move the premium more than one (a wandering level).
    assert sim["sd5"] > 1.3 * sim["sd1"] and real["sd5"] > 1.2 * real["sd1"]


def test_the_level_is_slow_and_jumps_are_rare(real: dict[str, Any], sim: dict[str, Any]
                                              ) -> None:
    # Over windows of 200 five-minute steps the level barely reverts: AR(1) near 1
    # (biased down on so short a window, alike for both).
    assert real["ar1"] > 0.8 and sim["ar1"] > 0.8 and abs(sim["ar1"] - real["ar1"]) < 0.1
    # No 5-minute change of 40 bps or more, as in the real weeks (the rehearsal
    # profile's 90-bps jumps would show here at once).
    assert real["max5"] < 40.0 and sim["max5"] < 40.0


def test_books_are_shaped_like_the_real_ones(real: dict[str, Any], sim: dict[str, Any]
                                             ) -> None:
    (ru_spread, ru_depth), (rb_spread, rb_depth) = real["books"]["upbit"], real["books"]["binance"]
    (su_spread, su_depth), (sb_spread, sb_depth) = sim["books"]["upbit"], sim["books"]["binance"]
    ru_depth /= sim["fx"]  # Upbit's depth in KRW, at the sim's FX, for the comparison
    # Upbit about half a bps to a bps wide; Binance a tick (well under 0.1 bps).
    assert 0.3 < ru_spread < 1.5 and 0.3 < su_spread < 1.5
    assert rb_spread < 0.1 and sb_spread < 0.1
    # Top five levels a side: Upbit thousands of dollars, Binance hundreds of thousands.
    assert 0.3 < su_depth / ru_depth < 3.0, (su_depth, ru_depth)
    assert 0.3 < sb_depth / rb_depth < 3.0, (sb_depth, rb_depth)
