"""End-to-end truth of the paper engine's figures (R-M3, R-M5, R-P3, R-S6).

Whole phases run in-process in fast mode (the sim is stepped on a ManualClock).
Every figure the KPI JSON reports is recomputed here from the raw journal rows
with independent Decimal arithmetic; nothing is taken from the engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.app import DB_NAME, build_service
from core.clock import ManualClock
from core.commands import RunArgs
from core.config.settings import Settings
from core.domain.models import OrderStatus, Side, Venue
from core.errors import OrderRejected
from core.journal.sqlite_store import SqliteStore
from core.trading.gateway import Gateway, OrderIntent, Purpose
from core.trading.phase_run import RunOutcome
from core.trading.state import TradingStateBox
from core.venues.paper_exchange import PaperExchange, paper_journal_probe
from core.venues.sim_market import SimMarket

CENT = Decimal("0.01")
D = Decimal


async def run_fast(
    data_dir: Path,
    seed: int,
    duration_s: float,
    on_progress: Any = None,
    close_timeout_s: float | None = None,
    **settings: Any,
) -> RunOutcome:
    cfg = Settings(data_dir=data_dir, sim_fast=True, **settings)
    service = await build_service(cfg, fast=True)
    try:
        spec = service.plan_run(
            RunArgs(phase=1, duration_seconds=duration_s, seed=seed, universe="top10")
        )
        if close_timeout_s is not None:
            spec = dataclasses.replace(spec, close_timeout_s=close_timeout_s)
        return await service.run_phase(spec, on_progress=on_progress)
    finally:
        await service.store.close()


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params).fetchall()]
    finally:
        con.close()


def quote_of(symbol: str) -> str:
    return symbol.split("/")[1]


def base_of(symbol: str) -> str:
    return symbol.split("/")[0]


def flows(fill: dict[str, Any]) -> tuple[D, D]:
    """(base change, quote change) of one fill, net of its fee, in Decimal."""
    amount, cost, fee = D(fill["amount"]), D(fill["cost"]), D(fill["fee"])
    if fill["side"] == "buy":
        return amount, -(cost + fee)
    assert fill["side"] == "sell"
    return -amount, cost - fee


# --- "Truth": every KPI figure recomputed from the journal ----------------------


@pytest.mark.parametrize("seed", [3, 11])
async def test_kpi_figures_match_the_journal(tmp_path: Path, seed: int) -> None:
    outcome = await run_fast(tmp_path, seed, 300)
    kpi = outcome.kpi
    db = tmp_path / DB_NAME
    fills = rows(db, "SELECT * FROM fills WHERE run_id=? ORDER BY ts, rowid", (outcome.run_id,))
    positions = rows(db, "SELECT * FROM positions WHERE run_id=?", (outcome.run_id,))
    closed = [p for p in positions if p["state"] == "closed"]
    assert closed, "the run completed no round trip: nothing to check"
    assert fills

    marks = kpi["trading"]["marks"]
    fx_mark = D(repr(marks["fx_usdt_krw"]))
    base_marks = {b: D(repr(v)) for b, v in marks["base_usdt"].items()}
    # Each venue's coin at its own price: Upbit's at its mid / FX (R-M1).
    upbit_marks = {b: D(repr(v)) for b, v in marks["upbit_base_usd"].items()}

    def usd(venue: str, asset: str, amount: D) -> D:
        if asset == "KRW":
            return amount / fx_mark
        if asset == "USDT":
            return amount
        return amount * (upbit_marks if venue == "upbit" else base_marks)[asset]

    # Fees in USD: KRW fees at the fill's own FX, USDT fees as they are.
    fees_usd = D(0)
    for f in fills:
        assert f["fee_currency"] == quote_of(f["symbol"])
        fee = D(f["fee"])
        assert fee > 0, f  # taker fees are charged on every fill
        fees_usd += fee / D(f["fx"]) if f["fee_currency"] == "KRW" else fee
    assert abs(fees_usd - D(repr(kpi["trading"]["fees_usd"]))) < CENT

    # Total PnL: inventory change per (venue, asset) marked at the final marks.
    inventory: dict[tuple[str, str], D] = defaultdict(D)
    for f in fills:
        d_base, d_quote = flows(f)
        inventory[(f["venue"], base_of(f["symbol"]))] += d_base
        inventory[(f["venue"], quote_of(f["symbol"]))] += d_quote
    # KRW lives only on Upbit and USDT only on Binance: never mixed (R-M1).
    assert {a for (v, a) in inventory if v == "upbit"} & {"USDT"} == set()
    assert {a for (v, a) in inventory if v == "binance"} & {"KRW"} == set()
    strategy_pnl = sum((usd(v, asset, amt) for (v, asset), amt in inventory.items()), D(0))
    assert abs(strategy_pnl - D(repr(kpi["summary"]["strategy_pnl_usd"]))) < CENT
    # Total = strategy + inventory revaluation, as the KPI says.
    assert abs(D(repr(kpi["summary"]["total_pnl_usd"])) - strategy_pnl
               - D(repr(kpi["summary"]["inventory_pnl_usd"]))) < CENT

    # The KPI's inventory change is the journal's, asset by asset.
    for (venue, asset), amt in inventory.items():
        reported = D(repr(kpi["trading"]["inventory_change"][venue][asset]))
        tol = D("0.01") if asset == "KRW" else D("1e-6")
        assert abs(reported - amt) <= tol * max(D(1), abs(amt)), (venue, asset)

    # Per position: USDT flows + KRW flows at the FX of its last fill + net base x mark.
    by_pos: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in fills:
        by_pos[f["position_id"]].append(f)
    wins = 0
    for p in closed:
        pf = by_pos[p["position_id"]]
        assert pf, p
        if p["exit_reason"] == "unwound":  # one leg filled and was sold back on its venue
            assert len({f["venue"] for f in pf}) == 1, p
        else:
            assert {f["venue"] for f in pf} == {"upbit", "binance"}  # two legs (R-M4)
        usdt = sum((flows(f)[1] for f in pf if quote_of(f["symbol"]) == "USDT"), D(0))
        krw = sum((flows(f)[1] for f in pf if quote_of(f["symbol"]) == "KRW"), D(0))
        net_base = sum((flows(f)[0] for f in pf), D(0))
        base = base_of(pf[0]["symbol"])
        fx_last = D(pf[-1]["fx"])
        pnl = usdt + krw / fx_last + net_base * base_marks[base]
        # The legs match: what is left in base is dust worth far less than a cent.
        assert abs(net_base * base_marks[base]) < D("0.001"), p
        assert abs(pnl - D(p["pnl_usd"])) < CENT, (p, pnl)
        pos_fees = sum(
            (
                D(f["fee"]) / D(f["fx"]) if quote_of(f["symbol"]) == "KRW" else D(f["fee"])
                for f in pf
            ),
            D(0),
        )
        assert abs(pos_fees - D(p["fees_usd"])) < CENT
        assert p["exit_reason"] in kpi["exit_reasons"]
        wins += 1 if pnl > 0 else 0

    summary = kpi["summary"]
    assert summary["round_trips_completed"] == len(closed)
    assert sum(kpi["exit_reasons"].values()) == len(closed)
    assert kpi["trading"]["wins"] == wins
    assert abs(D(repr(summary["win_rate"])) - D(wins) / D(len(closed))) < D("1e-5")
    assert fees_usd > 0  # every fill paid a taker fee: PnL is net of them


# --- "No free money": a random-walk premium cannot be farmed ------------------------


async def test_no_free_money_on_a_random_walk_premium(tmp_path: Path) -> None:
    total = D(0)
    trips = 0
    for seed in range(20):
        out = await run_fast(tmp_path / f"s{seed}", seed, 30, sim_mean_reversion=0.0)
        total += D(repr(out.kpi["summary"]["strategy_pnl_usd"]))
        trips += out.kpi["summary"]["round_trips_completed"]
    assert trips > 0, "nothing traded: the test would prove nothing"
    assert total <= 0, f"{trips} round trips made ${total} on a martingale premium"


# --- "Honest figures": performance numbers are measured ------------------------------

# Orders that fill 2 % per book and never time out keep the engine polling the
# venue on most ticks; a jumpy premium gets entries going right after warm-up.
BUSY: dict[str, Any] = {
    "paper_fill_ratio": 0.02,
    "order_timeout_s": 60,
    "max_concurrent": 3,
    "sim_jump_rate_per_min": 6,
}


async def test_paper_latency_shows_in_loop_latency(tmp_path: Path) -> None:
    calls: dict[int, list[int]] = {0: [], 20: []}  # orders working after each tick

    def tracker(lat: int) -> Any:
        def on_progress(run: Any) -> None:
            calls[lat].append(sum(len(s.working) for s in run.engine.slots.values()))

        return on_progress

    base = await run_fast(
        tmp_path / "a", 5, 8, tracker(0), close_timeout_s=1.0, paper_latency_ms=0, **BUSY
    )
    slow = await run_fast(
        tmp_path / "b", 5, 8, tracker(20), close_timeout_s=1.0, paper_latency_ms=20, **BUSY
    )
    # The trading itself runs on the manual clock: the same ticks, the same orders.
    assert calls[0] == calls[20]
    busy_share = sum(1 for n in calls[0] if n) / len(calls[0])
    assert busy_share > 0.55, "orders were not working on most ticks: p50 would prove nothing"
    lat0 = base.kpi["performance"]["loop_latency_ms"]
    lat20 = slow.kpi["performance"]["loop_latency_ms"]
    print("latency 0 ms:", lat0, "20 ms:", lat20, "busy share", busy_share)
    assert lat20["p50"] - lat0["p50"] >= 20.0
    assert lat20["avg"] - lat0["avg"] >= 20.0
    assert lat20["p99"] - lat0["p99"] >= 20.0


async def test_memory_figure_tracks_real_allocations(tmp_path: Path) -> None:
    hold: list[bytearray] = []

    def allocate(run: Any) -> None:
        if not hold and run.engine.latency.samples and len(run.engine.latency.samples) >= 50:
            block = bytearray(b"\x01") * (50 * 2**20)
            for i in range(0, len(block), 4096):  # touch every page
                block[i] = 2
            hold.append(block)

    plain = await run_fast(tmp_path / "a", 4, 30)
    fat = await run_fast(tmp_path / "b", 4, 30, on_progress=allocate)
    assert hold, "the allocation never happened"
    m0 = plain.kpi["performance"]["memory_mb"]["max"]
    m1 = fat.kpi["performance"]["memory_mb"]["max"]
    print("memory max without / with 50 MB:", m0, m1)
    assert m1 - m0 >= 40.0
    hold.clear()


async def test_every_performance_figure_is_measured(tmp_path: Path) -> None:
    out = await run_fast(tmp_path, 6, 30)
    perf = out.kpi["performance"]
    figures = {
        **{
            f"loop_latency_ms.{k}": perf["loop_latency_ms"][k] for k in ("avg", "p50", "p99", "max")
        },
        **{f"cpu_percent.{k}": perf["cpu_percent"][k] for k in ("avg", "max")},
        **{f"memory_mb.{k}": perf["memory_mb"][k] for k in ("avg", "max")},
    }
    assert all(v > 0 for v in figures.values()), figures
    lat = perf["loop_latency_ms"]
    assert lat["p50"] <= lat["p99"] <= lat["max"]
    assert perf["memory_mb"]["avg"] <= perf["memory_mb"]["max"]


# --- "Journal before send" (R-S6) ----------------------------------------------------


async def test_every_intent_and_fill_is_journaled(tmp_path: Path) -> None:
    out = await run_fast(tmp_path, 3, 120)
    db = tmp_path / DB_NAME
    intents = rows(db, "SELECT * FROM order_intents WHERE run_id=?", (out.run_id,))
    fills = rows(db, "SELECT * FROM fills WHERE run_id=?", (out.run_id,))
    assert intents and fills
    assert {i["state"] for i in intents} <= {"FILLED", "CANCELED", "OPEN", "REJECTED"}
    ids = {i["client_order_id"] for i in intents}
    assert {f["client_order_id"] for f in fills} <= ids
    # A FILLED intent's fills add up to its recorded fill and amount.
    filled: dict[str, D] = defaultdict(D)
    for f in fills:
        filled[f["client_order_id"]] += D(f["amount"])
    for i in intents:
        assert abs(filled.get(i["client_order_id"], D(0)) - D(i["filled"])) < D("1e-9"), i
        if i["state"] == "FILLED":
            assert abs(D(i["filled"]) - D(i["amount"])) < D("1e-9"), i
    # The counted orders are the journaled ones that reached a venue.
    sent = [i for i in intents if i["exchange_order_id"] is not None]
    assert out.kpi["fills"]["orders_sent"] == len(sent)


class _ForgetfulJournal:
    """Accepts every call but never writes the intent row."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, str]] = []
        self.events: list[str] = []

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[_ForgetfulJournal]:
        yield self

    async def record_intents(self, intents: object) -> None:
        return None

    async def update_intent(self, client_order_id: str, state: str, **kwargs: object) -> None:
        self.updates.append((client_order_id, state))

    async def record_event(self, ts: float, run_id: str | None, kind: str, payload: dict) -> None:
        self.events.append(kind)


