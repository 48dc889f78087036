"""Break-even and expected edge for an entry (R-M3).

Entry requires: expected edge > fees on all four legs + slippage (from book
depth, for the size we want, counted for entry and again for the exit) + buffer.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.domain.models import Direction, OrderBook, Side
from core.domain.premium import Premiums


@dataclass(slots=True, frozen=True)
class EdgeDecision:
    direction: Direction
    expected_edge_bps: float
    break_even_bps: float
    entry_premium_bps: float
    slippage_bps: float

    @property
    def passes(self) -> bool:
        return self.expected_edge_bps > self.break_even_bps


def vwap_slippage_bps(book: OrderBook, side: Side, qty: float) -> float:
    """How far the VWAP for qty sits from the top of book, in bps; inf if too thin."""
    levels = book.asks if side is Side.BUY else book.bids
    top = levels[0][0]
    left = qty
    notional = 0.0
    for price, size in levels:
        take = min(left, size)
        notional += take * price
        left -= take
        if left <= 0.0:
            break
    if left > 1e-12:
        return float("inf")
    vwap = notional / qty
    return abs(vwap / top - 1.0) * 1e4


def four_leg_fees_bps(upbit_fee_bps: float, binance_fee_bps: float) -> float:
    return 2.0 * (upbit_fee_bps + binance_fee_bps)


def evaluate_entry(
    direction: Direction,
    prem: Premiums,
    baseline_bps: float,
    upbit: OrderBook,
    binance: OrderBook,
    qty: float,
    fees_bps: float,
    buffer_bps: float,
) -> EdgeDecision:
    """Expected edge if the premium reverts to its baseline, against the break-even.

    The exit pays the other side of the spread, so the expected exit premium is
    the baseline shifted by the half-spread we cross on the way out.
    """
    if direction is Direction.SELL_UPBIT:
        entry = prem.sell_upbit_bps
        expected_exit = baseline_bps + (prem.buy_upbit_bps - prem.mid_bps)
        edge = entry - expected_exit
        slip = vwap_slippage_bps(upbit, Side.SELL, qty) + vwap_slippage_bps(binance, Side.BUY, qty)
    else:
        entry = prem.buy_upbit_bps
        expected_exit = baseline_bps - (prem.mid_bps - prem.sell_upbit_bps)
        edge = expected_exit - entry
        slip = vwap_slippage_bps(upbit, Side.BUY, qty) + vwap_slippage_bps(binance, Side.SELL, qty)
    break_even = fees_bps + 2.0 * slip + buffer_bps
    return EdgeDecision(direction, edge, break_even, entry, slip)
