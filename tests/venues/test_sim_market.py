"""SimMarket (R-M8): determinism, book shape, premium dynamics, async delivery."""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
from decimal import Decimal

import pytest

from core.clock import ManualClock
from core.domain.models import FX_SYMBOL, OrderBook
from core.venues.rules import upbit_tick
from core.venues.sim_market import SimMarket


def make(seed: int = 7, **kw) -> SimMarket:
    kw.setdefault("clock", ManualClock())
    return SimMarket(seed, **kw)


def run_steps(m: SimMarket, n: int) -> None:
    for _ in range(n):
        m.step()


def assert_well_formed(book: OrderBook, levels: int) -> None:
    assert len(book.bids) == levels and len(book.asks) == levels
    bid_px = [p for p, _ in book.bids]
    ask_px = [p for p, _ in book.asks]
    assert all(a > b for a, b in itertools.pairwise(bid_px)), bid_px  # strictly descending
    assert all(b > a for a, b in itertools.pairwise(ask_px)), ask_px  # strictly ascending
    assert book.best_bid < book.best_ask
    assert min(bid_px) > 0
    assert all(q > 0 and math.isfinite(q) for _, q in book.bids + book.asks)


# --- symbols and determinism ------------------------------------------------


def test_two_hundred_unique_symbols_with_real_names_first() -> None:
    m = make()
    assert len(m.bases) == 200
    assert len(set(m.bases)) == 200
    assert m.bases[:3] == ["BTC", "ETH", "XRP"]
    assert all((b.isalnum() and b.isupper()) or b[0].isdigit() for b in m.bases)
    assert 60_000 < m.binance_mid("BTC") < 130_000
    mids = [m.binance_mid(b) for b in m.bases]
    assert min(mids) < 0.01 and max(mids) > 10_000  # log-spread price scale


def test_n_symbols_bounds() -> None:
    assert len(make(n_symbols=5).bases) == 5
    with pytest.raises(ValueError):
        make(n_symbols=201)
    with pytest.raises(ValueError):
        make(n_symbols=0)


def test_same_seed_gives_identical_snapshots() -> None:
    a, b = make(seed=11), make(seed=11)
    a.subscribe(a.bases[:15])
    b.subscribe(b.bases[:15])
    for _ in range(300):
        assert a.step() == b.step()
    assert a.symbol_stats() == b.symbol_stats()


def test_different_seed_gives_different_market() -> None:
    a, b = make(seed=1), make(seed=2)
    a.subscribe(["BTC", "ETH"])
    b.subscribe(["BTC", "ETH"])
    sa, sb = a.step(), b.step()
    assert sa.upbit["BTC"] != sb.upbit["BTC"]
    assert a.bases != b.bases  # synthetic names are drawn from the seed too
    assert a.premium_level("BTC") != b.premium_level("BTC")


def test_subscription_does_not_change_the_price_path() -> None:
    a, b = make(seed=5), make(seed=5)
    a.subscribe(a.bases[:40])
    run_steps(a, 200)
    run_steps(b, 200)
    assert [a.binance_mid(x) for x in a.bases] == [b.binance_mid(x) for x in b.bases]
    assert [a.deviation_bps(x) for x in a.bases] == [b.deviation_bps(x) for x in b.bases]
    assert a.fx == b.fx


def test_subscribe_rejects_unknown_bases_and_snapshot_holds_only_subscribed() -> None:
    m = make()
    with pytest.raises(ValueError, match="NOPE"):
        m.subscribe(["BTC", "NOPE"])
    assert m.latest() is None
    s = m.step()
    assert s.upbit == {} and s.binance == {}
    m.subscribe(["ETH", "BTC", "ETH"])
    s = m.step()
    assert list(s.upbit) == ["ETH", "BTC"] == list(s.binance)
    assert s.upbit["BTC"].symbol == "BTC/KRW" and s.binance["BTC"].symbol == "BTC/USDT"
    assert m.latest() is s