async def _probe_setup(tmp_path: Path, journal: Any) -> tuple[Gateway, SimMarket, Any]:
    db = tmp_path / DB_NAME
    store = await SqliteStore.open(db)  # the real schema, so the probe has a table to read
    clock = ManualClock()
    market = SimMarket(5, n_symbols=3, clock=clock)
    market.subscribe(["BTC"])
    snap = market.step()
    ex = PaperExchange(Venue.BINANCE, market, clock, 10.0, intent_probe=paper_journal_probe(db))
    ex.list_markets(["BTC"], snap)
    ex.fund("USDT", 10_000.0)
    gw = Gateway(
        {Venue.BINANCE: ex},
        journal if journal is not None else store,
        TradingStateBox(),
        clock,
        run_id="r1",
        max_order_usd=100.0,
        max_exposure_usd=1000.0,
        collar_bps=50.0,
        stale_book_ms=2000,
        max_orders_per_second=20.0,
    )
    return gw, market, store


def _buy_intent(market: SimMarket) -> tuple[OrderIntent, Any]:
    snap = market.latest()
    assert snap is not None
    ask = snap.binance["BTC"].best_ask
    qty = 0.0005
    intent = OrderIntent(
        Venue.BINANCE, "BTC/USDT", "BTC", Side.BUY, qty, ask, Purpose.ENTRY, "p1", qty * ask
    )
    return intent, snap


