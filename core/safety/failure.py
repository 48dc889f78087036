"""A failed safety condition, named: what the live gate, the ARM and preflight refuse with
(R-S1: every refusal names the condition that failed)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed safety condition: a stable name plus a message for the operator."""

    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "message": self.message}
