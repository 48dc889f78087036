"""The trading engine: one tick per market snapshot.

A tick takes working orders' newest status (read by OrderWatch, off the tick
for live venues) and records fills, updates each pair's signal,
manages open positions and takes new entries through the gateway. Loop latency
is the wall time of that work, order placement included. The engine never
sleeps inside a tick; pacing comes from the market data task.
"""
from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loguru import logger

from core.clock import Clock
from core.domain.engine_stats import EngineStats
from core.domain.ledger import Ledger
from core.domain.models import (
    QUOTE,
    Direction,
    ExitReason,
    MarketSnapshot,
    Order,
    Side,
    Venue,
    pair_symbols,
)
from core.domain.premium import premiums
from core.domain.trade_events import TradeEvent, TradeEventKind
from core.errors import (
    ExchangeError,
    GatewayRefusal,
    OrderNotFound,
    OrderRejected,
    RateLimited,
    SendUnknown,
)
from core.journal.write_behind import WriteBehind
from core.monitoring.perf import LatencyStats, ResourceSampler
from core.ports import JournalStore, MarketData
from core.trading.gateway import Gateway, OrderIntent, Prepared, Purpose, TradingVenue
from core.trading.order_watch import OrderWatch
from core.trading.slots import Slot, SlotState, WorkingOrder
from core.trading.state import TradingStateBox
from core.trading.strategy import Signal, Strategy

VENUES = (Venue.UPBIT, Venue.BINANCE)
UNKNOWN_GIVE_UP_S = 10.0  # an order not visible by client id after this never arrived
# An exit whose unfilled rest is under the venue's minimum order cannot be re-priced: a
# cancel would strand that rest as dust no new order may carry. It is left working for
# this many re-price periods (it fills when the book comes back); only then cancelled.
DUST_REST_PATIENCE = 3


@dataclass(slots=True)
class Dispatch:
    """One decision's legs, committed and sent by a task off the tick (live)."""
    slot: Slot
    prepared: list[Prepared]
    purpose: Purpose
    mono: float
    snap: MarketSnapshot | None  # the books the legs were priced on
    results: list[Order | BaseException] | None = None  # set when the acks are in


@dataclass(slots=True, frozen=True)
class EngineConfig:
    run_id: str
    universe: list[str]
    notional_usd: float  # per leg order
    max_concurrent: int
    order_timeout_s: float
    entry_cooldown_s: float
    exit_reprice_s: float = 1.0
    limit_slack_bps: float = 5.0  # how far past the touched level a marketable limit may go