async def test_probe_rejects_an_order_whose_intent_was_never_journaled(tmp_path: Path) -> None:
    journal = _ForgetfulJournal()
    gw, market, store = await _probe_setup(tmp_path, journal)
    try:
        intent, snap = _buy_intent(market)
        with pytest.raises(OrderRejected, match="not journaled"):
            await gw.submit(intent, snap, 0.0)
        assert [s for _, s in journal.updates] == ["REJECTED"]
    finally:
        await store.close()


async def test_probe_accepts_an_order_journaled_by_the_real_store(tmp_path: Path) -> None:
    gw, market, store = await _probe_setup(tmp_path, None)
    try:
        intent, snap = _buy_intent(market)
        order = await gw.submit(intent, snap, 0.0)
        assert order.status is OrderStatus.OPEN
        row = await store.get_intent(order.client_order_id)
        assert row is not None and row["state"] == "OPEN"
    finally:
        await store.close()


# --- R-M3: every entry beat its break-even -------------------------------------------


async def test_every_entry_beats_its_break_even(tmp_path: Path) -> None:
    out = await run_fast(tmp_path, 7, 120)
    positions = rows(tmp_path / DB_NAME, "SELECT * FROM positions WHERE run_id=?", (out.run_id,))
    assert positions
    for p in positions:
        assert p["expected_edge_bps"] is not None and p["break_even_bps"] is not None
        assert p["expected_edge_bps"] > p["break_even_bps"], p
        # break-even covers at least the four taker fees (defaults 5 + 10 bps per round)
        assert p["break_even_bps"] >= 2 * (5.0 + 10.0)


