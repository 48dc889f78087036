"""Rate budgets end to end (issue #15 item 4): real ccxt against the emulator,
which enforces the venues' limits and counts every request it receives inside a
Retry-After window or a ban.

- Market data cannot delay an order: with the poller's share spent and its
  requests waiting, orders go out at once.
- A 429/418 storm: the emulator's limits are cut far below what the process
  believes, so it is answered 429 again and again (and one injected 418 ban);
  it never sends inside a window, is never banned for it, and recovers when the
  limits are back.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from bot.app import venue_budgets
from bot.drill.emulator import EmulatorHandle
from core.clock import SystemClock
from core.domain.models import OrderRequest, OrderType, Side, Venue
from core.errors import ExchangeError, RateLimited
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.ccxt_market_data import CcxtMarketData
from core.venues.rate_budget import Role
from tests.venues.support import admin, emulator


@contextlib.asynccontextmanager
async def process(emu: EmulatorHandle, interval_s: float = 0.1
                  ) -> AsyncIterator[tuple[CcxtMarketData, dict[Venue, CcxtExchange], Any]]:
    """One process's clients as bot/app.py builds them: one budget per venue, separate
    market-data and trading clients."""
    budgets = venue_budgets()

    def clients(role: Role) -> dict[Venue, CcxtExchange]:
        return {v: CcxtExchange(v, emu.url, *emu.keys[v.value], fee_bps=10.0,
                                budget=budgets[v], role=role) for v in (Venue.UPBIT, Venue.BINANCE)}

    md, trading = clients(Role.MARKET_DATA), clients(Role.TRADING)
    market = CcxtMarketData(md, SystemClock(), interval_s)
    try:
        for ex in trading.values():
            await ex.load_markets()
        yield market, trading, budgets
    finally:
        for ex in [*md.values(), *trading.values()]:
            await ex.close()


async def resting_order(ex: CcxtExchange, symbol: str) -> OrderRequest:
    book = await ex.fetch_order_book(symbol)
    rules = ex.rules(symbol)
    price = rules.round_price(book.best_bid * 0.9, Side.BUY)
    notional = 20.0 if ex.venue is Venue.BINANCE else 20_000.0
    return OrderRequest(symbol, Side.BUY, OrderType.LIMIT, rules.round_amount(notional / price),
                        f"rs-{uuid.uuid4().hex[:16]}", price)


async def test_an_order_is_never_queued_behind_market_data() -> None:
    async with emulator(bases=None, top_n=50) as emu, process(emu) as (market, trading, budgets):
        await market.prepare(candidates=50)
        bases = [s.base for s in market.symbol_stats()][:50]
        market.subscribe(bases)
        bn, md_bn = trading[Venue.BINANCE], market.venues[Venue.BINANCE]
        req = await resting_order(bn, f"{bases[0]}/USDT")
        budget = budgets[Venue.BINANCE]

        async def greedy(symbol: str) -> None:  # book requests beyond market data's share
            while True:
                try:
                    await md_bn.fetch_order_book(symbol, 10)
                except RateLimited:
                    await asyncio.sleep(0.01)

        load = [asyncio.create_task(market.run())]
        load += [asyncio.create_task(greedy(f"{b}/USDT")) for b in bases[:20]]
        try:
            deadline = time.monotonic() + 30
            sent, overtaken = [], []
            slept_before = budget.stats.slept[Role.TRADING]
            waits_before = len(budget.stats.waits_s[Role.TRADING])
            for i in range(10):
                while budget.stats.waiting[Role.MARKET_DATA] == 0:  # book requests queued...
                    assert time.monotonic() < deadline, "market data never had to queue"
                    await asyncio.sleep(0.01)
                queued = budget.stats.waiting[Role.MARKET_DATA]
                r = OrderRequest(req.symbol, req.side, req.type, req.amount,
                                 f"{req.client_order_id[:20]}-{i}", req.price)
                t0 = time.perf_counter()
                order = await bn.create_order(r)  # ...and the order goes past them
                sent.append(time.perf_counter() - t0)
                overtaken.append(queued)
                await bn.cancel_order(order.id, r.symbol)
            order_waits = sorted(list(budget.stats.waits_s[Role.TRADING])[waits_before:])
            assert budget.stats.slept[Role.TRADING] == slept_before  # not one waited
            assert order_waits[len(order_waits) // 2] < 0.001, order_waits
            assert min(overtaken) > 0 and max(sent) < 1.0, (overtaken, sent)
        finally:
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
        limits = await admin(emu, "GET", "/admin/limits")
        assert limits["binance"]["http_429"] == limits["binance"]["in_window"] == 0
        # Market data stayed within half of Binance's 6,000 a minute (its own share).
        assert budget.used("weight", Role.MARKET_DATA) <= 3000


async def test_a_429_418_storm_is_waited_out_and_the_process_recovers() -> None:
    storm = {"binance_weight_per_min": 150, "binance_weight_window_s": 2.0,
             "upbit_groups": {"orderbook": [2, 1.0]}}
    async with emulator(limits=storm) as emu, process(emu) as (market, trading, _):
        await market.prepare(candidates=6)
        market.subscribe([s.base for s in market.symbol_stats()])
        poller = asyncio.create_task(market.run())
        refused = 0

        async def trade() -> None:  # the engine's side: orders and cancels meanwhile
            nonlocal refused
            while True:
                for ex, symbol in ((trading[Venue.BINANCE], "BTC/USDT"),
                                   (trading[Venue.UPBIT], "BTC/KRW")):
                    try:
                        order = await ex.create_order(await resting_order(ex, symbol))
                        await ex.cancel_order(order.id, symbol)
                    except RateLimited:
                        refused += 1
                    except ExchangeError:
                        pass
                await asyncio.sleep(0.2)

        trader = asyncio.create_task(trade())
        try:
            await asyncio.sleep(3.0)
            emu.add_fault(venue="binance", kind="http_418", count=1, seconds=2,
                          path="/api/v3/depth")
            await asyncio.sleep(3.0)
            during = await admin(emu, "GET", "/admin/limits")
            # The limits are back: the process recovers on its own.
            await admin(emu, "POST", "/admin/limits", {
                "binance_weight_per_min": 6000, "binance_weight_window_s": 60.0,
                "upbit_groups": {"orderbook": [10, 1.0]}})
            seq = (market.latest() or _none()).seq
            deadline = time.monotonic() + 15
            while True:
                snap = await asyncio.wait_for(market.wait_next(seq), 15)
                seq = snap.seq
                if not market.down and len(snap.binance) == len(snap.upbit) > 0:
                    break
                assert time.monotonic() < deadline, market.down
        finally:
            for task in (poller, trader):
                task.cancel()
            await asyncio.gather(poller, trader, return_exceptions=True)
        after = await admin(emu, "GET", "/admin/limits")
        for venue in ("binance", "upbit"):
            assert during[venue]["http_429"] >= 1, during  # there was a storm...
            assert after[venue]["in_window"] == 0, after  # ...and nothing sent into it
        assert after["binance"]["bans"] == 1  # the injected ban only: none earned
        assert after["upbit"]["bans"] == 0
        assert refused > 0  # orders were refused locally inside windows, never sent
        ack = await trading[Venue.BINANCE].create_order(
            await resting_order(trading[Venue.BINANCE], "BTC/USDT"))
        assert ack.id


def _none() -> Any:
    raise AssertionError("no snapshot during the storm")
