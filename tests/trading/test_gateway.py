"""The one door every order goes through (R-S6, R-S7).

Real pieces: a SqliteStore journal, a SimMarket stepped on a ManualClock and a
PaperExchange per venue that refuses any order whose intent was not committed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from core.domain.models import (
    MarketSnapshot,
    Order,
    OrderRequest,
    OrderStatus,
    Side,
    TradingState,
    Venue,
)
from core.errors import GatewayRefusal, OrderRejected, SendUnknown, VenueUnavailable
from core.journal.sqlite_store import SqliteStore
from core.trading.gateway import Gateway, OrderIntent, Purpose
from core.trading.state import TradingStateBox
from core.venues.paper_exchange import PaperExchange, paper_journal_probe
from core.venues.sim_market import SimMarket

CAP = 100.0  # per order, USD
EXPOSURE = 300.0
COLLAR = 50.0  # bps
STALE_MS = 2000
RATE = 3  # orders per second
RUN = "run-gw"


@dataclass
class Rig:
    gw: Gateway
    store: SqliteStore
    state: TradingStateBox
    clock: ManualClock
    market: SimMarket
    ex: dict[Venue, PaperExchange]

    @property
    def snap(self) -> MarketSnapshot:
        snap = self.market.latest()
        assert snap is not None
        return snap

    def intent(
        self,
        venue: Venue = Venue.BINANCE,
        side: Side = Side.BUY,
        purpose: Purpose = Purpose.ENTRY,
        *,
        usd: float = 60.0,
        price_bps: float = 0.0,
        notional: float | None = None,
        base: str = "ETH",
    ) -> OrderIntent:
        """A marketable limit for about `usd` of base, `price_bps` off the touch."""
        books = self.snap.upbit if venue is Venue.UPBIT else self.snap.binance
        book = books[base]
        touch = book.best_ask if side is Side.BUY else book.best_bid
        price = touch * (1 + price_bps / 1e4)
        to_usd = 1.0 / self.snap.fx.mid if venue is Venue.UPBIT else 1.0
        qty = usd / (self.snap.binance[base].mid)
        symbol = f"{base}/KRW" if venue is Venue.UPBIT else f"{base}/USDT"
        return OrderIntent(
            venue,
            symbol,
            base,
            side,
            qty,
            price,
            purpose,
            "pos-1",
            notional if notional is not None else qty * price * to_usd,
        )

    async def refused_events(self) -> list[dict[str, Any]]:
        return [e["payload"] for e in await self.store.events(RUN, "order_refused")]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    db = tmp_path / "arbops.sqlite3"
    store = await SqliteStore.open(db)
    clock = ManualClock()
    market = SimMarket(11, n_symbols=5, clock=clock)
    market.subscribe(["BTC", "ETH"])
    snap = market.step()
    probe = paper_journal_probe(db)
    ex = {
        v: PaperExchange(v, market, clock, fee, intent_probe=probe)
        for v, fee in ((Venue.UPBIT, 5.0), (Venue.BINANCE, 10.0))
    }
    for venue, e in ex.items():
        e.list_markets(["BTC", "ETH"], snap)
        e.fund(e.quote, 20_000.0 * (snap.fx.mid if venue is Venue.UPBIT else 1.0))
        for base in ("BTC", "ETH"):
            e.fund(base, 2_000.0 / snap.binance[base].mid)
    state = TradingStateBox()
    gw = Gateway(
        ex,
        store,
        state,
        clock,
        run_id=RUN,
        max_order_usd=CAP,
        max_exposure_usd=EXPOSURE,
        collar_bps=COLLAR,
        stale_book_ms=STALE_MS,
        max_orders_per_second=RATE,
    )
    try:
        yield Rig(gw, store, state, clock, market, ex)
    finally:
        await store.close()


async def refused(rig: Rig, intent: OrderIntent, exposure: float = 0.0) -> GatewayRefusal:
    with pytest.raises(GatewayRefusal) as info:
        await rig.gw.submit(intent, rig.snap, exposure)
    return info.value


# --- a pass is journaled before the send ------------------------------------------------


async def test_a_passing_order_is_journaled_open_with_the_venue_id(rig: Rig) -> None:
    intent = rig.intent()
    order = await rig.gw.submit(intent, rig.snap, 0.0)
    assert order.status is OrderStatus.OPEN
    row = await rig.store.get_intent(order.client_order_id)
    assert row is not None
    assert row["state"] == "OPEN"
    assert row["exchange_order_id"] == order.id
    assert (row["run_id"], row["venue"], row["symbol"], row["side"], row["purpose"]) == (
        RUN,
        "binance",
        "ETH/USDT",
        "buy",
        "entry",
    )
    assert row["position_id"] == "pos-1"
    # what was journaled is exactly what went on the wire (rounded to venue rules)
    assert float(row["amount"]) == order.amount
    assert float(row["price"]) == order.price
    assert order.amount is not None and order.amount <= intent.amount
    assert rig.ex[Venue.BINANCE].orders_sent == 1
    assert await rig.refused_events() == []


async def test_client_order_ids_are_unique(rig: Rig) -> None:
    a = await rig.gw.submit(rig.intent(), rig.snap, 0.0)
    b = await rig.gw.submit(rig.intent(Venue.UPBIT), rig.snap, 0.0)
    assert a.client_order_id != b.client_order_id


async def test_a_venue_rejection_marks_the_intent_rejected(rig: Rig) -> None:
    # Binance holds ~$2,000 of ETH: an exit selling $50,000 of it passes the gateway
    # (exits are not capped) and is refused by the venue
    exit_ = rig.intent(side=Side.SELL, purpose=Purpose.EXIT)
    big = dataclasses.replace(exit_, amount=50_000.0 / rig.snap.binance["ETH"].mid)
    with pytest.raises(OrderRejected, match="insufficient"):
        await rig.gw.submit(big, rig.snap, 0.0)
    rows = await rig.store.intents_in_states(["REJECTED"], RUN)
    assert len(rows) == 1
    assert "insufficient" in rows[0]["reason"]
    assert rows[0]["exchange_order_id"] is None


class _Down:
    """A venue whose sends time out: the outcome is unknown."""

    def __init__(self, inner: PaperExchange) -> None:
        self.venue = inner.venue
        self._inner = inner

    def rules(self, symbol: str) -> Any:
        return self._inner.rules(symbol)

    async def create_order(self, request: OrderRequest) -> Order:
        raise VenueUnavailable("timeout")


async def test_an_unknown_send_outcome_is_journaled_unknown(rig: Rig) -> None:
    gw = Gateway(
        {Venue.BINANCE: _Down(rig.ex[Venue.BINANCE])},
        rig.store,
        rig.state,
        rig.clock,
        run_id=RUN,
        max_order_usd=CAP,
        max_exposure_usd=EXPOSURE,
        collar_bps=COLLAR,
        stale_book_ms=STALE_MS,
        max_orders_per_second=RATE,
    )
    with pytest.raises(SendUnknown):
        await gw.submit(rig.intent(), rig.snap, 0.0)
    assert len(await rig.store.intents_in_states(["UNKNOWN"], RUN)) == 1


# --- trading state (R-S7) --------------------------------------------------------------------

STATE_TABLE = [
    (TradingState.HALTED, Purpose.ENTRY, False),
    (TradingState.HALTED, Purpose.EXIT, False),
    (TradingState.HALTED, Purpose.UNWIND, False),
    (TradingState.HALTED, Purpose.FLATTEN, True),
    (TradingState.REDUCING, Purpose.ENTRY, False),
    (TradingState.REDUCING, Purpose.EXIT, True),
    (TradingState.REDUCING, Purpose.UNWIND, True),
    (TradingState.REDUCING, Purpose.FLATTEN, True),
    (TradingState.ACTIVE, Purpose.ENTRY, True),
    (TradingState.ACTIVE, Purpose.EXIT, True),
]


@pytest.mark.parametrize(("state", "purpose", "allowed"), STATE_TABLE)
async def test_trading_state_gate(
    rig: Rig, state: TradingState, purpose: Purpose, allowed: bool
) -> None:
    rig.state.set(state, "test", rig.clock.time())
    side = Side.BUY if purpose is Purpose.ENTRY else Side.SELL
    intent = rig.intent(side=side, purpose=purpose)
    if allowed:
        order = await rig.gw.submit(intent, rig.snap, 0.0)
        assert order.status is OrderStatus.OPEN
    else:
        refusal = await refused(rig, intent)
        assert refusal.check == "trading_state"
        assert str(state) in refusal.reason
        assert rig.ex[Venue.BINANCE].orders_sent == 0
        assert await rig.store.intents_in_states(["PENDING", "OPEN", "REJECTED"], RUN) == []


# --- caps --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notional", "purpose", "ok"),
    [
        (CAP, Purpose.ENTRY, True),  # at the cap
        (CAP + 0.01, Purpose.ENTRY, False),
        (CAP * 3, Purpose.ENTRY, False),
        (CAP * 3, Purpose.EXIT, True),  # caps bound risk-adding orders only
        (CAP * 3, Purpose.FLATTEN, True),
    ],
)
async def test_notional_cap(rig: Rig, notional: float, purpose: Purpose, ok: bool) -> None:
    side = Side.BUY if purpose is Purpose.ENTRY else Side.SELL
    intent = rig.intent(side=side, purpose=purpose, notional=notional)
    if ok:
        assert (await rig.gw.submit(intent, rig.snap, 0.0)).status is OrderStatus.OPEN
    else:
        assert (await refused(rig, intent)).check == "notional_cap"


@pytest.mark.parametrize(
    ("exposure", "purpose", "ok"),
    [
        (EXPOSURE - CAP, Purpose.ENTRY, True),  # lands exactly on the cap
        (EXPOSURE - CAP + 0.01, Purpose.ENTRY, False),
        (EXPOSURE * 5, Purpose.ENTRY, False),
        (EXPOSURE * 5, Purpose.EXIT, True),
    ],
)
async def test_exposure_cap(rig: Rig, exposure: float, purpose: Purpose, ok: bool) -> None:
    side = Side.BUY if purpose is Purpose.ENTRY else Side.SELL
    intent = rig.intent(side=side, purpose=purpose, notional=CAP)
    if ok:
        assert (await rig.gw.submit(intent, rig.snap, exposure)).status is OrderStatus.OPEN
    else:
        refusal = await refused(rig, intent, exposure)
        assert refusal.check == "exposure_cap"


# --- fresh book and price collar ----------------------------------------------------------------


@pytest.mark.parametrize(("age_s", "ok"), [(0.0, True), (2.0, True), (2.001, False), (30.0, False)])
async def test_stale_book(rig: Rig, age_s: float, ok: bool) -> None:
    intent = rig.intent()
    rig.clock.advance(age_s)  # time passes, the market publishes nothing
    if ok:
        assert (await rig.gw.submit(intent, rig.snap, 0.0)).status is OrderStatus.OPEN
    else:
        refusal = await refused(rig, intent)
        assert refusal.check == "stale_book"


async def test_stale_book_also_blocks_exits(rig: Rig) -> None:
    intent = rig.intent(side=Side.SELL, purpose=Purpose.EXIT)
    rig.clock.advance(5.0)
    assert (await refused(rig, intent)).check == "stale_book"
    rig.market.step()  # a fresh book: the same exit now passes
    assert (await rig.gw.submit(intent, rig.snap, 0.0)).status is OrderStatus.OPEN


async def test_missing_book_is_refused(rig: Rig) -> None:
    intent = dataclasses.replace(rig.intent(), base="XRP", symbol="XRP/USDT")  # not subscribed
    assert (await refused(rig, intent)).check == "stale_book"


@pytest.mark.parametrize(
    ("venue", "side", "bps", "ok"),
    [
        (Venue.BINANCE, Side.BUY, 0.0, True),
        (Venue.BINANCE, Side.BUY, 45.0, True),
        (Venue.BINANCE, Side.BUY, 60.0, False),  # paying 60 bps over the ask
        (Venue.BINANCE, Side.BUY, -300.0, True),  # a bid far under the ask risks nothing
        (Venue.BINANCE, Side.SELL, -45.0, True),
        (Venue.BINANCE, Side.SELL, -60.0, False),  # selling 60 bps under the bid
        (Venue.BINANCE, Side.SELL, 300.0, True),
        (Venue.UPBIT, Side.BUY, 60.0, False),
        (Venue.UPBIT, Side.SELL, -60.0, False),
        (Venue.UPBIT, Side.SELL, -30.0, True),
    ],
)
async def test_price_collar(rig: Rig, venue: Venue, side: Side, bps: float, ok: bool) -> None:
    intent = rig.intent(venue, side, Purpose.EXIT, price_bps=bps)
    if ok:
        assert (await rig.gw.submit(intent, rig.snap, 0.0)).status is OrderStatus.OPEN
    else:
        refusal = await refused(rig, intent)
        assert refusal.check == "price_collar"


# --- throttle --------------------------------------------------------------------------------------


async def test_throttle_limits_entries_per_second(rig: Rig) -> None:
    for _ in range(RATE):
        await rig.gw.submit(rig.intent(usd=20.0), rig.snap, 0.0)
    refusal = await refused(rig, rig.intent(usd=20.0))
    assert refusal.check == "throttle"
    # exits are never throttled: getting out must not wait
    exit_ = rig.intent(side=Side.SELL, purpose=Purpose.EXIT, usd=20.0)
    assert (await rig.gw.submit(exit_, rig.snap, 0.0)).status is OrderStatus.OPEN
    rig.clock.advance(1.01)
    rig.market.step()
    assert (await rig.gw.submit(rig.intent(usd=20.0), rig.snap, 0.0)).status is OrderStatus.OPEN


async def test_refusals_do_not_count_towards_the_throttle(rig: Rig) -> None:
    for _ in range(RATE * 3):
        await refused(rig, rig.intent(notional=CAP * 2))
    for _ in range(RATE):
        await rig.gw.submit(rig.intent(usd=20.0), rig.snap, 0.0)


# --- venue rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("venue", "usd", "rule"),
    [
        (Venue.BINANCE, 2.0, "min_notional"),  # under 5 USDT
        (Venue.UPBIT, 2.0, "min_total"),  # under 5,000 KRW
        (Venue.BINANCE, 1e-9, "lot_size"),  # rounds to zero
    ],
)
async def test_venue_rule_violation_is_a_refusal(
    rig: Rig, venue: Venue, usd: float, rule: str
) -> None:
    refusal = await refused(rig, rig.intent(venue, usd=usd))
    assert refusal.check == "venue_rules"
    assert rule in refusal.reason
    assert rig.ex[venue].orders_sent == 0
    # never journaled: the journal only holds orders that could go out
    assert await rig.store.intents_in_states(["PENDING", "OPEN", "REJECTED"], RUN) == []


# --- every refusal is an event ------------------------------------------------------------------------


async def test_each_refusal_records_an_order_refused_event(rig: Rig) -> None:
    checks = []
    rig.state.set(TradingState.REDUCING, "pause", rig.clock.time())
    checks.append((await refused(rig, rig.intent())).check)
    rig.state.reset(rig.clock.time())
    checks.append((await refused(rig, rig.intent(notional=CAP * 2))).check)
    checks.append((await refused(rig, rig.intent(notional=CAP), EXPOSURE)).check)
    checks.append((await refused(rig, rig.intent(price_bps=100.0))).check)
    checks.append((await refused(rig, rig.intent(usd=1.0))).check)
    assert checks == [
        "trading_state",
        "notional_cap",
        "exposure_cap",
        "price_collar",
        "venue_rules",
    ]
    events = list(reversed(await rig.refused_events()))
    assert [e["check"] for e in events] == checks
    for e in events:
        assert e["symbol"] == "ETH/USDT" and e["side"] == "buy" and e["purpose"] == "entry"
        assert e["reason"]
    assert rig.gw.refusals == {c: 1 for c in checks}
    assert rig.ex[Venue.BINANCE].orders_sent == 0
