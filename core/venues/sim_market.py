"""Seeded synthetic market (R-M8, the default data source).

Per symbol: a geometric random-walk Binance price, and a premium
``level + drift + x`` where ``level`` is a persistent per-symbol +1..5 %,
``drift`` (bps) a slow Ornstein-Uhlenbeck walk of the level (``level_vol_bps`` per
sqrt(second), half-life ``level_halflife_s``: days, each symbol its own), and ``x``
(bps) a fast Ornstein-Uhlenbeck deviation (theta = ``mean_reversion``; theta 0 is a
pure random walk) with compound-Poisson jumps N(0, ``jump_bps``). FX (Upbit
USDT/KRW) random-walks slightly. Upbit mid = Binance mid x FX x (1 + premium).

The run's defaults (settings, profile "calibrated") reproduce the real BTC premium's
statistics: 1-minute changes ~4 bps, 5-minute ~6 bps, hourly ~12, a level that
wanders over days, jumps rare; the constructor's own defaults are the jumpy "rehearsal" market.

Determinism: every draw comes from ``random.Random`` instances seeded from
``seed``. Price dynamics use one generator and book shapes another, so what
is subscribed never changes the price path.

Hot path: the price update is a plain loop over per-symbol lists; books are
only built for the subscribed bases.
"""

from __future__ import annotations

import asyncio
import math
import random
from decimal import Decimal

from core.clock import Clock, SystemClock
from core.domain.models import FX_SYMBOL, MarketSnapshot, OrderBook, SymbolStats
from core.ports import SnapshotListener
from core.venues.rules import upbit_tick
from core.venues.snapshot_feed import SnapshotFeed

MAX_SYMBOLS = 200
_TWO_PI = 2.0 * math.pi

# (base, approximate USDT price) - real-looking names first, BTC first.
_KNOWN: tuple[tuple[str, float], ...] = (
    ("BTC", 95_000.0), ("ETH", 3_300.0), ("XRP", 2.2), ("SOL", 190.0), ("DOGE", 0.32),
    ("ADA", 0.9), ("TRX", 0.25), ("AVAX", 36.0), ("LINK", 22.0), ("DOT", 6.8),
    ("BCH", 450.0), ("SHIB", 0.000021), ("XLM", 0.4), ("SUI", 4.2), ("HBAR", 0.28),
    ("ETC", 26.0), ("NEAR", 5.1), ("APT", 9.0), ("AAVE", 330.0), ("UNI", 13.0),
    ("PEPE", 0.000018), ("ATOM", 6.5), ("ARB", 0.75), ("POL", 0.45), ("ALGO", 0.38),
    ("SEI", 0.45), ("STX", 1.6), ("IMX", 1.3), ("SAND", 0.55), ("MANA", 0.5),
    ("AXS", 6.5), ("CHZ", 0.09), ("GRT", 0.2), ("EGLD", 32.0), ("THETA", 2.0),
    ("FLOW", 0.75), ("XTZ", 1.2), ("ENS", 30.0), ("ZRX", 0.45), ("BAT", 0.22),
    ("ONT", 0.22), ("IOST", 0.0065), ("ZIL", 0.02), ("QTUM", 3.3), ("NEO", 13.0),
    ("WAVES", 1.1), ("ANKR", 0.035), ("STORJ", 0.5), ("SXP", 0.3), ("HIVE", 0.3),
    ("ICX", 0.16), ("KAVA", 0.5), ("1INCH", 0.4), ("CRV", 0.9), ("SNT", 0.03),
    ("MASK", 3.0), ("BLUR", 0.3), ("GMT", 0.2), ("ID", 0.3), ("ASTR", 0.06),
)  # fmt: skip
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# 24 h Binance USDT volume of the top symbol, Zipf-ish below it.
_TOP_VOLUME_USDT = 2.0e9
_VOL_LO, _VOL_HI = 1.0e5, 2.0e9  # mapping of volume onto liquidity (depth, spread)
_FX_VOL_BPS = 0.5  # per sqrt(second)
_FX_REVERSION = 0.001  # per second, keeps FX anchored over long runs
_FX_TICK = 0.5


def _upbit_tick_f(price: float, symbol: str) -> float:
    return float(upbit_tick(Decimal(repr(price)), symbol))


def _bucket(price: float) -> tuple[float, float]:
    """The [lo, hi) interval of the 1-2-5 series holding price (tick bands end on it)."""
    k = math.floor(math.log10(price))
    unit = 10.0**k
    m = price / unit
    if m < 2:
        return unit, 2 * unit
    if m < 5:
        return 2 * unit, 5 * unit
    return 5 * unit, 10 * unit