# --- books ------------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 10])
def test_books_are_well_formed_and_on_ticks(levels: int) -> None:
    clock = ManualClock()
    m = make(seed=3, n_symbols=200, levels=levels, clock=clock)
    m.subscribe(m.bases)  # every price scale
    for n in range(1, 21):
        clock.advance(0.1)
        s = m.step()
        assert s.seq == n
        assert s.ts_ms == int(clock.time() * 1000)
        assert s.fx.symbol == FX_SYMBOL
        assert_well_formed(s.fx, levels)
        assert all(Decimal(repr(p)) % Decimal("0.5") == 0 for p, _ in s.fx.bids + s.fx.asks)
        assert abs(s.fx_mid - m.fx) <= 0.5
        for base in m.bases:
            up, bn = s.upbit[base], s.binance[base]
            assert up.seq == bn.seq == n and up.timestamp_ms == s.ts_ms
            assert_well_formed(up, levels)
            assert_well_formed(bn, levels)
            for p, _ in up.bids + up.asks:
                d = Decimal(repr(p))
                assert d % upbit_tick(d, up.symbol) == 0, (base, p)


def test_spreads_and_depth_are_realistic() -> None:
    m = make(seed=4)
    m.subscribe(m.bases[:50])
    s = m.step()
    fx = s.fx_mid
    bn_spreads, up_spreads = [], []
    for base in m.bases[:50]:
        bn, up = s.binance[base], s.upbit[base]
        bn_spreads.append((bn.best_ask - bn.best_bid) / bn.mid * 1e4)
        up_spreads.append((up.best_ask - up.best_bid) / up.mid * 1e4)
        # 3..10 bps, or wider only as much as the KRW price band's tick forces
        tick = float(upbit_tick(Decimal(repr(up.best_ask)), up.symbol))
        assert up.best_ask - up.best_bid <= up.mid * 10.5e-4 + 2 * tick, base
        for book, to_usd in ((bn, 1.0), (up, 1.0 / fx)):
            for side in (book.bids, book.asks):
                depth = sum(p * q for p, q in side[:5]) * to_usd
                assert 1_500 < depth < 350_000, (base, depth)
    assert 0.5 < statistics.median(bn_spreads) < 4
    assert max(bn_spreads) < 5
    assert 2.5 < statistics.median(up_spreads) < 30
    assert min(up_spreads) < 10


def test_symbol_stats_cover_all_symbols_and_depth_follows_volume() -> None:
    m = make(seed=9)
    stats = m.symbol_stats()
    assert [s.base for s in stats] == m.bases
    assert all(5_000 <= s.depth_usd <= 200_000 for s in stats)
    assert all(s.spread_bps > 0 for s in stats)
    assert all(s.upbit_quote_volume_krw > 0 and s.binance_quote_volume_usdt > 0 for s in stats)
    by_vol = sorted(stats, key=lambda s: s.binance_quote_volume_usdt, reverse=True)
    top = statistics.mean(s.depth_usd for s in by_vol[:20])
    bottom = statistics.mean(s.depth_usd for s in by_vol[-50:])
    assert top > 3 * bottom
    vols = [s.binance_quote_volume_usdt for s in by_vol]
    assert vols[0] > 100 * statistics.median(vols)  # heavy tail
    assert stats[0].binance_quote_volume_usdt >= 0.5 * vols[0]  # BTC is largest-ish


# --- premium dynamics -------------------------------------------------------


def mid_premium(m: SimMarket, base: str) -> float:
    s = m.latest()
    assert s is not None
    return s.upbit[base].mid / (s.binance[base].mid * s.fx_mid) - 1.0


def test_premium_from_mids_sits_around_a_persistent_positive_level() -> None:
    m = make(seed=21)
    bases = m.bases[:5]
    m.subscribe(bases)
    samples: dict[str, list[float]] = {b: [] for b in bases}
    for _ in range(3000):
        m.step()
        for b in bases:
            samples[b].append(mid_premium(m, b))
    for b in bases:
        level = m.premium_level(b)
        assert 0.01 <= level <= 0.05
        mean = statistics.mean(samples[b])
        assert abs(mean - level) < 0.004, (b, mean, level)  # within 40 bps of the level
        assert sum(p > 0 for p in samples[b]) > 0.95 * len(samples[b])  # stays a premium


def test_without_noise_the_premium_is_exactly_the_level() -> None:
    m = make(seed=2, mean_reversion=0.0, premium_vol_bps=0.0, jump_rate_per_min=0.0)
    run_steps(m, 100)
    for b in m.bases:
        assert m.deviation_bps(b) == 0.0
        assert m.true_premium(b) == m.premium_level(b)
        assert m.upbit_mid(b) == pytest.approx(
            m.binance_mid(b) * m.fx * (1 + m.premium_level(b)), rel=1e-12
        )


