"""LIVE ARM (R-S2): a single-use start token with an ack, an age limit and a cap.

Pure: clocks are passed in (wall `now` for LIVE_ARM_AT, monotonic for the in-process
expiry of a command ARM), so every boundary is a table test. Persistence of consumed
tokens lives in `ArmBook` at the bottom, over the journal's `flags` table.

Why strict parsing: this is the operator's last deliberate act before real money
moves. " I_UNDERSTAND_LIVE_RISK", "1.7e9" or "1e3" are typos or copy-paste accidents,
and a typo must refuse, never be "helpfully" normalised.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from core.ports import JournalStore
from core.safety.failure import Failure

ACK_TEXT = "I_UNDERSTAND_LIVE_RISK"
MAX_AGE_S = 600  # runbook 1.2: LIVE_ARM_AT is valid for 10 minutes
CAP_MIN_USD = Decimal(10)
CAP_MAX_USD = Decimal(1000)

ARM_FLAG = "arm_state"  # flags row holding a command ARM (JSON) until consumed/disarmed
CONSUMED_PREFIX = "arm_consumed:"  # flags rows: one per consumed token, never deleted

_INT_RE = re.compile(r"[0-9]{1,12}", re.ASCII)
_DEC_RE = re.compile(r"[0-9]{1,7}(\.[0-9]{1,12})?", re.ASCII)

Source = Literal["env", "command"]


def check_ack(raw: str | None) -> list[Failure]:
    if raw is None:
        return [Failure("arm_ack", "LIVE_ARM_ACK is not set")]
    if raw != ACK_TEXT:  # no strip, no casefold: see module docstring
        return [Failure("arm_ack", f"LIVE_ARM_ACK must be exactly {ACK_TEXT} "
                                   f"(got {len(raw)} characters that differ)")]
    return []


def parse_armed_at(raw: str | None, now_wall: float) -> tuple[int | None, list[Failure]]:
    """LIVE_ARM_AT: integer unix seconds, not in the future, at most MAX_AGE_S old."""
    if raw is None:
        return None, [Failure("arm_at", "LIVE_ARM_AT is not set "
                                        "(use: export LIVE_ARM_AT=$(date +%s))")]
    if not isinstance(raw, str) or not _INT_RE.fullmatch(raw):
        return None, [Failure("arm_at", f"LIVE_ARM_AT must be integer unix seconds, got {raw!r}")]
    at = int(raw)
    age = now_wall - at
    if age < 0:
        return at, [Failure("arm_age", f"LIVE_ARM_AT is {-age:.0f} s in the future")]
    if age > MAX_AGE_S:
        return at, [Failure("arm_age", f"ARM is {age:.0f} s old (at most {MAX_AGE_S} s); re-arm")]
    return at, []


def parse_cap(raw: Any) -> tuple[Decimal | None, list[Failure]]:
    """Per-leg notional cap in USD, in [10, 1000] inclusive; Decimal so 1000.0000001 refuses."""
    if raw is None:
        return None, [Failure("arm_cap", "LIVE_MAX_NOTIONAL_USD is not set")]
    if isinstance(raw, bool):
        return None, [Failure("arm_cap", f"cap must be a number, got {raw!r}")]
    if isinstance(raw, (int, float)):
        if not math.isfinite(raw):
            return None, [Failure("arm_cap", f"cap must be a finite number, got {raw!r}")]
        value = Decimal(repr(raw)) if isinstance(raw, float) else Decimal(raw)
    elif isinstance(raw, str):
        if raw.startswith("-"):
            return None, [Failure("arm_cap", f"cap must not be negative, got {raw!r}")]
        if not _DEC_RE.fullmatch(raw):
            return None, [Failure("arm_cap", f"cap must be a plain decimal number of USD, "
                                             f"got {raw!r}")]
        try:
            value = Decimal(raw)
        except InvalidOperation:  # pragma: no cover - the regex already guarantees it
            return None, [Failure("arm_cap", f"cap is not a number: {raw!r}")]
    else:
        return None, [Failure("arm_cap", f"cap must be a number, got {type(raw).__name__}")]
    if value < 0:
        return None, [Failure("arm_cap", f"cap must not be negative, got {raw!r}")]
    if not CAP_MIN_USD <= value <= CAP_MAX_USD:
        return value, [Failure("arm_cap", f"cap ${value} is outside [{CAP_MIN_USD}, "
                                          f"{CAP_MAX_USD}] USD")]
    return value, []


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class ArmState:
    """One ARM as given (raw strings kept so the checks can name exactly what is wrong)."""

    source: Source
    ack: str | None
    armed_at_raw: str | None
    cap_raw: Any
    armed_wall: float | None = None  # exact wall time of a command ARM
    armed_mono: float | None = None  # monotonic time of a command ARM made in this process
    actor: str | None = None
    consumed_by: str | None = None

    # --- construction ------------------------------------------------------------
    @classmethod
    def from_env(cls, settings: Any, now: float | None = None) -> ArmState | None:
        """The runbook's three variables; None when none of them is set.

        `now` is accepted for symmetry with arm_command; validity is decided by check().
        """
        ack = getattr(settings, "live_arm_ack", None)
        at = getattr(settings, "live_arm_at", None)
        cap = getattr(settings, "live_max_notional_usd", None)
        if ack is None and at is None and cap is None:
            return None
        return cls("env", ack, at, cap)

    @classmethod
    def arm_command(cls, usd: Any, now_wall: float, now_mono: float,
                    actor: str | None = None) -> ArmState:
        """`/arm <usd>` / `arbops arm <usd>`: armed-at is now; the ack is the command itself."""
        return cls("command", ACK_TEXT, str(int(now_wall)), usd, armed_wall=float(now_wall),
                   armed_mono=float(now_mono), actor=actor)

    # --- serialisation (command ARMs are persisted so `arbops run` in another process sees them)
    def to_json(self) -> str:
        cap = self.cap_raw if isinstance(self.cap_raw, (str, int, float)) else str(self.cap_raw)
        return json.dumps({"source": self.source, "armed_at": self.armed_at_raw, "cap": cap,
                           "armed_wall": self.armed_wall, "actor": self.actor}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArmState:
        d = json.loads(text)
        # The monotonic stamp is meaningless in another process: the wall age applies there.
        return cls(d["source"], ACK_TEXT, d["armed_at"], d["cap"],
                   armed_wall=d.get("armed_wall"), actor=d.get("actor"))

    # --- decisions ---------------------------------------------------------------
    @property
    def token(self) -> str:
        """What consumption remembers: the source and the LIVE_ARM_AT value."""
        return f"{self.source}:{self.armed_at_raw}"

    @property
    def cap_usd(self) -> float | None:
        value, failures = parse_cap(self.cap_raw)
        return None if failures or value is None else float(value)

    def expires_at(self) -> float | None:
        if self.armed_wall is not None:
            return self.armed_wall + MAX_AGE_S
        raw = self.armed_at_raw
        if isinstance(raw, str) and _INT_RE.fullmatch(raw):
            return int(raw) + MAX_AGE_S
        return None

    def check(self, now_wall: float, now_mono: float | None = None,
              consumed: bool = False) -> list[Failure]:
        """Every failed ARM condition (never stops at the first one)."""
        out: list[Failure] = []
        out += check_ack(self.ack)
        if self.source == "command" and self.armed_wall is not None:
            age = now_wall - self.armed_wall
            if age < 0:
                out.append(Failure("arm_age", f"ARM is {-age:.0f} s in the future "
                                              "(the wall clock went backwards)"))
            elif age > MAX_AGE_S:
                out.append(Failure("arm_age", f"ARM is {age:.0f} s old (at most {MAX_AGE_S} s)"))
            if self.armed_mono is not None and now_mono is not None:
                # In-process, the monotonic clock is the truth: a wall-clock jump
                # backwards must not extend an ARM.
                mono_age = now_mono - self.armed_mono
                if mono_age > MAX_AGE_S and not any(f.name == "arm_age" for f in out):
                    out.append(Failure("arm_age", f"ARM is {mono_age:.0f} s old by the "
                                                  f"monotonic clock (at most {MAX_AGE_S} s)"))
        else:
            out += parse_armed_at(self.armed_at_raw, now_wall)[1]
        out += parse_cap(self.cap_raw)[1]
        if consumed or self.consumed_by is not None:
            by = f" by run {self.consumed_by}" if self.consumed_by else ""
            out.append(Failure("arm_consumed", f"this ARM (LIVE_ARM_AT={self.armed_at_raw}) "
                                               f"was already used{by}; arm again"))
        return out

    def consume(self, run_id: str) -> None:
        self.consumed_by = run_id

    def describe(self) -> dict[str, Any]:
        """What the two-step confirmation shows before the operator confirms."""
        exp = self.expires_at()
        cap = self.cap_usd
        return {
            "mode": "LIVE (real money)",
            "source": self.source,
            "per_leg_cap_usd": cap,
            "armed_at": self.armed_at_raw,
            "expires_at": _iso(exp) if exp is not None else None,
            "text": (f"ARM LIVE trading: each leg order up to ${cap:g}; expires "
                     f"{_iso(exp) if exp is not None else '?'} UTC; single use (one phase)."
                     if cap is not None else "ARM LIVE trading: invalid cap"),
        }


class ArmBook:
    """Persistence over the journal's flags table: the command ARM and consumed tokens.

    A consumed token row is never deleted (not even by disarm or reset), so a
    LIVE_ARM_AT value left in a shell or a .env file refuses after a restart.
    """

    def __init__(self, store: JournalStore) -> None:
        self.store = store

    async def load_command(self) -> ArmState | None:
        raw = await self.store.get_flag(ARM_FLAG)
        return None if raw is None else ArmState.from_json(raw)

    async def save_command(self, arm: ArmState, ts: float) -> None:
        await self.store.set_flag(ARM_FLAG, arm.to_json(), ts)

    async def clear_command(self) -> None:
        await self.store.clear_flag(ARM_FLAG)

    async def consumed_by(self, arm: ArmState) -> str | None:
        return await self.store.get_flag(CONSUMED_PREFIX + arm.token)

    async def mark_consumed(self, arm: ArmState, run_id: str, ts: float) -> None:
        await self.store.set_flag(CONSUMED_PREFIX + arm.token, run_id, ts)
        arm.consume(run_id)
