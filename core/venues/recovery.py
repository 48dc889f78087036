"""Start-up recovery of the order journal (R-S6, crash safety).

Every intent a previous process left PENDING, UNKNOWN or OPEN is resolved
against the venue by its client order id - never by sending it again - and
every open venue order is either ours (then cancelled and recorded) or a
stranger (cancelled). Paper venues live and die with their process, so their
leftovers are closed in the journal without asking anyone.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

from core.crash_points import NO_CRASH, CrashPoints
from core.domain.journal_kinds import UNRESOLVED_INTENTS
from core.domain.models import OrderStatus, Venue
from core.errors import ExchangeError, OrderNotFound
from core.ports import ExchangePort, JournalStore
from core.venues.ccxt_client import patience

UNRESOLVED = list(UNRESOLVED_INTENTS)
RECOVERY_PATIENCE_S = 90.0  # a venue's budget frees within its window (Binance: 60 s)
# A cancel's answer can be the order as it was before the cancel (Upbit says `wait`):
# it is read again this many times, this far apart, before it counts as not done.
CANCEL_REREADS = 5
CANCEL_REREAD_GAP_S = 0.2
STATE_OF = {OrderStatus.CLOSED: "FILLED", OrderStatus.CANCELED: "CANCELED",
            OrderStatus.EXPIRED: "CANCELED", OrderStatus.REJECTED: "REJECTED",
            OrderStatus.OPEN: "OPEN"}


@dataclass
class RecoveryReport:
    resolved: list[dict[str, Any]] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    foreign_cancelled: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.unresolved

    def as_dict(self) -> dict[str, Any]:
        return {"complete": self.complete, "resolved": self.resolved,
                "unresolved": self.unresolved, "foreign_cancelled": self.foreign_cancelled}


async def close_paper_orphans(store: JournalStore, now: float) -> int:
    """Intents of paper runs whose process ended: their venue ended with it."""
    closed = 0
    for intent in await store.intents_in_states(UNRESOLVED):
        run = await store.get_run(intent["run_id"])
        if run is not None and run["mode"] == "paper":
            await store.update_intent(intent["client_order_id"], "CANCELED",
                                      reason="paper venue ended with its process",
                                      updated_at=now)
            closed += 1
    for pos in await store.positions(None, ["entering", "open", "exiting"]):
        run = await store.get_run(pos["run_id"])
        if run is not None and run["mode"] == "paper":
            await store.upsert_position(
                position_id=pos["position_id"], run_id=pos["run_id"], base=pos["base"],
                direction=pos["direction"], qty=pos["qty"], state="flat",
                opened_at=pos["opened_at"], entry_premium_bps=pos["entry_premium_bps"],
                expected_edge_bps=pos["expected_edge_bps"], break_even_bps=pos["break_even_bps"],
                exit_reason="paper venue ended with its process")
    if closed:
        logger.warning("closed {} paper order intent(s) left by an ended process", closed)
    return closed


async def _record_missing_fill(store: JournalStore, intent: dict[str, Any], order: Any, now: float
                               ) -> None:
    """Journal what the venue filled beyond what the journal already has for this
    order (the crashed process may have recorded part of it): one fill for the rest."""
    have = [f for f in await store.fills(intent["run_id"])
            if f["client_order_id"] == intent["client_order_id"]]
    got_amount = sum(float(f["amount"]) for f in have)
    got_cost = sum(float(f["cost"]) for f in have)
    got_fee = sum(float(f["fee"]) for f in have)
    amount = order.filled - got_amount
    if amount <= max(order.filled, 1.0) * 1e-9:
        return
    cost = order.cost - got_cost
    await store.record_fill(
        venue=intent["venue"], trade_id=f"{order.id}#{order.filled!r}",
        client_order_id=intent["client_order_id"], run_id=intent["run_id"],
        symbol=intent["symbol"], side=intent["side"], price=cost / amount, amount=amount,
        cost=cost, fee=max(order.fee_cost - got_fee, 0.0), fee_currency=order.fee_currency,
        fx=None, position_id=intent["position_id"], ts=now)


async def recover_live(store: JournalStore, venues: Mapping[Venue, ExchangePort], now: float,
                       cancel_foreign: bool = True, act: bool = True, *,
                       run_id: str | None = None, crash: CrashPoints = NO_CRASH,
                       reason: str = "recovered at start-up") -> RecoveryReport:
    """Resolve the journal against the venues. `act=False` only reads: open orders
    stay open (and are reported), nothing is cancelled. `run_id` limits it to one
    run's intents (a run's end resolves its own).

    Nothing trades yet, so its requests wait for the venue's budget as long as it
    takes (another process on this IP, an earlier one that crashed, may have spent
    most of it) rather than fail and leave the journal unresolved."""
    with patience(RECOVERY_PATIENCE_S):
        return await _recover_live(store, venues, now, cancel_foreign, act, run_id, crash,
                                   reason)


async def _cancel_and_confirm(ex: ExchangePort, order: Any, symbol: str, cid: str) -> Any:
    """Cancel, then read the order by client id until the venue says it is done: an
    order recorded as OPEN after a cancel is one nobody reads again."""
    order = await ex.cancel_order(order.id, symbol)
    for _ in range(CANCEL_REREADS):
        if order.status.done:
            break
        await asyncio.sleep(CANCEL_REREAD_GAP_S)
        order = await ex.fetch_order(None, symbol, cid)
    return order


async def _recover_live(store: JournalStore, venues: Mapping[Venue, ExchangePort], now: float,
                        cancel_foreign: bool, act: bool, run_id: str | None,
                        crash: CrashPoints, reason: str) -> RecoveryReport:
    report = RecoveryReport()
    known: set[str] = set()
    for intent in await store.intents_in_states(UNRESOLVED, run_id):
        crash.hit("in_recovery")
        cid = intent["client_order_id"]
        known.add(cid)
        ex = venues.get(Venue(intent["venue"]))
        if ex is None:
            report.unresolved.append({"client_order_id": cid, "why": "no such venue"})
            continue
        try:
            order = await ex.fetch_order(None, intent["symbol"], cid)
        except OrderNotFound:
            await store.update_intent(cid, "REJECTED", reason="never reached the venue",
                                      updated_at=now)
            report.resolved.append({"client_order_id": cid, "state": "REJECTED"})
            continue
        except ExchangeError as exc:
            report.unresolved.append({"client_order_id": cid, "why": str(exc)})
            continue
        if not order.status.done and not act:
            report.unresolved.append({"client_order_id": cid, "why": "still open on the venue"})
            continue
        if not order.status.done:
            try:
                order = await _cancel_and_confirm(ex, order, intent["symbol"], cid)
            except ExchangeError as exc:
                report.unresolved.append({"client_order_id": cid, "why": f"cancel: {exc}"})
                continue
            crash.hit("in_recovery")
            if not order.status.done:
                report.unresolved.append({"client_order_id": cid,
                                          "why": "cancel sent, the venue still lists it open"})
                continue
        await _record_missing_fill(store, intent, order, now)
        state = STATE_OF.get(order.status, "CANCELED")
        await store.update_intent(cid, state, exchange_order_id=order.id, filled=order.filled,
                                  reason=reason, updated_at=now)
        report.resolved.append({"client_order_id": cid, "state": state, "filled": order.filled})
    if cancel_foreign and act:
        for venue, ex in venues.items():
            try:
                open_orders = await ex.fetch_open_orders()
            except ExchangeError as exc:
                report.unresolved.append({"venue": str(venue), "why": f"open orders: {exc}"})
                continue
            for order in open_orders:
                if order.client_order_id in known:
                    continue
                try:
                    await ex.cancel_order(order.id, order.symbol)
                    report.foreign_cancelled.append({"venue": str(venue), "id": order.id,
                                                     "client_order_id": order.client_order_id,
                                                     "symbol": order.symbol})
                except ExchangeError as exc:
                    report.unresolved.append({"venue": str(venue), "id": order.id,
                                              "why": f"cancel: {exc}"})
    return report
