"""Entry and exit decisions: pure functions of books, baseline and time (R-M2, R-M3).

The strategy trades deviations of the premium from its rolling baseline, not
its level; entries must beat the four-leg break-even, and every exit carries a
reason that is counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.domain.edge import EdgeDecision, evaluate_entry, four_leg_fees_bps
from core.domain.models import Direction, ExitReason, OrderBook
from core.domain.premium import Premiums, RollingBaseline, premiums


@dataclass(slots=True, frozen=True)
class StrategyParams:
    upbit_fee_bps: float
    binance_fee_bps: float
    entry_buffer_bps: float
    baseline_halflife_s: float
    baseline_warmup_s: float
    take_profit_bps: float
    stop_loss_bps: float
    max_hold_s: float
    reversal_bps: float

    @property
    def fees_bps(self) -> float:
        return four_leg_fees_bps(self.upbit_fee_bps, self.binance_fee_bps)


@dataclass(slots=True)
class Signal:
    prem: Premiums
    baseline: float
    warm: bool


class Strategy:
    def __init__(self, params: StrategyParams) -> None:
        self.p = params
        self._baselines: dict[str, RollingBaseline] = {}
        self.decisions_evaluated = 0

    def observe(self, base: str, upbit: OrderBook, binance: OrderBook, fx: float, t: float) -> Signal:
        prem = premiums(upbit, binance, fx)
        bl = self._baselines.get(base)
        if bl is None:
            bl = self._baselines[base] = RollingBaseline(self.p.baseline_halflife_s)
        # The deviation is measured against the baseline as it stood before this
        # sample: a baseline that already holds the sample hides part of the move.
        bl.expire(t)
        before = bl.value
        warm = before is not None and bl.samples_s >= self.p.baseline_warmup_s
        bl.update(prem.mid_bps, t)
        return Signal(prem, prem.mid_bps if before is None else before, warm)

    def entry(
        self, sig: Signal, upbit: OrderBook, binance: OrderBook, qty: float
    ) -> EdgeDecision | None:
        """The better direction if it beats its break-even, else None."""
        if not sig.warm:
            return None
        self.decisions_evaluated += 1
        # Cheap pre-filter: without a deviation larger than the fees there is
        # nothing to evaluate, and most ticks stop here.
        dev = sig.prem.mid_bps - sig.baseline
        if abs(dev) < self.p.fees_bps:
            return None
        direction = Direction.SELL_UPBIT if dev > 0 else Direction.BUY_UPBIT
        decision = evaluate_entry(
            direction, sig.prem, sig.baseline, upbit, binance, qty, self.p.fees_bps,
            self.p.entry_buffer_bps,
        )
        return decision if decision.passes else None

    def unrealized_bps(self, direction: Direction, entry_premium_bps: float, prem: Premiums) -> float:
        exit_prem = prem.executable(direction, entering=False)
        gross = (
            entry_premium_bps - exit_prem
            if direction is Direction.SELL_UPBIT
            else exit_prem - entry_premium_bps
        )
        return gross - self.p.fees_bps

    def exit_reason(
        self, direction: Direction, entry_premium_bps: float, sig: Signal, held_s: float
    ) -> ExitReason | None:
        pnl_bps = self.unrealized_bps(direction, entry_premium_bps, sig.prem)
        if pnl_bps >= self.p.take_profit_bps:
            return ExitReason.TAKE_PROFIT
        if pnl_bps <= -self.p.stop_loss_bps:
            return ExitReason.STOP_LOSS
        if held_s >= self.p.max_hold_s:
            return ExitReason.TIME_LIMIT
        dev = sig.prem.mid_bps - sig.baseline
        if direction is Direction.SELL_UPBIT and dev <= -self.p.reversal_bps:
            return ExitReason.REVERSAL
        if direction is Direction.BUY_UPBIT and dev >= self.p.reversal_bps:
            return ExitReason.REVERSAL
        return None
