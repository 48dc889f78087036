"""The one door every order goes through (R-S6).

Checks, in order: trading state, per-order notional cap, exposure cap, venue
minimum and precision, price collar against a fresh book, stale book, order
rate. A refusal is an event with a reason; a pass journals the intent
(committed) before the order is sent. A send whose outcome is unknown is
recorded UNKNOWN and later resolved by client order id, never resent.
"""
from __future__ import annotations

import itertools
import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from core.clock import Clock
from core.crash_points import NO_CRASH, CrashPoints
from core.domain.journal_kinds import EventKind, IntentState
from core.domain.models import (
    MarketSnapshot,
    Order,
    OrderRequest,
    OrderType,
    Side,
    TradingState,
    Venue,
)
from core.errors import (
    ExchangeError,
    GatewayRefusal,
    OrderRejected,
    RateLimited,
    RuleViolation,
    SendUnknown,
    VenueUnavailable,
)
from core.ports import ExchangePort, JournalStore
from core.trading.state import TradingStateBox
from core.venues.rules import VenueRules


class Purpose(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"
    FLATTEN = "flatten"
    UNWIND = "unwind"

    @property
    def adds_risk(self) -> bool:
        return self is Purpose.ENTRY


class TradingVenue(ExchangePort, Protocol):
    """A venue the engine trades on: the exchange port plus its order rules."""

    def rules(self, symbol: str) -> VenueRules: ...


@dataclass(slots=True, frozen=True)
class Prepared:
    intent: OrderIntent
    request: OrderRequest


@dataclass(slots=True, frozen=True)
class OrderIntent:
    venue: Venue
    symbol: str
    base: str
    side: Side
    amount: float
    price: float  # limit price (marketable, inside the collar)
    purpose: Purpose
    position_id: str
    notional_usd: float


class Gateway:
    def __init__(
        self,
        exchanges: Mapping[Venue, TradingVenue],
        journal: JournalStore,
        state: TradingStateBox,
        clock: Clock,
        *,
        run_id: str,
        max_order_usd: float,
        max_exposure_usd: float,
        collar_bps: float,
        stale_book_ms: int,
        max_orders_per_second: float,
        write_behind: Any = None,
        crash: CrashPoints = NO_CRASH,
        fence: Any = None,
    ) -> None:
        self.crash = crash
        self.fence = fence  # async () -> bool: the Redis fencing check, live only
        self._write_behind = write_behind
        self._ex = exchanges
        self._journal = journal
        self._state = state
        self._clock = clock
        self.run_id = run_id
        self.max_order_usd = max_order_usd
        self.max_exposure_usd = max_exposure_usd
        self.collar_bps = collar_bps
        self.stale_book_ms = stale_book_ms
        self.max_orders_per_second = max_orders_per_second
        self._sent: deque[float] = deque()
        self._ids = itertools.count(1)
        # Unique forever (Upbit refuses a reused identifier even after a failure):
        # wall-clock seconds plus randomness, <= 36 chars for Binance.
        self._prefix = f"a{int(time.time()):x}{secrets.token_hex(3)}"
        self.refusals: dict[str, int] = {}

    def next_client_id(self) -> str:
        return f"{self._prefix}-{next(self._ids)}"

    def check(self, intent: OrderIntent, snap: MarketSnapshot, exposure_usd: float) -> None:
        """Raise GatewayRefusal naming the first failed check."""
        state = self._state.state
        if state is TradingState.HALTED and intent.purpose is not Purpose.FLATTEN:
            raise GatewayRefusal("trading_state", f"HALTED ({self._state.reason})")
        if state is TradingState.REDUCING and intent.purpose.adds_risk:
            raise GatewayRefusal("trading_state", f"REDUCING ({self._state.reason}): exits only")
        if intent.purpose.adds_risk:
            if intent.notional_usd > self.max_order_usd + 1e-9:
                raise GatewayRefusal(
                    "notional_cap",
                    f"order ${intent.notional_usd:.2f} > cap ${self.max_order_usd:.2f}",
                )
            if exposure_usd + intent.notional_usd > self.max_exposure_usd + 1e-9:
                raise GatewayRefusal(
                    "exposure_cap",
                    f"exposure ${exposure_usd + intent.notional_usd:.2f} "
                    f"> cap ${self.max_exposure_usd:.2f}",
                )
        books = snap.upbit if intent.venue is Venue.UPBIT else snap.binance
        book = books.get(intent.base)
        if book is None:
            raise GatewayRefusal("stale_book", f"no book for {intent.symbol}")
        age_ms = self._clock.time() * 1000 - book.timestamp_ms
        if age_ms > self.stale_book_ms:
            raise GatewayRefusal("stale_book", f"{intent.symbol} book is {age_ms:.0f} ms old")
        ref = book.best_ask if intent.side is Side.BUY else book.best_bid
        off_bps = (intent.price / ref - 1.0) * 1e4
        if (intent.side is Side.BUY and off_bps > self.collar_bps) or (
            intent.side is Side.SELL and -off_bps > self.collar_bps
        ):
            raise GatewayRefusal(
                "price_collar", f"{intent.symbol} {off_bps:+.1f} bps from the book > {self.collar_bps}"
            )
        now = self._clock.monotonic()
        while self._sent and now - self._sent[0] > 1.0:
            self._sent.popleft()
        if len(self._sent) >= self.max_orders_per_second and intent.purpose.adds_risk:
            raise GatewayRefusal("throttle", f"{len(self._sent)} orders in the last second")

    async def prepare(
        self, intent: OrderIntent, snap: MarketSnapshot, exposure_usd: float
    ) -> Prepared:
        """Run every check and the venue's rounding; raise GatewayRefusal on the first failure."""
        try:
            self.check(intent, snap, exposure_usd)
            amount, price, _ = self._ex[intent.venue].rules(intent.symbol).prepare(
                intent.side, OrderType.LIMIT, intent.amount, intent.price, None, intent.price
            )
        except GatewayRefusal as refusal:
            await self._refused(intent, refusal)
            raise
        except RuleViolation as exc:
            rule_refusal = GatewayRefusal("venue_rules", str(exc))
            await self._refused(intent, rule_refusal)
            raise rule_refusal from None
        cid = self.next_client_id()
        request = OrderRequest(intent.symbol, intent.side, OrderType.LIMIT, amount, cid, price)
        return Prepared(intent, request)

    async def journal(self, prepared: list[Prepared]) -> None:
        """Commit the intents, together, before any of them is sent (R-S6)."""
        now = self._clock.time()
        await self._journal.record_intents([
            {"client_order_id": p.request.client_order_id, "run_id": self.run_id,
             "venue": str(p.intent.venue), "symbol": p.request.symbol,
             "side": str(p.request.side), "type": "limit", "amount": p.request.amount,
             "price": p.request.price, "cost": None, "purpose": str(p.intent.purpose),
             "position_id": p.intent.position_id, "created_at": now}
            for p in prepared])

    def count_sends(self, n: int) -> None:
        """Count n orders against the per-second throttle now, at the decision, for
        sends that go out later from a task of their own (`send(counted=True)`)."""
        now = self._clock.monotonic()
        self._sent.extend([now] * n)

    def still_allowed(self, p: Prepared) -> GatewayRefusal | None:
        """The trading state checked again just before a send that left the tick:
        a kill or pause that landed since the decision stops what it no longer allows."""
        state = self._state.state
        if state is TradingState.HALTED and p.intent.purpose is not Purpose.FLATTEN:
            return GatewayRefusal("trading_state", f"HALTED ({self._state.reason}) before the send")
        if state is TradingState.REDUCING and p.intent.purpose.adds_risk:
            return GatewayRefusal("trading_state", f"REDUCING ({self._state.reason}) before the send")
        return None

    async def withdraw(self, p: Prepared, refusal: GatewayRefusal) -> None:
        """A journaled intent that will not be sent: REJECTED, counted as a refusal."""
        await self._refused(p.intent, refusal)
        await self._record(self._journal.update_intent, client_order_id=p.request.client_order_id,
                           state=IntentState.REJECTED, reason=str(refusal),
                           updated_at=self._clock.time())

    async def send(self, p: Prepared, *, counted: bool = False) -> Order:
        """Send a journaled intent. Raises OrderRejected or SendUnknown."""
        cid = p.request.client_order_id
        if self.fence is not None and not await self._fence_ok():
            # Another instance may hold the account now (R-S5): nothing more goes out.
            self._state.set(TradingState.HALTED, "engine lock lost (fencing token)",
                            self._clock.time())
            await self._journal.update_intent(cid, IntentState.REJECTED, reason="fencing token lost",
                                              updated_at=self._clock.time())
            raise OrderRejected(f"{cid}: refused, the engine lock's fencing token is stale")
        if not counted:
            self._sent.append(self._clock.monotonic())
        self.crash.hit("before_send")
        try:
            order = await self._ex[p.intent.venue].create_order(p.request)
        except (OrderRejected, RateLimited) as exc:
            # A 429/418 is the venue refusing the request before it runs: the order does
            # not exist, so it is rejected, never UNKNOWN (which would be looked up).
            await self._record(self._journal.update_intent, client_order_id=cid,
                               state=IntentState.REJECTED, reason=str(exc),
                               updated_at=self._clock.time())
            raise
        except (VenueUnavailable, ExchangeError, OSError) as exc:
            # Durable at once: an UNKNOWN must survive a crash to be resolved by id.
            await self._journal.update_intent(cid, IntentState.UNKNOWN, reason=str(exc),
                                              updated_at=self._clock.time())
            raise SendUnknown(f"{cid}: {exc}") from exc
        self.crash.hit("after_send")
        await self._record(self._journal.update_intent, client_order_id=cid, state=IntentState.OPEN,
                    exchange_order_id=order.id, updated_at=self._clock.time())
        return order

    async def _fence_ok(self) -> bool:
        assert self.fence is not None
        try:
            return bool(await self.fence())
        except Exception:  # noqa: BLE001 - fail closed: an unreadable fence is a lost lock
            return False

    async def submit(self, intent: OrderIntent, snap: MarketSnapshot, exposure_usd: float) -> Order:
        """Check, journal, send one order. Raises GatewayRefusal, OrderRejected or SendUnknown."""
        prepared = await self.prepare(intent, snap, exposure_usd)
        await self.journal([prepared])
        return await self.send(prepared)

    async def _record(self, write: Any, **kwargs: Any) -> None:
        """Post-send records: write-behind when the engine has one, else at once."""
        if self._write_behind is not None:
            self._write_behind.later(write, **kwargs)
        else:
            await write(**kwargs)

    async def _refused(self, intent: OrderIntent, refusal: GatewayRefusal) -> None:
        self.refusals[refusal.check] = self.refusals.get(refusal.check, 0) + 1
        await self._record(self._journal.record_event, ts=self._clock.time(), run_id=self.run_id,
                    kind=EventKind.ORDER_REFUSED, payload={
                        "check": refusal.check, "reason": refusal.reason,
                        "symbol": intent.symbol, "side": str(intent.side),
                        "purpose": str(intent.purpose)})