class _UpbitTicks:
    """Per-symbol memo of core.venues.rules.upbit_tick (Decimal) for the hot path.

    A cached tick covers a whole 1-2-5 bucket, verified at both of its ends (the
    tick is monotone in price, so equal ends mean constant in between).
    """

    __slots__ = ("entries", "symbol")

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.entries: list[tuple[float, float, float]] = []

    def tick(self, price: float) -> float:
        for lo, hi, t in self.entries:
            if lo <= price < hi:
                return t
        t = _upbit_tick_f(price, self.symbol)
        lo, hi = _bucket(price)
        if (
            lo <= price < hi
            and _upbit_tick_f(lo, self.symbol) == t
            and _upbit_tick_f(math.nextafter(hi, 0.0), self.symbol) == t
        ):
            self.entries.insert(0, (lo, hi, t))
            del self.entries[3:]
        return t


def _grid(tick: float) -> tuple[float, float]:
    """(num, den) so that n * num / den is the float nearest n ticks (no 0.1*3 dust)."""
    if tick >= 1:
        return tick, 1.0
    return 1.0, float(round(1.0 / tick))


def _binance_tick(price: float) -> float:
    # ~0.1..1 bp of price, a power of ten like Binance's tick sizes
    return 10.0 ** (math.floor(math.log10(price)) - 5)


