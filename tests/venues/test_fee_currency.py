"""Fees in the asset the venue charges (issue #15 item 5), end to end.

Binance takes a BUY's commission from the base asset received and a SELL's from
the quote, or BNB when the account's discount is on; Upbit charges KRW. Real
ccxt against the emulator, through CcxtExchange: each fill carries its fee and
the asset, valued in the quote at the fill; journaled per asset, the journal
reconciles with the venues' balances to the unit - no base drift after buys.
"""
from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.drill.emulator.state import BNB_DISCOUNT, BNB_USDT, FEE_BPS
from core.domain.journal_kinds import EventKind
from core.domain.ledger import Ledger
from core.domain.models import Order, OrderRequest, OrderType, Side, Trade, Venue
from core.journal.sqlite_store import SqliteStore
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.reconcile import expected_changes, reconcile_run
from tests.venues.support import emulator

RATE = FEE_BPS["binance"] / 1e4
SYMBOLS = {Venue.BINANCE: "ETH/USDT", Venue.UPBIT: "ETH/KRW"}


@contextlib.asynccontextmanager
async def venues(**emu_kw: Any) -> AsyncIterator[tuple[Any, dict[Venue, CcxtExchange]]]:
    async with emulator(autostep=False, **emu_kw) as emu:
        out = {v: CcxtExchange(v, emu.url, *emu.keys[v.value], fee_bps=FEE_BPS[v.value])
               for v in (Venue.UPBIT, Venue.BINANCE)}
        try:
            for ex in out.values():
                await ex.load_markets()
            yield emu, out
        finally:
            for ex in out.values():
                await ex.close()


def cid() -> str:
    return f"fee-{uuid.uuid4().hex[:16]}"


async def market_buy(ex: CcxtExchange, symbol: str, quote_notional: float) -> Order:
    book = await ex.fetch_order_book(symbol)
    amount = ex.rules(symbol).round_amount(quote_notional / book.best_ask)
    return await ex.create_order(OrderRequest(symbol, Side.BUY, OrderType.MARKET, amount, cid()))


async def limit(ex: CcxtExchange, symbol: str, side: Side, quote_notional: float) -> OrderRequest:
    book = await ex.fetch_order_book(symbol)
    px = book.best_ask * 1.01 if side is Side.BUY else book.best_bid * 0.99  # marketable
    rules = ex.rules(symbol)
    price = rules.round_price(px, side)
    return OrderRequest(symbol, side, OrderType.LIMIT,
                        rules.round_amount(quote_notional / price), cid(), price)


async def test_binance_buy_pays_in_the_base_and_a_sell_in_the_quote() -> None:
    async with venues() as (emu, vs):
        bn = vs[Venue.BINANCE]
        before = await bn.fetch_balance()
        # A market buy fills on arrival: its fills come with the create answer.
        mkt = await market_buy(bn, "ETH/USDT", 30.0)
        assert mkt.filled > 0 and mkt.trades
        # A limit buy fills on the next book: its fills are read from the trade list.
        req = await limit(bn, "ETH/USDT", Side.BUY, 30.0)
        ack = await bn.create_order(req)
        assert ack.filled == 0 and not ack.trades
        emu.step()
        lim = await bn.fetch_order(ack.id, "ETH/USDT")
        assert lim.filled == pytest.approx(req.amount) and lim.trades
        for order in (mkt, lim):
            assert order.fee_currency == "ETH"
            for t in order.trades:
                assert t.fee_currency == "ETH"
                assert t.fee_cost == pytest.approx(t.amount * RATE, abs=1e-8)
                assert t.fee_in_quote == pytest.approx(t.fee_cost * t.price, rel=1e-9)
        sell_req = await limit(bn, "ETH/USDT", Side.SELL, 20.0)
        await bn.create_order(sell_req)
        emu.step()
        sell = await bn.fetch_order(None, "ETH/USDT", sell_req.client_order_id)
        assert sell.trades and {t.fee_currency for t in sell.trades} == {"USDT"}
        after = await bn.fetch_balance()
        bought = mkt.filled + lim.filled
        base_fees = mkt.fee_cost + lim.fee_cost
        assert after["ETH"].total - before["ETH"].total == pytest.approx(
            bought - base_fees - sell.filled, rel=1e-9, abs=1e-12)
        assert before["USDT"].total - after["USDT"].total == pytest.approx(
            mkt.cost + lim.cost - sell.cost + sell.fee_cost, rel=1e-9)


async def test_binance_fees_in_bnb_when_the_discount_is_on() -> None:
    async with venues(bnb_discount=True) as (_, vs):
        bn = vs[Venue.BINANCE]
        bnb_before = (await bn.fetch_balance())["BNB"].total
        order = await market_buy(bn, "ETH/USDT", 30.0)
        assert order.trades and order.fee_currency == "BNB"
        for t in order.trades:
            assert t.fee_currency == "BNB"
            assert t.fee_cost == pytest.approx(t.cost * RATE * (1 - BNB_DISCOUNT) / BNB_USDT,
                                               abs=1e-8)  # stated to 8 decimals
            assert t.fee_quote == pytest.approx(t.fee_cost * BNB_USDT, rel=1e-9)  # valued
        bal = await bn.fetch_balance()
        assert bnb_before - bal["BNB"].total == pytest.approx(order.fee_cost, rel=1e-9)