# --- sizing against the engine's own cap ------------------------------------------------


async def test_the_engine_does_not_size_entries_its_own_gateway_refuses(tmp_path: Path) -> None:
    """The Upbit leg's USD notional carries the premium (+1..5 %): sizing both legs at the
    Binance price alone made the gateway refuse the Upbit leg on every tick."""
    out = await run_fast(tmp_path, 1, 120)
    refusals = out.kpi["guards"]["gateway_refusals"]
    assert refusals.get("notional_cap", 0) == 0, refusals
    assert out.kpi["trading"]["entries"] > 0


async def test_a_rate_limited_venue_gets_no_new_orders_until_retry_after(tmp_path: Path) -> None:
    """Rate limits: wait as the venue says (issue #4); kill-flattening is exempt."""
    import time as _time

    from core.domain.models import Side, Venue
    from core.errors import RateLimited
    from core.trading.gateway import Purpose

    out_engine: dict[str, Any] = {}

    def grab(run: Any) -> None:
        out_engine.setdefault("e", run.engine)
        out_engine.setdefault("snap", run.engine.last_snapshot)

    await run_fast(tmp_path, 3, 10, on_progress=grab)
    engine = out_engine["e"]
    engine._venue_error(RateLimited("429", retry_after_s=30.0), Venue.UPBIT)
    assert engine.rate_limit_hits == 1 and engine.rate_limit_wait_s == 30.0
    assert engine.venue_paused_until["upbit"] > _time.monotonic() + 25
    slot = next(iter(engine.slots.values()))
    legs = [(Venue.UPBIT, Side.BUY, 1.0)]
    assert await engine._place(slot, legs, Purpose.ENTRY, out_engine["snap"], 0.0,
                               all_or_none=True) is False
    assert await engine._place(slot, legs, Purpose.EXIT, out_engine["snap"], 0.0,
                               all_or_none=False) is False


