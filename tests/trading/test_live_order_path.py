"""The live order path: both legs of an entry go out together, a leg that fails
leaves the other one working for the leg-risk path, and the tick never waits
for a working order's status (it is read by OrderWatch in the background) nor,
live, for the intents' commit, the sends or their acks (a task of their own).

Real pieces: the exchange emulator on loopback with a latency fault on each
venue's order endpoint, the ccxt adapters, a SqliteStore journal, the gateway
and the engine's own placement.
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.app import real_venues
from core.clock import SystemClock
from core.domain.models import MarketSnapshot, Side, Venue
from core.journal.sqlite_store import SqliteStore
from core.journal.write_behind import WriteBehind
from core.trading.engine import Engine, EngineConfig
from core.trading.gateway import Gateway, OrderIntent, Purpose
from core.trading.order_watch import OrderWatch
from core.trading.slots import SlotState, WorkingOrder
from core.trading.state import TradingState, TradingStateBox
from core.trading.strategy import Strategy, StrategyParams
from core.venues.order_streams import OrderStream
from tests.venues.support import emu_settings, emulator

DELAY_S = 0.6
ORDER_PATHS = {"binance": "/api/v3/order", "upbit": "/v1/orders"}
RUN = "run-legs"


@dataclass
class Rig:
    emu: Any
    engine: Engine
    store: SqliteStore
    venues: dict[Venue, Any]

    async def snapshot(self) -> MarketSnapshot:
        up = await self.venues[Venue.UPBIT].fetch_order_book("BTC/KRW")
        bn = await self.venues[Venue.BINANCE].fetch_order_book("BTC/USDT")
        fx = await self.venues[Venue.UPBIT].fetch_order_book("USDT/KRW")
        now = int(time.time() * 1000)
        return MarketSnapshot(1, now, fx, {"BTC": up}, {"BTC": bn})


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with emulator(autostep=False) as emu:
        settings = emu_settings(emu, tmp_path)
        venues = real_venues(settings, streams=True)  # as a live run: streams when asked
        for v in venues.values():
            await v.load_markets()
        store = await SqliteStore.open(tmp_path / "arbops.sqlite3")
        clock = SystemClock()
        state = TradingStateBox()
        journal = WriteBehind(store)
        gateway = Gateway(venues, store, state, clock, run_id=RUN, write_behind=journal,
                          max_order_usd=100.0, max_exposure_usd=1_000.0, collar_bps=50.0,
                          stale_book_ms=60_000, max_orders_per_second=10)
        s = settings
        strategy = Strategy(StrategyParams(
            s.upbit_fee_bps, s.binance_fee_bps, s.entry_buffer_bps, s.baseline_halflife_s,
            s.baseline_warmup_s, s.take_profit_bps, s.stop_loss_bps, s.max_hold_s,
            s.reversal_bps))
        cfg = EngineConfig(run_id=RUN, universe=["BTC"], notional_usd=50.0, max_concurrent=1,
                           order_timeout_s=5.0, entry_cooldown_s=0.0)
        engine = Engine(cfg, None, venues, gateway, store, state,  # type: ignore[arg-type]
                        clock, strategy, journal)
        try:
            yield Rig(emu, engine, store, venues)
        finally:
            await journal.flush()
            for v in venues.values():
                await v.close()
            await store.close()


def entry_legs(rig: Rig, snap: MarketSnapshot) -> list[tuple[Venue, Side, float]]:
    qty = rig.engine._entry_qty("BTC", snap.binance["BTC"].best_ask)
    return [(Venue.UPBIT, Side.SELL, qty), (Venue.BINANCE, Side.BUY, qty)]


async def test_the_second_leg_does_not_wait_for_the_first_venue(rig: Rig) -> None:
    snap = await rig.snapshot()
    for venue, path in ORDER_PATHS.items():
        rig.emu.add_fault(venue=venue, kind="latency", seconds=DELAY_S, path=path,
                          method="POST", count=1)
    slot = rig.engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p1", SlotState.ENTERING
    t0 = time.perf_counter()
    placed = await rig.engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap,
                                     0.0, all_or_none=True)
    took = time.perf_counter() - t0
    assert placed
    assert {w.venue for w in slot.working.values()} == {Venue.UPBIT, Venue.BINANCE}
    # In series the two delayed answers add up (>= 1.2 s); sent together they overlap.
    assert DELAY_S <= took < 2 * DELAY_S - 0.15, took
    # Both intents were committed, in one write, before either order was sent.
    rows = await rig.store.intents_in_states(["OPEN", "PENDING", "UNKNOWN"], RUN)
    assert len(rows) == 2
    assert len({r["created_at"] for r in rows}) == 1


async def test_a_failed_leg_leaves_the_other_working_for_the_leg_risk_path(rig: Rig) -> None:
    snap = await rig.snapshot()
    # Binance refuses the buy (no USDT), Upbit's sell goes through.
    rig.emu.add_fault(venue="binance", kind="insufficient_funds", count=1)
    slot = rig.engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p2", SlotState.ENTERING
    failed_before = rig.engine.failed_fills
    placed = await rig.engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap,
                                     0.0, all_or_none=True)
    assert placed
    assert [w.venue for w in slot.working.values()] == [Venue.UPBIT]
    assert rig.engine.failed_fills == failed_before + 1
    await rig.engine.journal.flush()
    rejected = await rig.store.intents_in_states(["REJECTED"], RUN)
    assert [r["venue"] for r in rejected] == ["binance"]


async def test_the_tick_takes_order_status_without_waiting_for_the_venue(rig: Rig) -> None:
    snap = await rig.snapshot()
    engine = rig.engine
    engine.orders = OrderWatch(rig.venues, engine.working_orders, background=True,
                               interval_s=0.05)
    slot = engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p3", SlotState.ENTERING
    assert await engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap, 0.0,
                               all_or_none=True)
    await engine.drain_sends(5.0)  # the acks, taken as a tick would
    # Status reads now take a second at each venue.
    for venue, path in (("binance", "/api/v3/order"), ("upbit", "/v1/order")):
        rig.emu.add_fault(venue=venue, kind="latency", seconds=1.0, path=path, method="GET",
                          count=None)
    watch = asyncio.create_task(engine.orders.run())
    try:
        rig.emu.step(3)  # the marketable limits fill at the venue
        took = []
        deadline = time.monotonic() + 8.0
        while slot.working and time.monotonic() < deadline:
            t0 = time.perf_counter()
            await engine._poll_working(snap, 0.0)
            took.append(time.perf_counter() - t0)
            await asyncio.sleep(0.02)
        assert not slot.working, "the fills never reached the engine"
        # Every pass took what the venues had already answered, within milliseconds,
        # while each status read was held for a second.
        assert len(took) >= 20 and max(took) < 0.1, (len(took), max(took))
        assert slot.state is SlotState.OPEN
        assert slot.open_qty[Venue.UPBIT] > 0 and slot.open_qty[Venue.BINANCE] > 0
        assert engine.orders.rounds >= 1
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        rig.emu.clear_faults()


async def test_a_due_cancel_goes_out_without_the_tick_waiting_for_it(rig: Rig) -> None:
    snap = await rig.snapshot()
    engine = rig.engine
    engine.orders = OrderWatch(rig.venues, engine.working_orders, background=True,
                               interval_s=0.05)
    slot = engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p4", SlotState.ENTERING
    book = snap.binance["BTC"]
    qty = engine._entry_qty("BTC", book.best_ask)
    resting = OrderIntent(Venue.BINANCE, "BTC/USDT", "BTC", Side.BUY, qty,
                          book.best_bid * 0.99, Purpose.ENTRY, slot.position_id,
                          qty * book.best_bid * 0.99)
    order = await engine.gateway.submit(resting, snap, 0.0)
    slot.working[order.id] = WorkingOrder(Venue.BINANCE, order.id, order.client_order_id,
                                          "BTC/USDT", Purpose.ENTRY, 0.0, qty)
    # A cancel takes a second at the venue; the entry is long past its timeout.
    rig.emu.add_fault(venue="binance", kind="latency", seconds=1.0, path="/api/v3/order",
                      method="DELETE", count=None)
    watch = asyncio.create_task(engine.orders.run())
    try:
        took = []
        deadline = time.monotonic() + 8.0
        while slot.working and time.monotonic() < deadline:
            t0 = time.perf_counter()
            await engine._poll_working(snap, 100.0)
            took.append(time.perf_counter() - t0)
            await asyncio.sleep(0.02)
        assert not slot.working, "the cancel never came back"
        assert len(took) >= 20 and max(took) < 0.1, (len(took), max(took))
        assert slot.state is SlotState.FLAT  # nothing filled: no position
        await engine.journal.flush()
        row = await rig.store.get_intent(order.client_order_id)
        assert row is not None and row["state"] == "CANCELED"
    finally:
        watch.cancel()
        await asyncio.gather(watch, return_exceptions=True)
        rig.emu.clear_faults()


async def test_with_order_streams_a_resting_entry_still_times_out(rig: Rig) -> None:
    """The stream says nothing more about an order that rests; the engine judges an
    entry's timeout when it has an answer, so the last one is handed over again
    each interval (as a REST poll would) - without a single REST read."""
    snap = await rig.snapshot()
    engine = rig.engine
    streams = {v: OrderStream(ex) for v, ex in rig.venues.items()}
    engine.orders = OrderWatch(rig.venues, engine.working_orders, background=True,
                               interval_s=0.05, streams=streams)
    tasks = [asyncio.create_task(s.run()) for s in streams.values()]
    try:
        async with asyncio.timeout(10):
            while not all(s.up for s in streams.values()):
                await asyncio.sleep(0.01)
        slot = engine.slots["BTC"]
        slot.position_id, slot.state = f"{RUN}-p6", SlotState.ENTERING
        book = snap.binance["BTC"]
        qty = engine._entry_qty("BTC", book.best_ask)
        resting = OrderIntent(Venue.BINANCE, "BTC/USDT", "BTC", Side.BUY, qty,
                              book.best_bid * 0.99, Purpose.ENTRY, slot.position_id,
                              qty * book.best_bid * 0.99)
        order = await engine.gateway.submit(resting, snap, 0.0)
        placed = time.monotonic()
        slot.working[order.id] = WorkingOrder(Venue.BINANCE, order.id, order.client_order_id,
                                              "BTC/USDT", Purpose.ENTRY, placed, qty)
        tasks.append(asyncio.create_task(engine.orders.run()))
        deadline = placed + 15.0
        while slot.working and time.monotonic() < deadline:
            await engine._poll_working(snap, time.monotonic())
            await asyncio.sleep(0.05)
        assert not slot.working, "the resting entry was never cancelled"
        assert time.monotonic() - placed >= engine.cfg.order_timeout_s
        await engine.journal.flush()
        row = await rig.store.get_intent(order.client_order_id)
        assert row is not None and row["state"] == "CANCELED"
        assert engine.orders.rest_reads["binance"] == 0  # the stream said it all
        assert engine.orders.stream_answers["binance"] >= 1
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_fills_no_tick_took_are_recorded_at_the_runs_end(rig: Rig) -> None:
    snap = await rig.snapshot()
    engine = rig.engine
    engine.last_snapshot = snap
    slot = engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p5", SlotState.ENTERING
    assert await engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap, 0.0,
                               all_or_none=True)
    rig.emu.step(3)  # the venues fill them; no tick reads them
    assert await engine.record_last_fills() == 0
    assert not slot.working
    assert slot.open_qty[Venue.UPBIT] > 0 and slot.open_qty[Venue.BINANCE] > 0
    await engine.journal.flush()
    rows = await rig.store.intents_in_states(["FILLED"], RUN)
    assert {r["venue"] for r in rows} == {"upbit", "binance"}, rows


def live(rig: Rig) -> Engine:
    """The engine as a live run has it: status read and legs sent off the tick."""
    rig.engine.orders = OrderWatch(rig.venues, rig.engine.working_orders, background=True,
                                   interval_s=0.05)
    return rig.engine


async def acks_in(engine: Engine) -> None:
    """Wait (real time, bounded) until no send is in flight."""
    deadline = time.monotonic() + 5.0
    while engine.sends_in_flight and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not engine.sends_in_flight, "the sends never finished"


async def test_live_the_tick_decides_and_the_commit_send_and_acks_run_off_it(rig: Rig) -> None:
    snap = await rig.snapshot()
    engine = live(rig)
    for venue, path in ORDER_PATHS.items():
        rig.emu.add_fault(venue=venue, kind="latency", seconds=DELAY_S, path=path,
                          method="POST", count=1)
    slot = engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p6", SlotState.ENTERING
    t0 = time.perf_counter()
    assert await engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap, 0.0,
                               all_or_none=True)
    # Each venue holds its ack for 0.6 s: the decision returns long before.
    assert time.perf_counter() - t0 < 0.2
    assert slot.sending == 1 and not slot.working and engine.sends_in_flight == 1
    # A tick meanwhile takes nothing and does not settle the slot that is sending.
    await engine._poll_working(snap, 0.0)
    assert slot.state is SlotState.ENTERING and slot.sending == 1
    await acks_in(engine)
    took = time.perf_counter() - t0
    assert DELAY_S <= took < 2 * DELAY_S - 0.15, took  # the legs overlapped
    # The send task's time (commit, sends, acks) is measured, held up by the venues.
    assert engine.send_task.summary()["max"] >= DELAY_S * 1000
    await engine._poll_working(snap, 0.0)  # the next tick takes both acks
    assert slot.sending == 0
    assert {w.venue for w in slot.working.values()} == {Venue.UPBIT, Venue.BINANCE}
    # Committed, both in one write, before either was sent.
    rows = await rig.store.intents_in_states(["OPEN", "PENDING", "UNKNOWN"], RUN)
    assert len(rows) == 2 and len({r["created_at"] for r in rows}) == 1


async def test_live_a_failed_leg_still_reaches_the_leg_risk_path(rig: Rig) -> None:
    snap = await rig.snapshot()
    engine = live(rig)
    rig.emu.add_fault(venue="binance", kind="insufficient_funds", count=1)
    slot = engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p7", SlotState.ENTERING
    failed_before = engine.failed_fills
    assert await engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap, 0.0,
                               all_or_none=True)
    await engine.drain_sends(5.0)
    assert [w.venue for w in slot.working.values()] == [Venue.UPBIT]
    assert engine.failed_fills == failed_before + 1
    rig.emu.step(3)  # the Upbit sell fills; the engine must unwind it
    await engine.orders.refresh()
    engine.orders.background = False
    await engine._poll_working(snap, 0.0)
    unwinds = [w for w in slot.working.values() if w.purpose is Purpose.UNWIND]
    assert [(w.venue, w.amount > 0) for w in unwinds] == [(Venue.UPBIT, True)]


async def test_live_a_kill_between_decision_and_send_stops_the_send(rig: Rig) -> None:
    snap = await rig.snapshot()
    engine = live(rig)
    slot = engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p8", SlotState.ENTERING
    assert await engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap, 0.0,
                               all_or_none=True)
    # HALTED lands before the task has committed or sent anything.
    engine.state.set(TradingState.HALTED, "kill", time.time())
    await acks_in(engine)
    await engine._poll_working(snap, 0.0)  # the tick takes what the sends got
    assert not slot.working and slot.sending == 0
    for venue in rig.venues.values():
        assert await venue.fetch_open_orders() == []
    assert slot.state is SlotState.FLAT  # settled: nothing went out, no position
    await engine.journal.flush()
    rows = await rig.store.intents_in_states(["REJECTED"], RUN)
    assert len(rows) == 2 and all("HALTED" in r["reason"] for r in rows), rows
    assert engine.gateway.refusals.get("trading_state") == 2


async def test_live_a_commit_that_fails_sends_nothing_and_counts_as_an_error(rig: Rig) -> None:
    snap = await rig.snapshot()
    engine = live(rig)
    # The client id the next leg will get is already in the journal: the intents'
    # one INSERT fails in SQLite itself, so neither leg may go out.
    prefix, n = engine.gateway.next_client_id().rsplit("-", 1)
    await rig.store.record_intents([{
        "client_order_id": f"{prefix}-{int(n) + 1}", "run_id": "other", "venue": "upbit",
        "symbol": "BTC/KRW", "side": "sell", "type": "limit", "amount": 0.001,
        "price": 1.0, "cost": None, "purpose": "entry", "position_id": "other-p1",
        "created_at": time.time()}])
    slot = engine.slots["BTC"]
    slot.position_id, slot.state = f"{RUN}-p9", SlotState.ENTERING
    assert await engine._place(slot, entry_legs(rig, snap), Purpose.ENTRY, snap, 0.0,
                               all_or_none=True)
    await acks_in(engine)
    errors = engine.errors
    await engine.tick(snap)  # takes what the send task got
    assert engine.errors == errors + 1 and engine.consecutive_errors >= 1
    assert slot.state is SlotState.FLAT and not slot.working and slot.sending == 0
    for venue in rig.venues.values():
        assert await venue.fetch_open_orders() == []
    assert await rig.store.intents_in_states(["OPEN", "PENDING", "UNKNOWN"], RUN) == []