class Engine:
    def __init__(
        self,
        cfg: EngineConfig,
        market: MarketData,
        exchanges: dict[Venue, TradingVenue],
        gateway: Gateway,
        store: JournalStore,
        state: TradingStateBox,
        clock: Clock,
        strategy: Strategy,
        journal: WriteBehind,
        orders: OrderWatch | None = None,
    ) -> None:
        self.cfg = cfg
        self.journal = journal
        self.market = market
        self.ex = exchanges
        self.gateway = gateway
        self.store = store
        self.state = state
        self.clock = clock
        self.strategy = strategy
        self.slots = {b: Slot(b) for b in cfg.universe}
        # Paper venues by default (read inline); a live run passes one that reads
        # in the background so the tick never waits for a status.
        self.orders = orders or OrderWatch(exchanges, self.working_orders, background=False)
        self.ledger = Ledger()
        self.latency = LatencyStats()
        # The venue's event time of the newest book an entry priced on -> its legs
        # handed to the venues (after the intents' commit), ms.
        self.book_to_send = LatencyStats()
        # Live: a decision handed to its send task -> every leg's ack in (the intents'
        # commit, the sends and the acks: what the tick no longer waits for), ms.
        self.send_task = LatencyStats()
        self.resources = ResourceSampler()
        self.exit_reasons: Counter[str] = Counter()
        self.entries = 0
        self.exits = 0
        self.round_trips = 0
        self.wins = 0
        self.failed_fills = 0
        self.errors = 0
        self.consecutive_errors = 0
        self.first_entry_mono: float | None = None
        self.first_exit_mono: float | None = None
        self.started_mono = clock.monotonic()
        self.heartbeat_mono = self.started_mono
        # Real monotonic time, for the watchdog thread: a stuck loop must show
        # even when the injected clock is a manual one.
        self.heartbeat_real = time.monotonic()
        self.last_entry_mono: float | None = None
        self.last_exit_mono: float | None = None
        self.worst_trade_pnl = 0.0
        self.exchange_errors = 0
        self.rate_limit_hits = 0
        self.rate_limit_wait_s = 0.0
        self.exchange_errors_by_venue: dict[str, int] = {}
        self.venue_paused_until: dict[str, float] = {}
        self.rate_limit_hits_by_venue: dict[str, int] = {}
        self.rate_limit_wait_s_by_venue: dict[str, float] = {}
        self.accept_entries = True
        self.pnl_usd = 0.0  # strategy PnL (the guards, the gates and drawdown use it)
        self.inventory_pnl_usd = 0.0
        # Leg remainders a position ended with because no venue takes an order that
        # small: named in the KPI and the reconciliation, never dropped silently.
        self.dust: list[dict[str, Any]] = []
        self.last_snapshot: MarketSnapshot | None = None
        self.last_signals: dict[str, Signal] = {}  # the newest tick's, for reports
        self._marks: dict[str, float] = {}  # Binance mid, USDT
        self._upbit_marks: dict[str, float] = {}  # Upbit mid / FX, USD
        self._fx = 0.0
        self._pos_ids = 0
        self._last_resource_sample = time.perf_counter()
        self._failed_sends = 0  # send tasks whose error this tick took
        # Per-trade messages (core/monitoring/trade_notices.py): called from the tick,
        # so it must only append and return.
        self.on_trade: Callable[[TradeEvent], None] | None = None
        # Live sends in flight (commit + send + acks in their own task) and the ones
        # whose acks the next tick takes.
        self._dispatches: dict[asyncio.Task[None], Dispatch] = {}
        self._acked: list[Dispatch] = []

    # --- the tick ---------------------------------------------------------------
    async def tick(self, snap: MarketSnapshot) -> None:
        t0 = time.perf_counter()
        self.journal.tick_started()  # the write-behind waits: ticks own the database
        try:
            await self._tick(snap, t0)
        finally:
            self.journal.tick_ended()

    async def _tick(self, snap: MarketSnapshot, t0: float) -> None:
        self.last_snapshot = snap
        now = self.clock.time()
        mono = self.clock.monotonic()
        fx = snap.fx.mid
        self._failed_sends = 0
        try:
            await self._poll_working(snap, mono)
            signals: dict[str, Signal] = {}
            for base in self.slots:
                ub, bb = snap.upbit.get(base), snap.binance.get(base)
                if ub is None or bb is None:
                    continue
                self._marks[base] = bb.mid
                self._upbit_marks[base] = ub.mid / fx
                signals[base] = self.strategy.observe(base, ub, bb, fx, now)
            self.last_signals = signals
            for base, slot in self.slots.items():
                sig = signals.get(base)
                if sig is None:
                    continue
                if slot.state is SlotState.OPEN:
                    await self._maybe_exit(slot, sig, snap, mono)
            if self.accept_entries and self.state.allows_entries:
                await self._entries(signals, snap, mono, now)
            if not self._failed_sends:  # a send task that failed counts like a failed tick
                self.consecutive_errors = 0
        except Exception:  # noqa: BLE001 - counted for the guards, never silent
            self.errors += 1
            self.consecutive_errors += 1
            logger.exception("engine tick failed")
        self._fx = fx
        marks = self.venue_marks()
        self.pnl_usd = self.ledger.pnl_usd(fx, marks)
        self.inventory_pnl_usd = self.ledger.inventory_pnl_usd(fx, marks)
        self.ledger.observe(self.pnl_usd)
        self.latency.record((time.perf_counter() - t0) * 1000.0)
        self.heartbeat_mono = self.clock.monotonic()
        self.heartbeat_real = time.monotonic()
        if t0 - self._last_resource_sample >= 1.0:
            self._last_resource_sample = t0
            self.resources.sample()

    def beat(self) -> None:
        """Heartbeat without a tick: the loop is alive but has no new books."""
        self.heartbeat_mono = self.clock.monotonic()
        self.heartbeat_real = time.monotonic()

    # --- orders and fills ---------------------------------------------------------
    def working_orders(self) -> list[tuple[str, WorkingOrder]]:
        return [(key, wo) for slot in self.slots.values() for key, wo in slot.working.items()]

    async def _poll_working(self, snap: MarketSnapshot, mono: float) -> None:
        """Take each working order's newest status (read off the tick for live
        venues), send the cancels that are due all at once, record fills and
        settle the slots whose orders are all done."""
        touched: list[Slot] = self._take_acks()
        if not self.orders.background:
            await self.orders.refresh()
        updates: list[tuple[Slot, str, WorkingOrder, Order]] = []
        cancels: list[tuple[Slot, str, WorkingOrder, Order]] = []
        cancel_results: list[tuple[Slot, str, WorkingOrder, Order | BaseException]] = []
        for slot in self.slots.values():
            if not slot.working:
                continue
            touched.append(slot)
            for oid, wo in list(slot.working.items()):
                cancelled = self.orders.take_cancel(oid, wo)
                if cancelled is not None:
                    cancel_results.append((slot, oid, wo, cancelled))
                answer = self.orders.take(oid, wo)
                if answer is None:
                    continue  # nothing new yet
                if not wo.order_id:
                    self._resolve_unknown(slot, oid, wo, answer, mono)
                    continue
                if isinstance(answer, ExchangeError):
                    self._venue_error(answer, wo.venue)  # an outage is counted, not an engine failure
                    continue
                if isinstance(answer, BaseException):
                    raise answer
                if len(answer.trades) < wo.trades_seen:
                    continue  # read before a fill we already hold: stale
                # Exits are re-priced quickly (cancel, then a fresh order at the new
                # book); entries simply expire.
                timeout = (self.cfg.order_timeout_s if wo.purpose is Purpose.ENTRY
                           else min(self.cfg.exit_reprice_s, self.cfg.order_timeout_s))
                if (wo.purpose is not Purpose.ENTRY and answer.filled > 0
                        and self._tradable(slot.base, wo.venue,
                                           max(wo.amount - answer.filled, 0.0), snap) == 0.0):
                    timeout *= DUST_REST_PATIENCE
                if (
                    not answer.status.done
                    and not wo.cancel_sent
                    and mono - wo.placed_mono >= timeout
                ):
                    wo.cancel_sent = True
                    if self.orders.background:
                        # Live: sent now, its answer taken by a later tick.
                        self.orders.cancel(oid, wo)
                        updates.append((slot, oid, wo, answer))
                    else:
                        cancels.append((slot, oid, wo, answer))
                else:
                    updates.append((slot, oid, wo, answer))
        if cancels:
            # Cancels are sends: all of them at once, never one venue after another.
            results = await asyncio.gather(
                *(self.ex[wo.venue].cancel_order(oid, wo.symbol) for _, oid, wo, _ in cancels),
                return_exceptions=True)
            cancel_results += [(slot, oid, wo, result) for (slot, oid, wo, _), result
                               in zip(cancels, results, strict=True)]
        for slot, oid, wo, result in cancel_results:
            if isinstance(result, ExchangeError):
                self._venue_error(result, wo.venue)
                logger.warning("cancel of {} failed: {}", wo.client_order_id, result)
                wo.cancel_sent = False
            elif isinstance(result, BaseException):
                raise result
            else:
                updates.append((slot, oid, wo, result))
        for slot, oid, wo, order in updates:
            if slot.working.get(oid) is not wo or len(order.trades) < wo.trades_seen:
                continue  # done already this tick, or a read older than what we hold
            await self._absorb(slot, wo, order, snap)
            if order.status.done:
                slot.working.pop(oid, None)
                if order.filled + 1e-12 < wo.amount and wo.purpose in (Purpose.ENTRY, Purpose.EXIT):
                    self.failed_fills += 1
                    self._tell(TradeEventKind.FAILED_LEG, slot, detail=(
                        f"{wo.purpose.name.lower()} leg on {wo.venue} filled "
                        f"{order.filled:g} of {wo.amount:g} ({order.status})"))
        for slot in {id(s): s for s in touched}.values():
            if not slot.working and not slot.sending and slot.state is not SlotState.FLAT:
                await self._settle(slot, snap, mono)

    async def record_last_fills(self) -> int:
        """At the run's end: every order still working is read once more and its
        fills recorded, so the journal holds what the venues did even when the run
        stopped before the next tick took it (a close that timed out). Returns how
        many orders could not be read."""
        snap = self.last_snapshot
        items = [(slot, key, wo) for slot in self.slots.values()
                 for key, wo in slot.working.items() if wo.order_id]
        if snap is None or not items:
            return 0
        answers = await asyncio.gather(
            *(self.ex[wo.venue].fetch_order(wo.order_id, wo.symbol) for _, _, wo in items),
            return_exceptions=True)
        unread = 0
        for (slot, key, wo), answer in zip(items, answers, strict=True):
            if isinstance(answer, BaseException):
                unread += 1
                logger.warning("last read of {} failed: {}", wo.client_order_id, answer)
                continue
            if len(answer.trades) < wo.trades_seen:
                continue
            await self._absorb(slot, wo, answer, snap)
            if answer.status.done:
                slot.working.pop(key, None)
        return unread

    async def _absorb(self, slot: Slot, wo: WorkingOrder, order: Order, snap: MarketSnapshot) -> None:
        """Record trades not seen before: journal, ledger and the slot's legs."""
        fx = snap.fx.mid
        venue = wo.venue
        quote = QUOTE[venue]
        for trade in order.trades[wo.trades_seen:]:
            self.journal.later(
                self.store.record_fill,
                venue=str(venue), trade_id=trade.id, client_order_id=trade.client_order_id,
                run_id=self.cfg.run_id, symbol=trade.symbol, side=str(trade.side),
                price=trade.price, amount=trade.amount, cost=trade.cost, fee=trade.fee_cost,
                fee_currency=trade.fee_currency, fx=fx, position_id=slot.position_id,
                ts=trade.timestamp_ms / 1000.0,
            )
            to_usd = 1.0 / fx if quote == "KRW" else 1.0
            # The fee in the asset the venue charged, valued at the fill (R-M5).
            fee_usd = trade.fee_in_quote * to_usd
            self.ledger.apply_fill(
                venue, slot.base, quote, trade.side, trade.amount, trade.cost, trade.fee_cost, fx,
                fee_asset=trade.fee_currency, fee_usd=fee_usd,
            )
            sign = 1.0 if trade.side is Side.SELL else -1.0
            in_quote = trade.fee_currency in ("", quote)
            quote_fee = trade.fee_cost if in_quote else 0.0
            if quote == "KRW":
                slot.krw_flow += sign * trade.cost - quote_fee
            else:
                slot.usdt_flow += sign * trade.cost - quote_fee
            if not in_quote:
                slot.fixed_fees_usd += fee_usd
            slot.fees_usd += fee_usd
            slot.base_flow += -sign * trade.amount
            if wo.purpose is Purpose.ENTRY:
                slot.open_qty[venue] += trade.amount
            else:
                slot.open_qty[venue] = max(slot.open_qty[venue] - trade.amount, 0.0)
        if len(order.trades) > wo.trades_seen:
            self.gateway.crash.hit("after_fill")
        wo.trades_seen = len(order.trades)
        wo.filled = order.filled
        if order.trades or order.status.done:
            state = {"closed": "FILLED", "open": "OPEN"}.get(str(order.status), "CANCELED")
            self.journal.later(
                self.store.update_intent,
                client_order_id=wo.client_order_id, state=state, filled=order.filled,
                updated_at=self.clock.time(),
            )

    async def _settle(self, slot: Slot, snap: MarketSnapshot, mono: float) -> None:
        """All of the slot's orders are done: decide what the slot now is.

        A leg remainder the venue will not accept (under its step or minimum
        order) is dust: it stays in the inventory and the ledger, and does not
        keep a position open forever.
        """
        qu, qb = slot.open_qty[Venue.UPBIT], slot.open_qty[Venue.BINANCE]
        tu = self._tradable(slot.base, Venue.UPBIT, qu, snap)
        tb = self._tradable(slot.base, Venue.BINANCE, qb, snap)
        if slot.state is SlotState.ENTERING:
            if tu == 0.0 and tb == 0.0:
                # Only dust left on the legs (if anything): named, never dropped.
                self._name_dust(slot, snap)
                if slot.fees_usd > 0.0:
                    # Something filled and was unwound: a closed entry like any other,
                    # counted in the round trips and the win rate (its fees are a loss).
                    slot.exit_reason = slot.exit_reason or ExitReason.UNWOUND
                    self.entries += 1  # it entered (one leg), and it is closed
                    self.last_entry_mono = mono
                    if self.first_entry_mono is None:
                        self.first_entry_mono = mono
                    await self._close_round_trip(slot, mono, snap.fx.mid)
                    return
                # Nothing filled: no position.
                await self._save_position(slot, "flat", pnl=self._slot_pnl(slot, snap.fx.mid))
                slot.reset()
                return
            venue = Venue.UPBIT if qu > qb else Venue.BINANCE
            excess = self._tradable(slot.base, venue, abs(qu - qb), snap)
            if excess > 0.0:
                # Leg risk: one venue filled more. Unwind the excess there so the
                # position is two equal legs again (R-M4).
                side = slot.direction.side_on(venue).opposite
                if await self._place(slot, [(venue, side, excess)], Purpose.UNWIND, snap, mono,
                                     all_or_none=True):
                    self._tell(TradeEventKind.UNWIND, slot, qty=excess, detail=(
                        f"{venue} filled {excess:g} more than the other leg: {side} it back"))
                    return
            slot.state = SlotState.OPEN
            self.entries += 1
            self.last_entry_mono = mono
            if self.first_entry_mono is None:
                self.first_entry_mono = mono
            await self._save_position(slot, "open")
            self._tell(TradeEventKind.ENTRY, slot, qty=min(qu, qb),
                       premium_bps=slot.entry_premium_bps,
                       expected_edge_bps=slot.expected_edge_bps)
        elif slot.state is SlotState.EXITING:
            if tu == 0.0 and tb == 0.0:
                self._name_dust(slot, snap)
                await self._close_round_trip(slot, mono, snap.fx.mid)
            else:
                slot.state = SlotState.OPEN  # partly exited: try again next tick

    def _name_dust(self, slot: Slot, snap: MarketSnapshot) -> None:
        """Record each leg remainder the position ends with (too small for any order
        on its venue), valued at the mark, so the run's report names it."""
        for venue, qty in slot.open_qty.items():
            if qty <= 1e-12:
                continue
            books = snap.upbit if venue is Venue.UPBIT else snap.binance
            book = books.get(slot.base)
            price = book.mid if book is not None else 0.0
            to_usd = 1.0 / snap.fx.mid if venue is Venue.UPBIT else 1.0
            item = {"position_id": slot.position_id, "base": slot.base, "venue": str(venue),
                    "qty": qty, "usd": round(qty * price * to_usd, 6),
                    "side_to_flatten": str(slot.direction.side_on(venue).opposite),
                    "reason": "below the venue's minimum order"}
            self.dust.append(item)
            logger.warning("position {} ends with dust on {}: {:g} {} (${:.4f}), below the "
                           "venue's minimum order", slot.position_id, venue, qty, slot.base,
                           item["usd"])
            self._tell(TradeEventKind.FAILED_LEG, slot, qty=qty, detail=(
                f"{venue} leg left {qty:g} {slot.base} (${item['usd']:.2f}) as dust: "
                "below the venue's minimum order"))

    @staticmethod
    def _book_of(base: str, venue: Venue, snap: MarketSnapshot) -> Any:
        return (snap.upbit if venue is Venue.UPBIT else snap.binance)[base]

    def _tradable(self, base: str, venue: Venue, qty: float, snap: MarketSnapshot) -> float:
        """qty on the venue's step (tolerating float dust), or 0 below its minimum order."""
        market = self.ex[venue].market(pair_symbols(base)[venue])  # type: ignore[attr-defined]
        step = market.amount_step
        q = math.floor(qty / step + 1e-6) * step if step > 0 else qty
        books = snap.upbit if venue is Venue.UPBIT else snap.binance
        book = books.get(base)
        if q <= 0.0 or q < market.min_amount or book is None:
            return 0.0
        if q * book.mid < market.min_cost * 1.01:
            return 0.0
        return q

    def _slot_pnl(self, slot: Slot, fx: float) -> float:
        # What is left in base after both legs closed is dust; it is valued at the
        # Binance mid (the legs' base quantities are equal by construction).
        mark = self._marks.get(slot.base, 0.0)
        return (slot.usdt_flow + slot.krw_flow / fx + slot.base_flow * mark
                - slot.fixed_fees_usd)

    async def _close_round_trip(self, slot: Slot, mono: float, fx: float) -> None:
        pnl = self._slot_pnl(slot, fx)
        reason = slot.exit_reason or ExitReason.SHUTDOWN
        self.round_trips += 1
        self.exits += 1
        self.wins += 1 if pnl > 0 else 0
        self.exit_reasons[str(reason)] += 1
        self.last_exit_mono = mono
        self.worst_trade_pnl = min(self.worst_trade_pnl, pnl)
        if self.first_exit_mono is None:
            self.first_exit_mono = mono
        await self._save_position(slot, "closed", pnl=pnl)
        if self.on_trade is not None:
            sig = self.strategy_premium(slot)
            self._tell(TradeEventKind.EXIT, slot, pnl_usd=pnl, fees_usd=slot.fees_usd,
                       held_s=mono - slot.opened_mono, detail=str(reason), premium_bps=sig,
                       exit_prices=True)
        slot.reset()
        slot.last_exit_mono = mono

    async def _save_position(self, slot: Slot, state: str, pnl: float | None = None) -> None:
        now = self.clock.time()
        self.journal.later(
            self.store.upsert_position,
            position_id=slot.position_id, run_id=self.cfg.run_id, base=slot.base,
            direction=str(slot.direction), qty=min(slot.open_qty.values()) if state != "closed" else 0.0,
            state=state, opened_at=slot.opened_at, entry_premium_bps=slot.entry_premium_bps,
            expected_edge_bps=slot.expected_edge_bps, break_even_bps=slot.break_even_bps,
            closed_at=now if state == "closed" else None,
            exit_reason=str(slot.exit_reason) if slot.exit_reason else None,
            pnl_usd=pnl, fees_usd=slot.fees_usd if pnl is not None else None,
        )

    # --- entries and exits ----------------------------------------------------------
    async def _entries(
        self, signals: dict[str, Signal], snap: MarketSnapshot, mono: float, now: float
    ) -> None:
        busy = sum(1 for s in self.slots.values() if s.state is not SlotState.FLAT)
        if busy >= self.cfg.max_concurrent:
            return
        for base, sig in signals.items():
            slot = self.slots[base]
            if slot.state is not SlotState.FLAT or mono - slot.last_exit_mono < self.cfg.entry_cooldown_s:
                continue
            ub, bb = snap.upbit[base], snap.binance[base]
            # Size on the dearer leg in USD (Upbit carries the premium) so both legs
            # stay inside the per-order cap.
            qty = self._entry_qty(base, max(bb.best_ask, ub.best_ask / snap.fx.mid))
            if qty <= 0:
                continue
            decision = self.strategy.entry(sig, ub, bb, qty)
            if decision is None:
                continue
            self._pos_ids += 1
            slot.position_id = f"{self.cfg.run_id}-p{self._pos_ids}"
            slot.direction = decision.direction
            slot.entry_premium_bps = decision.entry_premium_bps
            slot.expected_edge_bps = decision.expected_edge_bps
            slot.break_even_bps = decision.break_even_bps
            slot.opened_at, slot.opened_mono = now, mono
            slot.state = SlotState.ENTERING
            # Both legs or neither: a refused leg must not leave the other one naked.
            legs = [(v, decision.direction.side_on(v), qty) for v in VENUES]
            placed = await self._place(slot, legs, Purpose.ENTRY, snap, mono, all_or_none=True)
            if not placed and not slot.working:
                slot.reset()
                continue
            await self._save_position(slot, "entering")
            if not slot.working and not slot.sending:
                await self._settle(slot, snap, mono)
            busy += 1
            if busy >= self.cfg.max_concurrent:
                return

    async def _maybe_exit(self, slot: Slot, sig: Signal, snap: MarketSnapshot, mono: float) -> None:
        reason = slot.exit_reason or self.strategy.exit_reason(
            slot.direction, slot.entry_premium_bps, sig, mono - slot.opened_mono
        )
        if reason is not None:
            await self.start_exit(slot, reason, snap, mono)

    async def start_exit(
        self, slot: Slot, reason: ExitReason, snap: MarketSnapshot, mono: float,
        purpose: Purpose = Purpose.EXIT,
    ) -> None:
        slot.exit_reason = slot.exit_reason or reason
        slot.state = SlotState.EXITING
        legs = []
        for v in VENUES:
            qty = self._tradable(slot.base, v, slot.open_qty[v], snap)
            if qty > 0.0:
                legs.append((v, slot.direction.side_on(v).opposite, qty))
        if legs:
            await self._place(slot, legs, purpose, snap, mono, all_or_none=False)
        if not slot.working and not slot.sending:
            await self._settle(slot, snap, mono)

    async def _place(
        self, slot: Slot, legs: list[tuple[Venue, Side, float]], purpose: Purpose,
        snap: MarketSnapshot, mono: float, *, all_or_none: bool,
    ) -> bool:
        """Check every leg, journal the passing ones in one commit, then send them."""
        exposure = self.exposure_usd()
        prepared: list[Prepared] = []
        if any(self.venue_paused_until.get(str(v), 0.0) > time.monotonic() for v, _, _ in legs):
            # A venue asked us to wait (429 Retry-After): flattening waits too, because
            # a venue that is not obeyed bans the address (418), and then not even
            # cancels get through. The kill keeps flattening once the wait is over.
            return False
        for venue, side, qty in legs:
            book = (snap.upbit if venue is Venue.UPBIT else snap.binance)[slot.base]
            price = _marketable_limit(book.asks if side is Side.BUY else book.bids, qty, side,
                                      self.cfg.limit_slack_bps)
            to_usd = 1.0 / snap.fx.mid if venue is Venue.UPBIT else 1.0
            intent = OrderIntent(
                venue=venue, symbol=pair_symbols(slot.base)[venue], base=slot.base, side=side,
                amount=qty, price=price, purpose=purpose, position_id=slot.position_id,
                notional_usd=qty * price * to_usd,
            )
            try:
                prepared.append(await self.gateway.prepare(intent, snap, exposure))
            except GatewayRefusal as refusal:
                logger.debug("refused {} {}: {}", venue, slot.base, refusal)
                if all_or_none:
                    return False
                continue
            if purpose.adds_risk:
                exposure += intent.notional_usd
        if not prepared:
            return False
        if self.orders.background:
            # Live: the tick only decides. The intents' commit, both sends and their
            # acks run in a task of their own, in that order (the intent is durable
            # before its order leaves, R-S6); the slot stays "sending" until a later
            # tick takes the acks, so it is neither settled nor entered again.
            self.gateway.count_sends(len(prepared))
            slot.sending += 1
            job = Dispatch(slot, prepared, purpose, mono, snap)
            task = asyncio.create_task(self._dispatch(job), name=f"send-{slot.position_id}")
            self._dispatches[task] = job
            task.add_done_callback(self._dispatch_done)
            return True
        await self.gateway.journal(prepared)
        self._record_book_to_send(slot, prepared, purpose, snap)
        # Every leg goes out at once: the second leg must not wait for the first
        # venue's answer. A leg that fails leaves the other one working, and the
        # leg-risk path (_settle's unwind) evens the position once it fills.
        results = await asyncio.gather(*(self.gateway.send(p) for p in prepared),
                                       return_exceptions=True)
        return self._take_results(Dispatch(slot, prepared, purpose, mono, snap, list(results)))

    def _record_book_to_send(self, slot: Slot, prepared: list[Prepared], purpose: Purpose,
                             snap: MarketSnapshot | None) -> None:
        if purpose is Purpose.ENTRY and snap is not None:
            newest = max(self._book_of(slot.base, p.intent.venue, snap).timestamp_ms
                         for p in prepared)
            self.book_to_send.record(max(self.clock.time() * 1000 - newest, 0.0))

    async def _dispatch(self, job: Dispatch) -> None:
        """Commit the legs' intents (one fsync), then send every leg at once and wait
        for the acks; the tick takes the results (`_take_acks`)."""
        results: list[Order | BaseException]
        t0 = time.perf_counter()
        try:
            await self.gateway.journal(job.prepared)
        except Exception as exc:  # noqa: BLE001 - nothing was sent; the tick reports it
            results = [exc] * len(job.prepared)
        else:
            self._record_book_to_send(job.slot, job.prepared, job.purpose, job.snap)
            results = list(await asyncio.gather(
                *(self._send_if_allowed(p) for p in job.prepared), return_exceptions=True))
        job.results = results
        self.send_task.record((time.perf_counter() - t0) * 1000.0)
        self.orders.nudge()

    async def _send_if_allowed(self, p: Prepared) -> Order:
        refusal = self.gateway.still_allowed(p)
        if refusal is not None:
            await self.gateway.withdraw(p, refusal)
            raise refusal
        return await self.gateway.send(p, counted=True)

    def _dispatch_done(self, task: asyncio.Task[None]) -> None:
        job = self._dispatches.pop(task)
        if job.results is None:  # cancelled or failed outside the sends: nothing known
            exc = task.exception() if not task.cancelled() else None
            job.results = [exc or SendUnknown("send task ended without an answer")] \
                * len(job.prepared)
        self._acked.append(job)

    def _take_acks(self) -> list[Slot]:
        """The acks that came in since the last tick: each leg's order becomes a
        working order (or a failed leg). Returns the slots touched. An error a send
        got that fits no outcome (a failed commit: nothing went out) is counted for
        the guards like a failed tick, and the slot is still settled."""
        jobs, self._acked = self._acked, []
        for job in jobs:
            job.slot.sending -= 1
            try:
                self._take_results(job)
            except Exception as exc:  # noqa: BLE001 - counted for the guards, never silent
                self.errors += 1
                self.consecutive_errors += 1
                self._failed_sends += 1
                logger.error("send of {} failed: {!r}", job.slot.position_id, exc)
        return [job.slot for job in jobs]

    @property
    def sends_in_flight(self) -> int:
        return len(self._dispatches)

    async def drain_sends(self, timeout_s: float) -> None:
        """Wait for the sends in flight and take their acks (the run's end, so the
        last read of working orders sees every order that went out)."""
        if self._dispatches:
            await asyncio.wait(list(self._dispatches), timeout=timeout_s)
        self._take_acks()

    def _take_results(self, job: Dispatch) -> bool:
        """Record what each leg's send got; True when at least one order went out
        (or may have: an unknown outcome is tracked by client id)."""
        slot, purpose, mono = job.slot, job.purpose, job.mono
        assert job.results is not None
        placed = False
        unexpected: BaseException | None = None
        for p, result in zip(job.prepared, job.results, strict=True):
            if isinstance(result, GatewayRefusal):
                logger.info("not sent {} {}: {}", p.intent.venue, p.request.symbol, result)
                continue
            if isinstance(result, RateLimited):
                self._venue_error(result, p.intent.venue)
                logger.warning("rate limited {} {}: {}", p.intent.venue, p.request.symbol, result)
                continue
            if isinstance(result, OrderRejected):
                self.failed_fills += 1
                logger.warning("rejected {} {}: {}", p.intent.venue, p.request.symbol, result)
                self._tell(TradeEventKind.FAILED_LEG, slot, detail=(
                    f"{purpose.name.lower()} leg on {p.intent.venue} rejected: {result}"))
                continue
            if isinstance(result, SendUnknown):
                self._venue_error(result.__cause__ or result, p.intent.venue)
                logger.error("order outcome unknown, looking it up by client id: {}", result)
                # Never resent: tracked under its client id until the venue says
                # whether it exists (a 5xx can mean it executed).
                cid = p.request.client_order_id
                slot.working[f"?{cid}"] = WorkingOrder(
                    p.intent.venue, "", cid, p.request.symbol, purpose, mono, p.intent.amount)
                placed = True
                continue
            if isinstance(result, BaseException):
                # Recorded after the other legs are: a leg that did go out stays tracked.
                unexpected = unexpected or result
                continue
            order = result
            slot.working[order.id] = WorkingOrder(
                p.intent.venue, order.id, order.client_order_id, order.symbol, purpose, mono,
                order.amount or p.intent.amount,
            )
            placed = True
        if placed:
            self.orders.nudge()
        if unexpected is not None:
            raise unexpected
        return placed

    def _resolve_unknown(self, slot: Slot, key: str, wo: WorkingOrder, answer: Order |
                         BaseException, mono: float) -> None:
        """An order whose send had no answer: adopt it once the venue shows it by
        client id, or give it up once the venue has had time to show it."""
        if isinstance(answer, OrderNotFound):
            if mono - wo.placed_mono >= UNKNOWN_GIVE_UP_S:
                del slot.working[key]
                self.journal.later(
                    self.store.update_intent,
                    client_order_id=wo.client_order_id, state="REJECTED",
                    reason="never reached the venue", updated_at=self.clock.time())
            return  # the caller settles the slot once nothing works any more
        if isinstance(answer, ExchangeError):
            self._venue_error(answer, wo.venue)
            return
        if isinstance(answer, BaseException):
            raise answer
        order = answer
        del slot.working[key]
        wo.order_id = order.id
        slot.working[order.id] = wo  # adopted: polled like any other from the next tick
        self.orders.nudge()
        self.journal.later(
            self.store.update_intent,
            client_order_id=wo.client_order_id, state="OPEN", exchange_order_id=order.id,
            reason="found by client id after an unknown send", updated_at=self.clock.time())

    def _venue_error(self, exc: BaseException, venue: Venue) -> None:
        v = str(venue)
        self.exchange_errors += 1
        self.exchange_errors_by_venue[v] = self.exchange_errors_by_venue.get(v, 0) + 1
        if isinstance(exc, RateLimited):
            # Wait as told: no order to this venue until Retry-After has passed.
            self.venue_paused_until[v] = time.monotonic() + exc.retry_after_s
            self.rate_limit_hits += 1
            self.rate_limit_hits_by_venue[v] = self.rate_limit_hits_by_venue.get(v, 0) + 1
            self.rate_limit_wait_s = max(self.rate_limit_wait_s, exc.retry_after_s)
            self.rate_limit_wait_s_by_venue[v] = max(
                self.rate_limit_wait_s_by_venue.get(v, 0.0), exc.retry_after_s)

    # --- figures -------------------------------------------------------------------
    def _entry_qty(self, base: str, price_usd: float) -> float:
        step = self._step(base)
        # A little under the cap so the marketable limit price stays inside it.
        raw = self.cfg.notional_usd * 0.97 / price_usd
        return int(raw / step) * step

    def _step(self, base: str) -> float:
        market = self.ex[Venue.BINANCE].market(f"{base}/USDT")  # type: ignore[attr-defined]
        return market.amount_step

    def exposure_usd(self) -> float:
        total = 0.0
        for slot in self.slots.values():
            mark = self._marks.get(slot.base, 0.0)
            total += sum(slot.open_qty.values()) * mark
            for wo in slot.working.values():
                if wo.purpose is Purpose.ENTRY:
                    total += max(wo.amount - wo.filled, 0.0) * mark
        for job in self._dispatches.values():  # decided, not acked yet
            if job.purpose is Purpose.ENTRY:
                total += sum(p.intent.amount for p in job.prepared) * self._marks.get(
                    job.slot.base, 0.0)
        return total

    def _tell(self, kind: TradeEventKind, slot: Slot, *, qty: float = 0.0,
              exit_prices: bool = False, **facts: Any) -> None:
        """A trade event for the operator, when someone listens; never raises."""
        if self.on_trade is None:
            return
        try:
            self.on_trade(TradeEvent(
                kind=kind, base=slot.base, position_id=slot.position_id,
                direction=str(slot.direction), at=self.clock.time(), qty=qty,
                prices=self._fill_prices(slot, exit_prices), **facts))
        except Exception:  # noqa: BLE001 - a message must never stop trading
            logger.exception("trade event for {} not delivered", slot.base)

    def _fill_prices(self, slot: Slot, exiting: bool) -> dict[str, float]:
        """Effective prices of the position's fills (fees included): the entry legs'
        while open, the last snapshot's mids at the exit."""
        if exiting:
            snap = self.last_snapshot
            out: dict[str, float] = {}
            for venue, books in ((Venue.UPBIT, snap.upbit if snap else {}),
                                 (Venue.BINANCE, snap.binance if snap else {})):
                book = books.get(slot.base)
                if book is not None and book.bids and book.asks:
                    out[str(venue)] = book.mid
            return out
        prices = {}
        for venue, flow in ((Venue.UPBIT, slot.krw_flow), (Venue.BINANCE, slot.usdt_flow)):
            q = slot.open_qty[venue]
            if q > 0:
                prices[str(venue)] = abs(flow) / q
        return prices

    def strategy_premium(self, slot: Slot) -> float | None:
        """The premium an exit of this slot trades at on the last snapshot."""
        marked = self._marked(slot) if slot.has_position else None
        if marked and marked["current_premium_bps"] is not None:
            return marked["current_premium_bps"]
        snap = self.last_snapshot
        ub = snap.upbit.get(slot.base) if snap else None
        bb = snap.binance.get(slot.base) if snap else None
        if snap is None or ub is None or bb is None or not (
                ub.bids and ub.asks and bb.bids and bb.asks):
            return None
        return round(premiums(ub, bb, snap.fx.mid).executable(slot.direction, entering=False), 2)

    def open_positions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for slot in self.slots.values():
            if slot.has_position or slot.working:
                out.append({
                    "position_id": slot.position_id, "base": slot.base, "state": str(slot.state),
                    "direction": str(slot.direction),
                    "open_qty": {str(v): q for v, q in slot.open_qty.items()},
                    "working_orders": [w.client_order_id for w in slot.working.values()],
                    "opened_at": slot.opened_at or None,
                    "entry_premium_bps": round(slot.entry_premium_bps, 2),
                    **self._marked(slot),
                })
        return out

    def _marked(self, slot: Slot) -> dict[str, float | None]:
        """The premium an exit would trade at now and the strategy's unrealised PnL at
        it (bps on the Binance leg's notional), from the last snapshot; None before one."""
        snap = self.last_snapshot
        ub = snap.upbit.get(slot.base) if snap else None
        bb = snap.binance.get(slot.base) if snap else None
        if snap is None or ub is None or bb is None or not slot.has_position or not (
                ub.bids and ub.asks and bb.bids and bb.asks):
            return {"current_premium_bps": None, "pnl_usd": None}
        prem = premiums(ub, bb, snap.fx.mid)
        bps = self.strategy.unrealized_bps(slot.direction, slot.entry_premium_bps, prem)
        notional = slot.open_qty[Venue.BINANCE] * bb.mid
        return {"current_premium_bps": round(prem.executable(slot.direction, entering=False), 2),
                "pnl_usd": round(bps / 1e4 * notional, 4)}

    @property
    def win_rate(self) -> float:
        return self.wins / self.round_trips if self.round_trips else 0.0

    def stats(self) -> EngineStats:
        """One consistent snapshot for the readers outside the loop (watchdog, metrics,
        status, KPI); cheap enough to take every sample."""
        return EngineStats(
            started_mono=self.started_mono, heartbeat_real=self.heartbeat_real,
            entries=self.entries, exits=self.exits, round_trips=self.round_trips,
            wins=self.wins, failed_fills=self.failed_fills, errors=self.errors,
            consecutive_errors=self.consecutive_errors, exchange_errors=self.exchange_errors,
            rate_limit_hits=self.rate_limit_hits, rate_limit_wait_s=self.rate_limit_wait_s,
            exchange_errors_by_venue=dict(self.exchange_errors_by_venue),
            rate_limit_hits_by_venue=dict(self.rate_limit_hits_by_venue),
            rate_limit_wait_s_by_venue=dict(self.rate_limit_wait_s_by_venue),
            pnl_usd=self.pnl_usd, inventory_pnl_usd=self.inventory_pnl_usd,
            worst_trade_pnl=self.worst_trade_pnl,
            open_positions=sum(1 for s in self.slots.values()
                               if (s.has_position or s.working)
                               and s.state is not SlotState.ENTERING),
            first_entry_mono=self.first_entry_mono, first_exit_mono=self.first_exit_mono,
            last_entry_mono=self.last_entry_mono, last_exit_mono=self.last_exit_mono,
            last_latency_ms=self.latency.last_ms,
        )

    @property
    def busy(self) -> bool:
        return any(s.state is not SlotState.FLAT for s in self.slots.values())

    def marks(self) -> dict[str, float]:
        return dict(self._marks)

    def upbit_marks(self) -> dict[str, float]:
        return dict(self._upbit_marks)

    def venue_marks(self) -> dict[Venue, dict[str, float]]:
        """Each venue's coin at its own price in USD (Upbit's converted at the FX)."""
        return {Venue.UPBIT: self._upbit_marks, Venue.BINANCE: self._marks}

    def fund(self, holdings: dict[tuple[Venue, str], float], snap: MarketSnapshot) -> None:
        """The pre-funded holdings and the start's marks, for inventory revaluation."""
        fx = snap.fx.mid
        upbit = {b: ub.mid / fx for b, ub in snap.upbit.items()}
        binance = {b: bb.mid for b, bb in snap.binance.items()}
        for b in upbit.keys() & binance.keys():
            self._upbit_marks.setdefault(b, upbit[b])
            self._marks.setdefault(b, binance[b])
        self.ledger.fund(holdings, fx, {Venue.UPBIT: upbit, Venue.BINANCE: binance})
        self.inventory_pnl_usd = 0.0


def _marketable_limit(levels: list[tuple[float, float]], qty: float, side: Side, slack_bps: float) -> float:
    """The price of the deepest level qty reaches, plus a little slack."""
    left = qty
    price = levels[0][0]
    for level_price, size in levels:
        price = level_price
        left -= size
        if left <= 0:
            break
    k = 1.0 + slack_bps / 1e4 if side is Side.BUY else 1.0 - slack_bps / 1e4
    return price * k


def direction_of(value: str) -> Direction:
    return Direction(value)
