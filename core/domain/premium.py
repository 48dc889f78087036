"""Premium per direction from executable prices, and its rolling baseline (R-M1, R-M2).

All premiums are Upbit-over-Binance ratios in bps, with KRW converted at the
USDT/KRW book's mid. Selling on Upbit and buying on Binance earns the Upbit bid
against the Binance ask; the reverse pays the Upbit ask against the Binance bid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.domain.models import Direction, OrderBook


@dataclass(slots=True, frozen=True)
class Premiums:
    sell_upbit_bps: float  # (upbit bid / fx) vs binance ask
    buy_upbit_bps: float  # (upbit ask / fx) vs binance bid
    mid_bps: float

    def executable(self, direction: Direction, entering: bool) -> float:
        """The premium we trade at when entering (or exiting) a direction."""
        sells_upbit = (direction is Direction.SELL_UPBIT) == entering
        return self.sell_upbit_bps if sells_upbit else self.buy_upbit_bps


def premiums(upbit: OrderBook, binance: OrderBook, fx: float) -> Premiums:
    u_bid, u_ask = upbit.bids[0][0], upbit.asks[0][0]
    b_bid, b_ask = binance.bids[0][0], binance.asks[0][0]
    return Premiums(
        sell_upbit_bps=((u_bid / fx) / b_ask - 1.0) * 1e4,
        buy_upbit_bps=((u_ask / fx) / b_bid - 1.0) * 1e4,
        mid_bps=(((u_bid + u_ask) / fx) / (b_bid + b_ask) - 1.0) * 1e4,
    )


class RollingBaseline:
    """Time-weighted EMA of the mid premium: the persistent level we trade around.

    The premium often sits at +1..5 %; trading the level itself would just buy
    the kimchi premium. An EMA with a half-life in seconds is O(1) per tick and
    independent of the tick rate.
    """

    __slots__ = ("_last_t", "halflife_s", "samples_s", "value")

    def __init__(self, halflife_s: float) -> None:
        self.halflife_s = halflife_s
        self.value: float | None = None
        self._last_t = 0.0
        self.samples_s = 0.0  # how long the baseline has been fed

    def expire(self, t: float) -> bool:
        """Forget the baseline when no sample came for longer than a half-life.

        A gap in the data (an outage, or recordings days apart in a backtest) leaves
        a baseline that describes the premium as it was: measuring the next sample's
        deviation against it trades the gap, not the premium. Starting over makes
        the strategy warm up again. Returns whether it forgot."""
        if self.value is None or t - self._last_t <= self.halflife_s:
            return False
        self.value, self.samples_s = None, 0.0
        return True

    def update(self, mid_bps: float, t: float) -> float:
        if self.value is None:
            self.value = mid_bps
        else:
            dt = max(t - self._last_t, 0.0)
            alpha = 1.0 - math.exp(-math.log(2.0) * dt / self.halflife_s)
            self.value += alpha * (mid_bps - self.value)
            self.samples_s += dt
        self._last_t = t
        return self.value
