"""A run's end resolves every intent against the venues by client id (crash safety).

The race the crash soak once lost, made deterministic: the emulator runs on a data
clock the run advances (SteppedFeed), and the run is stopped in the very tick its
first entry orders were decided (or, for `fill`, once they are working), with no
time to close (close_timeout_s=0): the close times out with them still working in
the engine, waits for any send in flight, cancels everything on the venues and ends. Before the run's end resolved its intents, the
journal kept those orders OPEN - and, when the venue had filled them first (the
cancel lost the race), without their fills.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.app import real_venues, venue_budgets
from bot.drill.stepped_feed import SteppedFeed
from bot.progress import summary_table
from core.journal.sqlite_store import SqliteStore
from core.trading.phase_run import PhaseRun, RunSpec
from core.trading.state import TradingStateBox
from tests.venues.support import DB_NAME, HOLDING, admin, db_rows, emu_settings, emulator

TICK_S = 0.1


async def stop_in_the_entry_tick(tmp_path: Path, venue_first: str) -> tuple[Any, Any, Any]:
    """Run until the first entry orders are out, then: `fill` lets the venues fill
    them before the stop (the cancels lose), `rest` stops at once (the cancels win),
    `down` makes Upbit stop answering first. Returns (outcome, intents, orders)."""
    async with emulator(manual_clock=True, jump_rate_per_min=12.0) as emu:
        feed = await SteppedFeed.open(emu.url, TICK_S)
        settings = emu_settings(emu, tmp_path, **HOLDING)
        store = await SqliteStore.open(tmp_path / DB_NAME)
        venues = real_venues(settings, venue_budgets(), "trading")
        spec = RunSpec(mode="live", phase=1, top_n=6, duration_s=120.0, notional_usd=50.0,
                       data_source="real", kpi_path=tmp_path / "kpi.json",
                       close_timeout_s=0.0)

        def progress(run: PhaseRun) -> None:
            engine = run.engine
            if run.closing or engine is None:
                return
            # Live, the tick hands its legs to a send task: `rest` and `down` stop in
            # the tick that decided them (the close waits for those sends, then
            # cancels); `fill` needs the orders at the venues, so it waits for them.
            if not any(slot.working or (slot.sending and venue_first != "fill")
                       for slot in engine.slots.values()):
                return
            if venue_first == "fill":
                # The venues match the entries on the books that follow; a limit
                # priced off the mid may need a few of them to cross.
                for _ in range(600):
                    if not any(v.open_records() for v in emu.core.venues.values()):
                        break
                    emu.core.advance(TICK_S)
            elif venue_first == "down":
                emu.add_fault(venue="upbit", kind="maintenance", count=None)
            run.request_stop("stopped in the entry's tick")

        run = PhaseRun(spec, settings, store, TradingStateBox(), feed.clock, feed, venues,
                       on_progress=progress)
        try:
            outcome = await run.execute()
        finally:
            for ex in venues.values():
                await ex.close()
            await feed.close()
            await store.close()
        emu.clear_faults()
        orders = await admin(emu, "GET", "/admin/orders")
    intents = db_rows(tmp_path, "SELECT * FROM order_intents WHERE run_id=?", (run.run_id,))
    return outcome, intents, orders


@pytest.mark.parametrize("venue_first", ["fill", "rest"])
async def test_orders_working_at_the_close_deadline_are_resolved(tmp_path: Path,
                                                                  venue_first: str) -> None:
    outcome, intents, orders = await stop_in_the_entry_tick(tmp_path, venue_first)
    received = {o["client_order_id"]: o for v in ("upbit", "binance") for o in orders[v]}
    assert intents and all(i["client_order_id"] in received for i in intents)
    # The close timed out with the entries working: not a clean end, but a resolved one.
    assert "close_timeout" in str(outcome.kpi["summary"]["stop_reason"])
    assert outcome.kpi["trading"]["unresolved_intents"] == []
    want = "FILLED" if venue_first == "fill" else "CANCELED"
    for intent in intents:
        order = received[intent["client_order_id"]]
        assert intent["state"] == want, (intent, order)
        assert float(intent["filled"] or 0.0) == pytest.approx(order["filled"])
    # The fills the engine never polled are in the journal, as the venue made them.
    fills = db_rows(tmp_path, "SELECT client_order_id, SUM(amount) AS amount FROM fills "
                              "GROUP BY client_order_id")
    journaled = {f["client_order_id"]: f["amount"] for f in fills}
    for intent in intents:
        filled = received[intent["client_order_id"]]["filled"]
        assert journaled.get(intent["client_order_id"], 0.0) == pytest.approx(filled)
    assert outcome.kpi["reconciliation"]["drift"] == [], outcome.kpi["reconciliation"]


async def test_intents_a_venue_cannot_resolve_are_listed(tmp_path: Path) -> None:
    outcome, intents, _ = await stop_in_the_entry_tick(tmp_path, "down")
    left = outcome.kpi["trading"]["unresolved_intents"]
    upbit = {i["client_order_id"] for i in intents if i["venue"] == "upbit"}
    binance = [i for i in intents if i["venue"] == "binance"]
    # Upbit does not answer: its intent is named, with why; Binance's is resolved.
    assert upbit and {x["client_order_id"] for x in left} == upbit, left
    assert all(x["why"] for x in left)
    assert binance and all(i["state"] == "CANCELED" for i in binance), binance
    assert outcome.exit_code == 1
    # The operator's summary names them too.
    table = summary_table(outcome.kpi, "kpi.json")
    assert "unresolved orders" in table and all(cid in table for cid in upbit), table