class SimMarket:
    """Seeded synthetic Upbit/Binance market implementing ``core.ports.MarketData``."""

    def __init__(
        self,
        seed: int,
        n_symbols: int = MAX_SYMBOLS,
        interval_s: float = 0.1,
        clock: Clock | None = None,
        mean_reversion: float = 0.15,
        premium_vol_bps: float = 4.0,
        jump_rate_per_min: float = 1.0,
        jump_bps: float = 90.0,
        fx_krw: float = 1380.0,
        levels: int = 10,
        level_vol_bps: float = 0.0,
        level_halflife_s: float = 172_800.0,
    ) -> None:
        if not 1 <= n_symbols <= MAX_SYMBOLS:
            raise ValueError(f"n_symbols must be 1..{MAX_SYMBOLS}, got {n_symbols}")
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if mean_reversion < 0 or premium_vol_bps < 0 or jump_rate_per_min < 0 or jump_bps < 0:
            raise ValueError("mean_reversion, vols and jump parameters must be >= 0")
        if fx_krw <= 0:
            raise ValueError("fx_krw must be > 0")
        if level_vol_bps < 0 or level_halflife_s <= 0:
            raise ValueError("level_vol_bps must be >= 0 and level_halflife_s > 0")
        if levels < 1:
            raise ValueError("levels must be >= 1")
        self.seed = seed
        self.n_symbols = n_symbols
        self.interval_s = float(interval_s)
        self.levels = levels
        self.mean_reversion = mean_reversion
        self.premium_vol_bps = premium_vol_bps
        self.jump_rate_per_min = jump_rate_per_min
        self.jump_bps = jump_bps
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = random.Random(seed)  # dynamics
        self._book_rng = random.Random(f"{seed}:books")  # book shapes only
        self._t = 0.0  # sim seconds elapsed
        self._seq = 0
        self._fx0 = float(fx_krw)
        self._fx = float(fx_krw)
        self._feed = SnapshotFeed()
        self._subscribed: list[str] = []

        dt = self.interval_s
        # OU exact discretisation: x' = a x + b z
        if mean_reversion > 0:
            self._ou_a = math.exp(-mean_reversion * dt)
            self._ou_b = premium_vol_bps * math.sqrt((1.0 - self._ou_a**2) / (2.0 * mean_reversion))
        else:
            self._ou_a = 1.0
            self._ou_b = premium_vol_bps * math.sqrt(dt)
        self._jump_rate_s = jump_rate_per_min / 60.0
        self.level_vol_bps = level_vol_bps
        theta_l = math.log(2.0) / level_halflife_s
        self._lv_a = math.exp(-theta_l * dt)
        self._lv_b = level_vol_bps * math.sqrt((1.0 - self._lv_a**2) / (2.0 * theta_l))
        self._fx_a = math.exp(-_FX_REVERSION * dt)
        self._fx_s = _FX_VOL_BPS * 1e-4 * math.sqrt(dt)

        self._build_symbols(self._rng)

    # ------------------------------------------------------------------ setup
    def _build_symbols(self, rng: random.Random) -> None:
        n = self.n_symbols
        names: list[str] = []
        prices: list[float] = []
        for base, px in _KNOWN[:n]:
            names.append(base)
            prices.append(px * math.exp(rng.gauss(0.0, 0.05)))
        seen = set(names) | {b for b, _ in _KNOWN}
        while len(names) < n:
            length = 3 if rng.random() < 0.6 else 4
            name = "".join(rng.choice(_LETTERS) for _ in range(length))
            if name in seen or name in ("USDT", "KRW", "USD", "BNB"):
                continue
            seen.add(name)
            names.append(name)
            prices.append(10.0 ** rng.uniform(-5.0, 3.0))  # log-spread price scale
        self.bases: list[str] = names
        self._index = {b: i for i, b in enumerate(names)}
        self._px = prices  # Binance mid, USDT
        self._bn_tick = [_binance_tick(p) for p in prices]
        self._bn_grid = [_grid(t) for t in self._bn_tick]
        self._up_ticks = [_UpbitTicks(f"{b}/KRW") for b in names]
        self._px_step = [rng.uniform(2.0, 5.0) * 1e-4 * math.sqrt(self.interval_s) for _ in names]
        self._level = [rng.uniform(0.01, 0.05) for _ in names]  # persistent premium
        ou_sd = self._stationary_sd_bps()
        self._x = [rng.gauss(0.0, ou_sd) for _ in names]  # deviation, bps
        self._next_jump = [self._draw_jump_gap(rng) for _ in names]
        self._drift = [0.0 for _ in names]  # slow level drift, bps

        self._bn_vol: list[float] = []
        self._up_vol_krw: list[float] = []
        self._bn_spread: list[float] = []  # bps
        self._up_spread: list[float] = []
        self._bn_depth: list[float] = []  # USD, top-5 levels per side
        self._up_depth: list[float] = []
        self._bn_gap: list[float] = []  # level spacing, fraction of price
        self._up_gap: list[float] = []
        span = math.log(_VOL_HI / _VOL_LO)
        for i in range(n):
            bn_vol = _TOP_VOLUME_USDT * (i + 1) ** -1.15 * math.exp(rng.gauss(0.0, 0.5))
            if i == 0:
                bn_vol = _TOP_VOLUME_USDT * math.exp(rng.gauss(0.0, 0.1))
            # Upbit trades a different mix: heavy-tailed ratio to Binance
            up_usd = bn_vol * math.exp(rng.gauss(-1.0, 1.0))
            self._bn_vol.append(bn_vol)
            self._up_vol_krw.append(up_usd * self._fx)
            # The top of the market (BTC) is shaped like the real BTC books: Binance a
            # tick wide with about $300k in its top five levels a side, Upbit about
            # half a bps with about $12k. Below it, wider and thinner with volume.
            for vol, spread_rng, top_book, depth, spread, gap in (
                (bn_vol, (1.0, 3.0), (0.001, 300_000.0), self._bn_depth, self._bn_spread,
                 self._bn_gap),
                (up_usd, (3.0, 10.0), (0.5, 12_000.0), self._up_depth, self._up_spread,
                 self._up_gap),
            ):
                f = min(1.0, max(0.0, math.log(max(vol, _VOL_LO) / _VOL_LO) / span))
                lo, hi = spread_rng
                d = 5_000.0 * 40.0**f * math.exp(rng.gauss(0.0, 0.15))
                if i == 0:  # the top symbol, BTC when there are real names
                    spread.append(top_book[0] * rng.uniform(1.0, 1.5))
                    depth.append(top_book[1] * rng.uniform(0.9, 1.1))
                else:
                    spread.append(hi - (hi - lo) * f * rng.uniform(0.85, 1.0))
                    depth.append(min(200_000.0, max(5_000.0, d)))
                gap.append((1.0 + 3.0 * (1.0 - f)) * 1e-4)
        lv = self.levels
        self._bn_profile = [self._profile(rng, lv) for _ in range(n)]
        self._up_profile = [self._profile(rng, lv) for _ in range(n)]

    @staticmethod
    def _profile(rng: random.Random, levels: int) -> list[float]:
        w = [rng.uniform(0.4, 1.6) for _ in range(levels)]
        mean = sum(w) / levels
        return [v / mean for v in w]

    def _stationary_sd_bps(self) -> float:
        theta = self.mean_reversion
        if theta <= 0:
            return 0.0
        var = (self.premium_vol_bps**2 + self._jump_rate_s * self.jump_bps**2) / (2 * theta)
        return math.sqrt(var)

    def _draw_jump_gap(self, rng: random.Random) -> float:
        if self._jump_rate_s <= 0:
            return math.inf
        return self._t + rng.expovariate(self._jump_rate_s)

    # ------------------------------------------------------------ MarketData
    def subscribe(self, bases: list[str]) -> None:
        unknown = [b for b in bases if b not in self._index]
        if unknown:
            raise ValueError(f"unknown sim bases: {', '.join(unknown)}")
        self._subscribed = list(dict.fromkeys(bases))

    @property
    def subscribed(self) -> list[str]:
        return list(self._subscribed)

    def latest(self) -> MarketSnapshot | None:
        return self._feed.latest()

    def add_listener(self, listener: SnapshotListener) -> None:
        self._feed.add_listener(listener)

    def symbol_stats(self) -> list[SymbolStats]:
        out = []
        for i, base in enumerate(self.bases):
            krw_mid = self.upbit_mid(base)
            up_spread = max(self._up_spread[i], self._up_ticks[i].tick(krw_mid) / krw_mid * 1e4)
            bn_spread = max(self._bn_spread[i], self._bn_tick[i] / self._px[i] * 1e4)
            out.append(
                SymbolStats(
                    base=base,
                    upbit_quote_volume_krw=self._up_vol_krw[i],
                    binance_quote_volume_usdt=self._bn_vol[i],
                    spread_bps=max(up_spread, bn_spread),
                    depth_usd=min(self._up_depth[i], self._bn_depth[i]),
                )
            )
        return out

    # ---------------------------------------------------------- introspection
    @property
    def sim_time(self) -> float:
        return self._t

    @property
    def fx(self) -> float:
        return self._fx

    def binance_mid(self, base: str) -> float:
        return self._px[self._index[base]]

    def upbit_mid(self, base: str) -> float:
        i = self._index[base]
        return self._px[i] * self._fx * max(
            0.01, 1.0 + self._level[i] + (self._drift[i] + self._x[i]) * 1e-4)

    def premium_level(self, base: str) -> float:
        """Persistent premium level (fraction, e.g. 0.03 = 3 %), its slow drift included."""
        i = self._index[base]
        return self._level[i] + self._drift[i] * 1e-4

    def deviation_bps(self, base: str) -> float:
        """Current premium deviation from the level, bps."""
        return self._x[self._index[base]]

    def true_premium(self, base: str) -> float:
        i = self._index[base]
        return self._level[i] + (self._drift[i] + self._x[i]) * 1e-4

    # ----------------------------------------------------------------- step
    def step(self) -> MarketSnapshot:
        rng = self._rng
        gauss = rng.gauss
        dt = self.interval_s
        self._t = t = self._t + dt
        # FX: slight random walk, weakly anchored to its start
        fx0 = self._fx0
        self._fx = fx0 + (self._fx * (1.0 + self._fx_s * gauss(0.0, 1.0)) - fx0) * self._fx_a

        px = self._px
        px_step = self._px_step
        xs = self._x
        nxt = self._next_jump
        a = self._ou_a
        b = self._ou_b
        jump_sd = self.jump_bps
        rnd = rng.random
        log = math.log
        sqrt = math.sqrt
        cos = math.cos
        sin = math.sin
        for i in range(self.n_symbols):
            # Box-Muller inline: one pair of normals per symbol (price, premium)
            r = sqrt(-2.0 * log(1.0 - rnd()))
            phi = _TWO_PI * rnd()
            px[i] *= 1.0 + px_step[i] * r * cos(phi)
            x = a * xs[i] + b * r * sin(phi)
            if nxt[i] <= t:
                while nxt[i] <= t:
                    x += gauss(0.0, jump_sd)
                    nxt[i] += rng.expovariate(self._jump_rate_s)
            xs[i] = x
        if self._lv_b > 0.0:
            drift = self._drift
            la, lb = self._lv_a, self._lv_b
            for i in range(self.n_symbols):
                drift[i] = la * drift[i] + lb * gauss(0.0, 1.0)

        self._seq += 1
        seq = self._seq
        ts_ms = int(self._clock.time() * 1000)
        fx_book = self._fx_book(ts_ms, seq)
        upbit: dict[str, OrderBook] = {}
        binance: dict[str, OrderBook] = {}
        for base in self._subscribed:
            i = self._index[base]
            binance[base], upbit[base] = self._books(i, base, ts_ms, seq)
        snap = MarketSnapshot(seq=seq, ts_ms=ts_ms, fx=fx_book, upbit=upbit, binance=binance)
        return self._feed.publish(snap)

    async def run(self) -> None:
        while True:
            self.step()
            await asyncio.sleep(self.interval_s)

    async def wait_next(self, after_seq: int) -> MarketSnapshot:
        """The latest snapshot if its seq > after_seq, else the next one produced."""
        return await self._feed.wait_next(after_seq)

    # ---------------------------------------------------------------- books
    def _fx_book(self, ts_ms: int, seq: int) -> OrderBook:
        rnd = self._book_rng.random
        fx = self._fx
        best_bid = math.floor(fx / _FX_TICK) * _FX_TICK
        if best_bid >= fx:
            best_bid -= _FX_TICK
        best_ask = best_bid + _FX_TICK
        bids = []
        asks = []
        for k in range(self.levels):
            bids.append((best_bid - k * _FX_TICK, 20_000.0 + 180_000.0 * rnd()))
            asks.append((best_ask + k * _FX_TICK, 20_000.0 + 180_000.0 * rnd()))
        return OrderBook(FX_SYMBOL, bids, asks, ts_ms, seq)

    def _books(self, i: int, base: str, ts_ms: int, seq: int) -> tuple[OrderBook, OrderBook]:
        fx = self._fx
        bn_mid = self._px[i]
        premium = self._level[i] + (self._drift[i] + self._x[i]) * 1e-4
        up_mid = bn_mid * fx * max(0.01, 1.0 + premium)
        tick = self._bn_tick[i]
        grid = self._bn_grid[i]
        bn = self._side_book(
            f"{base}/USDT",
            bn_mid,
            self._bn_spread[i],
            self._bn_gap[i],
            tick,
            tick,
            grid,
            grid,
            self._bn_depth[i] / 5.0 / bn_mid,
            self._bn_profile[i],
            ts_ms,
            seq,
        )
        # Upbit: the bid side uses the best bid's tick (lower prices have finer,
        # nested ticks); the ask side the deepest ask's (the coarsest it spans).
        half = self._up_spread[i] * 0.5e-4
        gap = self._up_gap[i]
        ticks = self._up_ticks[i]
        bid_tick = ticks.tick(up_mid * (1.0 - half))
        ask_tick = ticks.tick(up_mid * (1.0 + half + gap * (self.levels + 1)))
        up = self._side_book(
            f"{base}/KRW",
            up_mid,
            self._up_spread[i],
            gap,
            bid_tick,
            ask_tick,
            _grid(bid_tick),
            _grid(ask_tick),
            self._up_depth[i] / 5.0 / (up_mid / fx),
            self._up_profile[i],
            ts_ms,
            seq,
        )
        return bn, up

    def _side_book(
        self,
        symbol: str,
        mid: float,
        spread_bps: float,
        gap_frac: float,
        bid_tick: float,
        ask_tick: float,
        bid_grid: tuple[float, float],
        ask_grid: tuple[float, float],
        qty_unit: float,
        profile: list[float],
        ts_ms: int,
        seq: int,
    ) -> OrderBook:
        rnd = self._book_rng.random
        levels = self.levels
        half = mid * spread_bps * 0.5e-4
        gap = mid * gap_frac
        bb = math.floor((mid - half) / bid_tick)
        ba = math.ceil((mid + half) / ask_tick)
        while bb * bid_tick >= ba * ask_tick:
            bb -= 1
        bstep = max(1, round(gap / bid_tick))
        astep = max(1, round(gap / ask_tick))
        if bb - (levels - 1) * bstep <= 0:  # never a non-positive price
            bstep = max(1, (bb - 1) // levels)
        # a random rotation of the level-size profile, plus jitter, each step
        off_b = int(rnd() * levels)
        off_a = int(rnd() * levels)
        prof_b = profile[off_b:] + profile[:off_b]
        prof_a = profile[off_a:] + profile[:off_a]
        bnum, bden = bid_grid
        anum, aden = ask_grid
        bids = [
            ((bb - k * bstep) * bnum / bden, qty_unit * w * (0.7 + 0.6 * rnd()))
            for k, w in enumerate(prof_b)
        ]
        asks = [
            ((ba + k * astep) * anum / aden, qty_unit * w * (0.7 + 0.6 * rnd()))
            for k, w in enumerate(prof_a)
        ]
        return OrderBook(symbol, bids, asks, ts_ms, seq)
