"""One trading slot per pair: FLAT -> ENTERING -> OPEN -> EXITING -> FLAT.

A position is two legs of equal base quantity (R-M4); each leg's open
quantity is tracked separately so a partial fill on one venue is visible and
can be unwound rather than silently assumed away.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from core.domain.models import Direction, ExitReason, Venue
from core.trading.gateway import Purpose


class SlotState(StrEnum):
    FLAT = "flat"
    ENTERING = "entering"
    OPEN = "open"
    EXITING = "exiting"


@dataclass(slots=True)
class WorkingOrder:
    venue: Venue
    order_id: str
    client_order_id: str
    symbol: str
    purpose: Purpose
    placed_mono: float
    amount: float
    trades_seen: int = 0
    filled: float = 0.0
    cancel_sent: bool = False


@dataclass(slots=True)
class Slot:
    base: str
    state: SlotState = SlotState.FLAT
    position_id: str = ""
    direction: Direction = Direction.SELL_UPBIT
    open_qty: dict[Venue, float] = field(default_factory=lambda: {Venue.UPBIT: 0.0, Venue.BINANCE: 0.0})
    working: dict[str, WorkingOrder] = field(default_factory=dict)  # order id -> order
    opened_at: float = 0.0
    opened_mono: float = 0.0
    entry_premium_bps: float = 0.0
    expected_edge_bps: float = 0.0
    break_even_bps: float = 0.0
    exit_reason: ExitReason | None = None
    # Quote flows of every fill of this position. KRW is converted once, at the
    # close, so a round trip carries no spurious FX PnL on KRW it no longer holds.
    krw_flow: float = 0.0
    usdt_flow: float = 0.0
    base_flow: float = 0.0  # net base across both venues (zero when legs match)
    fees_usd: float = 0.0
    fixed_fees_usd: float = 0.0  # fees in neither quote (base, BNB): USD at the fill
    last_exit_mono: float = -1e18
    # Orders decided but still being committed and sent by a task off the tick
    # (live): the slot is "sending" and is not settled until their acks are taken.
    # Not cleared by reset(): only taking the acks ends it.
    sending: int = 0

    def reset(self) -> None:
        self.state = SlotState.FLAT
        self.position_id = ""
        self.open_qty = {Venue.UPBIT: 0.0, Venue.BINANCE: 0.0}
        self.working.clear()
        self.exit_reason = None
        self.krw_flow = self.usdt_flow = self.base_flow = self.fees_usd = 0.0
        self.fixed_fees_usd = 0.0

    @property
    def has_position(self) -> bool:
        return any(q > 0 for q in self.open_qty.values())
