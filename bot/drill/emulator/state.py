"""The emulator's shared state: one SimMarket, one matching engine per venue,
the order log, faults, keys and the request log."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import time
from typing import Any

from bot.drill.emulator.auth import UpbitAuth
from bot.drill.emulator.faults import FaultBook
from bot.drill.emulator.limits import LimitConfig, VenueLimits
from bot.drill.emulator.streams import BookStreams
from bot.drill.emulator.ticker_stats import TickerStats
from core.clock import Clock, ManualClock, SystemClock
from core.domain.models import MarketSnapshot, Order, OrderBook, OrderRequest, Venue
from core.trading.universe import select_universe
from core.venues.paper_exchange import PaperExchange
from core.venues.sim_market import SimMarket

DEFAULT_KEYS: dict[str, tuple[str, str]] = {
    "binance": ("binance-test-key", "binance-test-secret"),
    "upbit": ("upbit-test-key", "upbit-test-secret"),
}
FEE_BPS = {"binance": 10.0, "upbit": 5.0}
BNB_DISCOUNT = 0.25  # Binance: fees paid in BNB are 25 % lower
BNB_USDT = 600.0  # the emulator's BNB price (BNB is not a simulated market)


def binance_fee_rule(vs: VenueState, bnb_discount: bool, bnb_usdt: float) -> Any:
    """Binance charges a fill's commission in the asset received - the base on a
    BUY, the quote on a SELL - or, with the account's BNB discount on and BNB
    enough, in BNB at a 25 % discount."""

    def rule(order: Order, qty: float, cost: float, quote_fee: float) -> tuple[str, float]:
        # The venue states commissions to 8 decimals, and debits what it states.
        if bnb_discount:
            bnb = round(quote_fee * (1.0 - BNB_DISCOUNT) / bnb_usdt, 8)
            if vs.engine.free("BNB") >= bnb:
                return "BNB", bnb
        if order.side.value == "buy":
            return order.symbol.split("/")[0], round(qty * (quote_fee / cost if cost else 0.0), 8)
        return order.symbol.split("/")[1], round(quote_fee, 8)

    return rule


@dataclasses.dataclass(slots=True)
class OrderRecord:
    """One order request as the venue received it (accepted or not)."""

    seq: int
    venue: str
    received_ms: int
    client_order_id: str | None
    symbol: str | None  # unified, e.g. BTC/USDT
    side: str | None  # buy / sell
    wire_type: str | None  # LIMIT / MARKET, or limit / price / market
    params: dict[str, str]
    outcome: str = "pending"  # accepted | rejected
    error: str | None = None
    http_status: int = 0
    order_id: str | None = None  # the venue's id: Binance orderId, Upbit uuid
    paper_id: str | None = None
    time_in_force: str | None = None
    quote_qty: float | None = None  # Binance quoteOrderQty / Upbit ord_type=price KRW
    user_canceled: bool = False
    cancel_client_id: str | None = None  # Binance: the cancel request's client id
    fault: str | None = None  # fault applied to this order, if any

    def to_json(self, order: Order | None) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__slots__ if k != "paper_id"}
        if order is not None:
            out.update(
                status=str(order.status), filled=order.filled, cost=order.cost, fee=order.fee_cost
            )
        return out


class VenueState:
    def __init__(self, venue: Venue, engine: PaperExchange) -> None:
        self.venue = venue
        self.engine = engine
        self.records: list[OrderRecord] = []
        self.by_order_id: dict[str, OrderRecord] = {}
        self.by_client: dict[str, OrderRecord] = {}
        self.used_identifiers: set[str] = set()  # Upbit: never reusable
        self.order_ids = itertools.count(1_000_001)
        self.limits: VenueLimits | None = None
        self.clock_offset_ms = 0  # the venue's clock vs ours (Binance checks timestamps)
        self.market_status: dict[str, str] = {}  # symbol -> status other than TRADING
        self.tick_overrides: dict[str, float] = {}  # Upbit symbol -> its own tick
        # Cancels accepted but not yet done (Upbit's batch cancel): applied at the
        # next book, after it has matched - an accepted cancel can lose to a fill.
        self.pending_cancels: list[OrderRecord] = []

    def apply_pending_cancels(self, _snap: MarketSnapshot) -> None:
        for rec in self.pending_cancels:
            if rec.paper_id is not None and self.engine.is_working(rec.paper_id):
                rec.user_canceled = True
                self.engine.cancel_now(rec.paper_id)
        self.pending_cancels.clear()

    def record(self, rec: OrderRecord) -> OrderRecord:
        self.records.append(rec)
        return rec

    def accepted(self, rec: OrderRecord, order: Order, venue_id: str) -> None:
        rec.outcome, rec.order_id, rec.paper_id = "accepted", venue_id, order.id
        self.by_order_id[venue_id] = rec
        if rec.client_order_id:
            self.by_client[rec.client_order_id] = rec

    def open_records(self, symbol: str | None = None) -> list[OrderRecord]:
        return [
            r
            for r in self.records
            if r.paper_id is not None
            and self.engine.is_working(r.paper_id)
            and symbol in (None, r.symbol)
        ]

    async def order_of(self, rec: OrderRecord) -> Order:
        assert rec.paper_id is not None and rec.symbol is not None
        return await self.engine.fetch_order(rec.paper_id, rec.symbol)


class EmulatorCore:
    def __init__(
        self,
        *,
        seed: int = 7,
        top_n: int = 50,
        interval_s: float = 0.1,
        keys: dict[str, tuple[str, str]] | None = None,
        levels: int = 30,
        quote_usd: float = 20_000.0,
        per_base_usd: float = 1_000.0,
        bases: list[str] | None = None,
        jump_rate_per_min: float = 1.0,
        limits: dict[str, Any] | None = None,
        bnb_discount: bool = False,
        bnb_usdt: float = BNB_USDT,
        upbit_ticks: dict[str, float] | None = None,
        clock: Clock | None = None,
    ) -> None:
        # A ManualClock makes the market move only when told (`advance`): the crash
        # soak's harness and the emulator then share one data clock, not the wall's.
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.limit_config = LimitConfig()
        self.limit_config.update(limits or {})
        self.bnb_discount = bnb_discount
        self.bnb_usdt = bnb_usdt
        self.sim = SimMarket(seed, interval_s=interval_s, clock=self.clock, levels=levels,
                             jump_rate_per_min=jump_rate_per_min)
        self.universe = (
            list(bases)
            if bases
            else select_universe(self.sim.symbol_stats(), top_n, fx_krw=self.sim.fx)
        )
        self.sim.subscribe(self.universe)
        # 24 h quote volumes are static per symbol in the sim: rank once, serve from here
        self.volumes = {st.base: st for st in self.sim.symbol_stats()}
        self.keys = dict(keys or DEFAULT_KEYS)
        self.secrets = {v: {k: s} for v, (k, s) in self.keys.items()}
        self.upbit_auth = UpbitAuth(self.secrets.get("upbit", {}))
        self.faults = FaultBook()
        self.tickers = TickerStats()
        self.sim.add_listener(self.tickers.on_snapshot)
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=5000)
        self.request_counts: collections.Counter[tuple[str, str, str, int]] = \
            collections.Counter()
        self.venues: dict[str, VenueState] = {}
        for venue in (Venue.BINANCE, Venue.UPBIT):
            engine = PaperExchange(venue, self.sim, self.clock, FEE_BPS[venue.value])
            vs = self.venues[venue.value] = VenueState(venue, engine)
            vs.limits = VenueLimits(venue.value, self.limit_config)
        for vs in self.venues.values():  # after the matchers: fills come first
            self.sim.add_listener(vs.apply_pending_cancels)
        bn = self.venues["binance"]
        bn.engine.fee_rule = binance_fee_rule(bn, bnb_discount, bnb_usdt)
        self.venues["upbit"].tick_overrides = {
            f"{b}/KRW": float(t) for b, t in (upbit_ticks or {}).items()}
        first = self.sim.step()
        for name, vs in self.venues.items():
            vs.engine.list_markets(self.universe, first)
            vs.engine.fund(vs.engine.quote, quote_usd * (first.fx.mid if name == "upbit" else 1.0))
            for base in self.universe:
                vs.engine.fund(base, per_base_usd / first.binance[base].mid)
        if bnb_discount:
            bn.engine.fund("BNB", per_base_usd / bnb_usdt)
        self.streams = BookStreams(self.sim, self.now_ms,
                                   {f"{b}USDT": b for b in self.universe})
        # The private streams read the orders and balances a step left: their
        # listener comes after the matchers and the pending cancels.
        from bot.drill.emulator.private_streams import PrivateStreams

        self.private = PrivateStreams(self)
        self.sim.add_listener(self.private.on_snapshot)
        self.stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_step_at = self.clock.time() + interval_s

    # --- sim driving ----------------------------------------------------------
    def start_autostep(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.sim.run(), name="emulator-sim")

    async def stop(self) -> None:
        self.stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def step(self, n: int = 1) -> int:
        snap = self.sim.latest()
        for _ in range(max(1, n)):
            snap = self.sim.step()
        assert snap is not None
        return snap.seq

    def advance(self, seconds: float) -> MarketSnapshot:
        """Move the manual clock on by `seconds`, stepping the market once for every
        interval that passes on the way (catch-up: a long advance is several books,
        each stamped with its own time, each matched against the working orders)."""
        clock = self.clock
        if not isinstance(clock, ManualClock):
            raise ValueError("advance needs the emulator on a manual clock (--manual-clock)")
        target = clock.time() + seconds
        while self._next_step_at <= target + 1e-9:
            clock.advance(max(self._next_step_at - clock.time(), 0.0))
            self.sim.step()
            self._next_step_at += self.sim.interval_s
        clock.advance(max(target - clock.time(), 0.0))
        return self.snapshot()

    # --- look-ups ---------------------------------------------------------------
    def snapshot(self) -> MarketSnapshot:
        snap = self.sim.latest()
        assert snap is not None
        return snap

    def book(self, venue: str, base: str) -> OrderBook | None:
        snap = self.snapshot()
        if venue == "upbit" and base == "USDT":
            return snap.fx
        return (snap.binance if venue == "binance" else snap.upbit).get(base)

    def now_ms(self, venue: str | None = None) -> int:
        """Now on a venue's clock (its offset from ours is settable: /admin/clock)."""
        offset = self.venues[venue].clock_offset_ms if venue in self.venues else 0
        return int(time.time() * 1000) + offset

    def log_request(self, venue: str, method: str, path: str, status: int) -> None:
        # Counted for good (the log below keeps the newest 5,000): benchmarks read both.
        self.request_counts[(venue, method, path, status)] += 1
        self.requests.append(
            {
                "ts_ms": self.now_ms(),
                "venue": venue,
                "method": method,
                "path": path,
                "status": status,
            }
        )

    async def balances(self) -> dict[str, dict[str, dict[str, float]]]:
        out = {}
        for name, vs in self.venues.items():
            bals = await vs.engine.fetch_balance()
            out[name] = {
                a: {"free": b.free, "used": b.used, "total": b.total} for a, b in bals.items()
            }
        return out

    async def place(
        self, vs: VenueState, rec: OrderRecord, req: OrderRequest, venue_id: str
    ) -> Order:
        order = await vs.engine.create_order(req)
        vs.accepted(rec, order, venue_id)
        return order