def _journal_row(venue: Venue, t: Trade, run: str) -> dict[str, Any]:
    return dict(venue=str(venue), trade_id=t.id, client_order_id=t.client_order_id, run_id=run,
                symbol=t.symbol, side=str(t.side), price=t.price, amount=t.amount, cost=t.cost,
                fee=t.fee_cost, fee_currency=t.fee_currency, fx=None, position_id=None,
                ts=t.timestamp_ms / 1000)


@pytest.mark.parametrize("bnb", [False, True])
async def test_the_journal_reconciles_per_asset_after_buys(tmp_path: Path, bnb: bool) -> None:
    async with venues(bnb_discount=bnb) as (emu, vs):
        store = await SqliteStore.open(tmp_path / "j.sqlite3")
        try:
            run = "20260101T000000Z-live-p1-fee0"
            await store.create_run(run, "live", 1, "top10", "real", time.time())
            start = {str(v): {a: b.total for a, b in (await ex.fetch_balance()).items()}
                     for v, ex in vs.items()}
            await store.record_event(time.time(), run, EventKind.STARTING_BALANCES_RECORDED,
                                     start)
            orders: list[tuple[Venue, Order]] = []
            for venue, ex in vs.items():  # buys (the case that drifted), then a sell
                notional = 30.0 if venue is Venue.BINANCE else 40_000.0
                for side in (Side.BUY, Side.BUY, Side.SELL):
                    req = await limit(ex, SYMBOLS[venue], side, notional)
                    await ex.create_order(req)
                    emu.step()
                    orders.append((venue, await ex.fetch_order(None, SYMBOLS[venue],
                                                               req.client_order_id)))
            assert len({(v, o.id) for v, o in orders}) == len(orders)  # one id per order
            rows = [_journal_row(v, t, run) for v, o in orders for t in o.trades]
            assert rows and all(o.filled > 0 for _, o in orders)
            for row in rows:
                await store.record_fill(**row)
            charged = {r["fee_currency"] for r in rows if r["venue"] == "binance"}
            assert charged == ({"BNB"} if bnb else {"ETH", "USDT"})
            result = await reconcile_run(store, vs, run)
            assert result["ok"] is True, result
            assert result["drift"] == []
            # Booked in the quote, as before, the same fills drift on the base asset.
            quoted = [{**r, "fee_currency": r["symbol"].split("/")[1]} for r in rows]
            want = expected_changes([{k: str(v) for k, v in r.items()} for r in quoted])
            asset = "BNB" if bnb else "ETH"
            fees = sum(Decimal(str(r["fee"])) for r in rows
                       if r["venue"] == "binance" and r["fee_currency"] == asset)
            got = expected_changes([{k: str(v) for k, v in r.items()} for r in rows])
            assert want["binance"].get(asset, Decimal(0)) - got["binance"][asset] == fees > 0
        finally:
            await store.close()


def test_the_ledger_values_a_fee_in_another_asset_at_the_fill() -> None:
    """A base-asset fee is a USD cost fixed at the fill; the leg's base stays its
    filled quantity (the position is two equal legs), the fee is not marked again."""
    quoted, based = Ledger(), Ledger()
    fee_base = 0.01 * RATE
    quoted.apply_fill(Venue.BINANCE, "ETH", "USDT", Side.BUY, 0.01, 30.0, 30.0 * RATE, 1400.0)
    based.apply_fill(Venue.BINANCE, "ETH", "USDT", Side.BUY, 0.01, 30.0, fee_base, 1400.0,
                     fee_asset="ETH", fee_usd=fee_base * 3000.0)
    assert based.delta[(Venue.BINANCE, "ETH")] == quoted.delta[(Venue.BINANCE, "ETH")] == 0.01
    assert based.delta[(Venue.BINANCE, "USDT")] == -30.0
    assert based.fees_usd == pytest.approx(quoted.fees_usd)
    for mark in (3000.0, 3300.0):  # the base moves: the fee's value does not
        assert based.pnl_usd(1400.0, {Venue.BINANCE: {"ETH": mark}}) == pytest.approx(
            quoted.pnl_usd(1400.0, {Venue.BINANCE: {"ETH": mark}}))
    assert based.fees_by_asset[(Venue.BINANCE, "ETH")] == pytest.approx(fee_base)
    with pytest.raises(ValueError):
        Ledger().apply_fill(Venue.BINANCE, "ETH", "USDT", Side.BUY, 1, 1, 0.1, 1, fee_asset="BNB")
