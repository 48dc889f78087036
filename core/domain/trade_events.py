"""What the engine tells the operator about each trade: entry, exit, a failed or an
unwound leg. Facts only; core/monitoring/trade_notices.py words and sends them."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class TradeEventKind(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    FAILED_LEG = "failed_leg"
    UNWIND = "unwind"


@dataclass(frozen=True, slots=True)
class TradeEvent:
    kind: TradeEventKind
    base: str
    position_id: str
    direction: str
    at: float  # wall clock, seconds
    qty: float = 0.0
    # effective fill price per venue (fees included), in the venue's quote
    prices: dict[str, float] = field(default_factory=dict)
    premium_bps: float | None = None  # entry: at entry; exit: at exit
    expected_edge_bps: float | None = None
    pnl_usd: float | None = None  # exit: the strategy's realised PnL of the round trip
    fees_usd: float | None = None
    held_s: float | None = None
    detail: str = ""  # exit reason, or what failed
