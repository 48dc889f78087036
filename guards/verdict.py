"""What a guard says: an action, and the numbers behind it."""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Action(IntEnum):
    OK = 0
    ALERT = 1
    REDUCE = 2
    KILL = 3


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    name: str
    observed: float
    threshold: float
    window_s: float
    reason: str

    @property
    def tripped(self) -> bool:
        return self.action is not Action.OK


def ok(name: str, observed: float, threshold: float, window_s: float = 0.0) -> Verdict:
    return Verdict(Action.OK, name, observed, threshold, window_s, "")
