"""The journal's vocabulary: what its rows may say, as enums instead of loose strings.

Events are facts, named in the past tense (ARMED, KILLED, RESET, RECONCILED); intent
and position states are the values the journal's CHECK constraints allow; severities
are what the notifier fans out. StrEnum values are what is stored, so a row and an
enum compare equal and old readers keep working.
"""
from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    ARMED = "armed"
    DISARMED = "disarmed"
    ARM_CONSUMED = "arm_consumed"
    PREFLIGHT_CHECKED = "preflight_checked"
    KILLED = "killed"
    RESET = "reset"
    ORDERS_CANCELLED_OFFLINE = "orders_cancelled_offline"
    RECOVERED = "recovered"
    STARTING_BALANCES_RECORDED = "starting_balances_recorded"
    RECONCILED = "reconciled"
    HOURLY_GATE_EVALUATED = "hourly_gate_evaluated"
    LADDER_ROLLED_BACK = "ladder_rolled_back"
    LADDER_OVERRIDDEN = "ladder_overridden"
    ORDER_REFUSED = "order_refused"
    TEST_ALERT_SENT = "test_alert_sent"


# What the journals of earlier versions called them (migration 2 renames the rows).
LEGACY_EVENT_NAMES: dict[str, EventKind] = {
    "arm": EventKind.ARMED,
    "disarm": EventKind.DISARMED,
    "preflight": EventKind.PREFLIGHT_CHECKED,
    "kill": EventKind.KILLED,
    "offline_cancel": EventKind.ORDERS_CANCELLED_OFFLINE,
    "recovery": EventKind.RECOVERED,
    "balances_at_start": EventKind.STARTING_BALANCES_RECORDED,
    "reconciliation": EventKind.RECONCILED,
    "hourly_gate": EventKind.HOURLY_GATE_EVALUATED,
    "ladder_rollback": EventKind.LADDER_ROLLED_BACK,
    "ladder_override": EventKind.LADDER_OVERRIDDEN,
    "test_alert": EventKind.TEST_ALERT_SENT,
}


class IntentState(StrEnum):
    PENDING = "PENDING"  # journaled, not yet known to be at the venue
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"  # sent, answer lost: resolved by client order id, never resent


UNRESOLVED_INTENTS: tuple[IntentState, ...] = (IntentState.PENDING, IntentState.UNKNOWN,
                                               IntentState.OPEN)


class PositionState(StrEnum):
    ENTERING = "entering"
    OPEN = "open"
    EXITING = "exiting"
    CLOSED = "closed"
    FLAT = "flat"


LIVE_POSITIONS: tuple[PositionState, ...] = (PositionState.ENTERING, PositionState.OPEN,
                                             PositionState.EXITING)


class Severity(StrEnum):
    KILL = "KILL"
    CRITICAL = "CRITICAL"  # needs a person now: still not flat after a kill, an outage
    ALERT = "ALERT"
    RECOVERED = "RECOVERED"
    INFO = "INFO"
    TEST = "TEST"