async def test_an_unknown_send_is_found_by_client_id_never_resent(tmp_path: Path) -> None:
    """A send whose answer is lost (a 5xx after the venue executed it) is looked up by
    client id and adopted; nothing is sent twice and the journal ends resolved."""
    injected: dict[str, int] = {"n": 0}

    def inject(run: Any) -> None:
        if injected["n"] == 0 and run.engine is not None and run.engine.latency.samples:
            for ex in run.ex.values():
                ex.fail_after_execute = 2
            injected["n"] = 1

    out = await run_fast(tmp_path, 3, 120, on_progress=inject)
    con = sqlite3.connect(tmp_path / "arbops.sqlite3")
    try:
        rows = con.execute("SELECT state, reason FROM order_intents").fetchall()
        adopted = con.execute("SELECT COUNT(*) FROM order_intents WHERE reason LIKE "
                              "'found by client id%'").fetchone()[0]
    finally:
        con.close()
    assert adopted >= 1, rows
    assert not [r for r in rows if r[0] in ("UNKNOWN", "PENDING", "OPEN")], rows
    assert out.kpi["reconciliation"]["ok"], out.kpi["reconciliation"]


async def test_readers_see_the_engine_through_one_frozen_snapshot(tmp_path: Path) -> None:
    """EngineStats is what the watchdog, metrics, status and the KPI read: it agrees with
    the final KPI and cannot be written to (a reader cannot change the engine)."""
    seen: dict[str, Any] = {}

    def keep(run: Any) -> None:
        if run.engine is not None:
            seen["engine"] = run.engine

    outcome = await run_fast(tmp_path, seed=3, duration_s=60, on_progress=keep)
    st = seen["engine"].stats()
    s = outcome.kpi["summary"]
    assert st.round_trips == s["round_trips_completed"] > 0
    assert round(st.pnl_usd, 6) == s["strategy_pnl_usd"]
    assert round(st.total_pnl_usd, 6) == s["total_pnl_usd"]
    assert round(st.win_rate, 6) == s["win_rate"]
    assert st.failed_fills == s["failed_fills_count"]
    assert (st.entries, st.exits) == (outcome.kpi["trading"]["entries"],
                                      outcome.kpi["trading"]["exits"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.round_trips = 0  # type: ignore[misc]
    assert seen["engine"].round_trips == s["round_trips_completed"]
