"""ACTIVE / REDUCING / HALTED (R-S7), switched synchronously.

The gateway reads this on every order, so a HALT takes effect at the instant
it is set, before anything is awaited (docs/architecture.md, the kill flow).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from core.domain.models import TradingState

# The flags row that keeps HALTED across restarts (R-S7).
HALT_FLAG = "trading_state"


@dataclass(slots=True)
class TradingStateBox:
    state: TradingState = TradingState.ACTIVE
    reason: str = ""
    changed_at: float = 0.0
    changed_perf: float = 0.0  # perf_counter at the change: kill-latency measurement
    history: list[tuple[float, TradingState, str]] = field(default_factory=list)
    # Advanced by every kill, pause, disarm and reset, so a confirmation asked for in an
    # older epoch can tell the state changed since and refuse (an old /reset Confirm
    # must not clear a newer kill).
    epoch: int = 0

    def set(self, state: TradingState, reason: str, now: float) -> bool:
        """Move to state; HALTED only leaves through reset(). Returns whether it changed."""
        if self.state is TradingState.HALTED and state is not TradingState.HALTED:
            return False
        if state is self.state:
            return False
        self.state, self.reason, self.changed_at = state, reason, now
        self.changed_perf = time.perf_counter()
        self.history.append((now, state, reason))
        self.epoch += 1
        return True

    def reset(self, now: float, reason: str = "reset") -> None:
        self.state, self.reason, self.changed_at = TradingState.ACTIVE, reason, now
        self.history.append((now, TradingState.ACTIVE, reason))
        self.epoch += 1

    def advance_epoch(self) -> int:
        """A command that changes what a pending confirmation was asked about."""
        self.epoch += 1
        return self.epoch

    @property
    def allows_entries(self) -> bool:
        return self.state is TradingState.ACTIVE