def cross_sectional_sd(seed: int, theta: float, steps: int = 5000) -> float:
    m = make(seed=seed, n_symbols=120, mean_reversion=theta)
    run_steps(m, steps)
    return statistics.pstdev(m.deviation_bps(b) for b in m.bases)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mean_reversion_bounds_the_deviation_but_theta_zero_does_not(seed: int) -> None:
    # theta=0.15/s: stationary sd ~ sqrt((4^2 + 90^2/60) / 0.3) ~ 22 bps.
    # theta=0 after 500 s: sd ~ sqrt(500 * (16 + 8100/60)) ~ 275 bps.
    reverting = cross_sectional_sd(seed, 0.15)
    walking = cross_sectional_sd(seed, 0.0)
    assert reverting < 45, reverting
    assert walking > 150, walking
    assert walking > 4 * reverting


def test_deviation_autocorrelation_decays_at_the_ou_rate() -> None:
    theta = 0.5
    m = make(seed=8, n_symbols=100, mean_reversion=theta, jump_rate_per_min=0.0)
    lag = 10  # 1 s at interval 0.1 s
    num = den = 0.0
    prev = [m.deviation_bps(b) for b in m.bases]
    for _ in range(200):
        run_steps(m, lag)
        cur = [m.deviation_bps(b) for b in m.bases]
        num += sum(p * c for p, c in zip(prev, cur, strict=True))
        den += sum(p * p for p in prev)
        prev = cur
    assert num / den == pytest.approx(math.exp(-theta), abs=0.03)


def test_jumps_happen_at_the_configured_rate() -> None:
    # no diffusion, no reversion: the deviation is the sum of the jumps
    m = make(seed=6, mean_reversion=0.0, premium_vol_bps=0.0, jump_rate_per_min=60.0, jump_bps=90.0)
    run_steps(m, 1000)  # 100 s -> ~100 jumps per symbol
    sd = statistics.pstdev(m.deviation_bps(b) for b in m.bases)
    assert sd == pytest.approx(900, rel=0.2)


def test_fx_random_walks_slightly() -> None:
    m = make(seed=12, fx_krw=1400.0)
    fxs = []
    for _ in range(3000):
        fxs.append(m.step().fx_mid)
    assert len(set(fxs)) >= 3  # it moves
    assert all(abs(f / 1400.0 - 1) < 0.01 for f in fxs)


def test_step_is_fast_enough() -> None:
    m = make()
    m.subscribe(m.bases[:10])
    run_steps(m, 20)
    t0 = time.perf_counter()
    run_steps(m, 200)
    per_step = (time.perf_counter() - t0) / 200
    assert per_step < 0.005  # ~0.2 ms measured; generous for loaded CI machines


# --- delivery ---------------------------------------------------------------


async def test_listeners_run_synchronously_before_waiters_wake() -> None:
    m = make()
    m.subscribe(["BTC"])
    events: list[tuple[str, int]] = []
    m.add_listener(lambda s: events.append(("listener", s.seq)))

    async def waiter() -> None:
        s = await m.wait_next(0)
        events.append(("waiter", s.seq))

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    assert events == []  # nothing produced yet: still waiting
    snap = m.step()
    assert events == [("listener", 1)]  # synchronous, during step()
    await task
    assert events == [("listener", 1), ("waiter", 1)]
    assert snap.seq == 1


async def test_wait_next_returns_immediately_when_newer_exists() -> None:
    m = make()
    run_steps(m, 3)
    s = await asyncio.wait_for(m.wait_next(1), timeout=1)
    assert s.seq == 3 and s is m.latest()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(m.wait_next(3), timeout=0.05)
    waiters = m._feed._waiters  # a timed-out waiter must not linger
    assert waiters == [] or all(f.done() for f in waiters)


async def test_wait_next_skips_snapshots_not_newer_than_after_seq() -> None:
    m = make()
    task = asyncio.create_task(m.wait_next(2))
    await asyncio.sleep(0)
    m.step()  # seq 1: not enough
    await asyncio.sleep(0)
    assert not task.done()
    m.step()  # seq 2: still not > 2
    await asyncio.sleep(0)
    assert not task.done()
    m.step()
    assert (await task).seq == 3


async def test_run_produces_snapshots_and_is_cancellable() -> None:
    m = make(interval_s=0.001)
    seen: list[int] = []
    m.add_listener(lambda s: seen.append(s.seq))
    task = asyncio.create_task(m.run())
    s = await asyncio.wait_for(m.wait_next(4), timeout=5)
    assert s.seq >= 5
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == list(range(1, len(seen) + 1))
    assert math.isclose(m.sim_time, 0.001 * len(seen))
