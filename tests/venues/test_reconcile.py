"""Reconciliation (runbook §5.2): the journal against the venues, in-process on paper
and ccxt->emulator venues, and the `arbops reconcile` / `arbops balance` CLI."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_service
from core.commands import RunArgs
from core.config.settings import Settings
from core.domain.journal_kinds import EventKind
from core.domain.models import OrderRequest, OrderType, Side, Venue
from core.journal.sqlite_store import SqliteStore
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.reconcile import expected_changes, reconcile_run
from core.venues.recovery import recover_live
from tests.helpers.procs import arbops_env, run_cli, short_data_dir
from tests.venues.support import SYMBOL, admin, capture_venues, emu_env, emulator

ARBOPS = str(Path(sys.executable).with_name("arbops"))


# --- expected_changes: pure arithmetic ------------------------------------------------
def test_expected_changes_signs_and_fees() -> None:
    fills = [
        {"venue": "upbit", "symbol": "BTC/KRW", "side": "buy", "amount": "0.01",
         "cost": "1300000", "fee": "650"},
        {"venue": "upbit", "symbol": "BTC/KRW", "side": "sell", "amount": "0.004",
         "cost": "530000", "fee": "265"},
        {"venue": "binance", "symbol": "BTC/USDT", "side": "sell", "amount": "0.01",
         "cost": "950", "fee": "0.95"},
    ]
    got = expected_changes(fills)
    assert got == {
        "upbit": {"BTC": Decimal("0.006"), "KRW": Decimal("-1300650") + Decimal("529735")},
        "binance": {"BTC": Decimal("-0.01"), "USDT": Decimal("949.05")},
    }


# --- paper venues after a fast sim run -------------------------------------------------
async def fast_paper_run(data_dir: Path) -> tuple[Any, Any, Any]:
    settings = Settings(_env_file=None, data_dir=data_dir, sim_fast=True)  # type: ignore[call-arg]
    service = await build_service(settings, fast=True)
    cap = capture_venues(service)
    spec = service.plan_run(RunArgs(phase=1, duration_seconds=60, seed=3, universe="top10"))
    out = await service.run_phase(spec)
    return service, cap, out


async def test_reconcile_paper_run_ok_then_drift_then_open_order(tmp_path: Path) -> None:
    service, cap, out = await fast_paper_run(tmp_path)
    try:
        store, venues = service.store, cap.venues
        assert out.kpi["reconciliation"]["ok"] is True, out.kpi["reconciliation"]
        assert await store.fills(out.run_id), "the run traded nothing: weak reconciliation"
        result = await reconcile_run(store, venues, out.run_id)
        assert result["ok"] is True, result
        # The run's own reconciliation adds the dust the engine named (none here).
        in_run = {**out.kpi["reconciliation"]}
        assert in_run.pop("dust") == out.kpi["trading"]["dust"] == []
        assert result == in_run

        # Drift: base appears on Binance that no fill explains.
        base = next(f["symbol"].split("/")[0] for f in await store.fills(out.run_id)
                    if f["venue"] == "binance")
        venues[Venue.BINANCE].fund(base, 0.5)
        result = await reconcile_run(store, venues, out.run_id)
        assert result["ok"] is False
        assert result["drift"] == [{
            "venue": "binance", "asset": base, "journal": result["drift"][0]["journal"],
            "venue_change": result["drift"][0]["venue_change"],
            "difference": result["drift"][0]["difference"]}]
        assert Decimal(result["drift"][0]["difference"]) == pytest.approx(Decimal("0.5"),
                                                                           rel=Decimal("1e-9"))
        assert "1 balance drift(s) between journal and venues" in result["problems"]
        venues[Venue.BINANCE].fund(base, -0.5)
        # KRW dust within the tolerance (20 KRW) is not a drift; 25 KRW is.
        venues[Venue.UPBIT].fund("KRW", 15.0)
        assert (await reconcile_run(store, venues, out.run_id))["ok"] is True
        venues[Venue.UPBIT].fund("KRW", 10.0)
        result = await reconcile_run(store, venues, out.run_id)
        assert [(d["venue"], d["asset"]) for d in result["drift"]] == [("upbit", "KRW")]
        venues[Venue.UPBIT].fund("KRW", -25.0)

        # An open order left on a venue is reported (locked funds are not a drift).
        up = venues[Venue.UPBIT]
        sym = f"{base}/KRW"
        await store.record_intent("left-open", out.run_id, "upbit", sym, "buy", "limit",
                                  0.001, None, None, "entry", None, time.time())
        book = await up.fetch_order_book(sym, 5)
        await up.create_order(OrderRequest(sym, Side.BUY, OrderType.LIMIT,
                                           max(10_000 / book.best_bid, 0.001), "left-open",
                                           book.best_bid * 0.95))
        result = await reconcile_run(store, venues, out.run_id)
        assert result["ok"] is False
        assert result["open_orders"] == {"upbit": 1, "binance": 0}
        assert result["problems"] == ["upbit: 1 open order(s)"]
        assert result["drift"] == []
    finally:
        await service.store.close()


async def test_reconcile_reports_drift_in_an_asset_without_fills(tmp_path: Path) -> None:
    service, cap, out = await fast_paper_run(tmp_path)
    try:
        traded = {(f["venue"], f["symbol"].split("/")[0]) for f in
                  await service.store.fills(out.run_id)}
        start = (await service.store.events(run_id=out.run_id,
                                            kind="starting_balances_recorded"))[0]["payload"]
        idle = next(a for a in sorted(start["binance"])
                    if a != "USDT" and ("binance", a) not in traded)
        cap.venues[Venue.BINANCE].fund(idle, 1.0)  # e.g. a deposit, or a fill not journaled
        result = await reconcile_run(service.store, cap.venues, out.run_id)
        assert result["ok"] is False
        assert [(d["venue"], d["asset"]) for d in result["drift"]] == [("binance", idle)]
    finally:
        await service.store.close()


def test_second_paper_run_in_a_data_dir_journals_its_fills() -> None:
    with short_data_dir("avf") as d:
        env = arbops_env(d, {"ARBOPS_SIM_FAST": "1"})
        for _ in range(2):  # same seed: the same trades, in two processes
            out = run_cli(["run", "--duration-seconds", "30", "--universe", "top10",
                           "--seed", "5"], d, env, timeout=90)
            assert out.returncode in (0, 1), out.stderr[-3000:]
        import sqlite3

        con = sqlite3.connect(d / "arbops.sqlite3")
        try:
            runs = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY rowid")]
            counts = [con.execute("SELECT count(*) FROM fills WHERE run_id=?", (r,)).fetchone()[0]
                      for r in runs]
            recon = [json.loads(con.execute(
                "SELECT json FROM kpi_snapshots WHERE run_id=? AND final=1", (r,)).fetchone()[0]
            )["reconciliation"]["ok"] for r in runs]
        finally:
            con.close()
        assert len(runs) == 2 and counts[0] > 0
        assert recon == [True, True]
        assert counts[1] == counts[0], counts


async def test_reconcile_reports_missing_start_balances_and_open_positions(
        tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "j.sqlite3")
    try:
        await store.create_run("r1", "live", 1, "top10", "real", time.time())
        await store.upsert_position(position_id="p1", run_id="r1", base="BTC",
                                    direction="sell_upbit", qty=0.01, state="open",
                                    opened_at=time.time(), entry_premium_bps=1.0,
                                    expected_edge_bps=1.0, break_even_bps=1.0)
        result = await reconcile_run(store, {}, "r1")
        assert result["ok"] is False
        assert "no start balances recorded for this run" in result["problems"]
        assert "1 position(s) not flat in the journal" in result["problems"]
        assert result["open_positions"] == 1
    finally:
        await store.close()


# --- ccxt venues against the emulator ----------------------------------------------------
async def test_reconcile_ccxt_venues_against_emulator(tmp_path: Path) -> None:
    """A 'live' run journaled by hand on the emulator: trade, recover its fills,
    reconcile ok; then extra funds (POST /admin/fund) are a drift on that venue."""
    async with emulator(autostep=False) as emu:
        store = await SqliteStore.open(tmp_path / "j.sqlite3")
        venues = {v: CcxtExchange(v, emu.url, *emu.keys[str(v)], fee)
                  for v, fee in ((Venue.UPBIT, 5.0), (Venue.BINANCE, 10.0))}
        try:
            for ex in venues.values():
                ex.ccxt.enableRateLimit = False
                await ex.load_markets()
            run = "20260101T000000Z-live-p1-cafe"
            await store.create_run(run, "live", 1, "top10", "real", time.time())
            start = {str(v): {a: b.total for a, b in (await ex.fetch_balance()).items()}
                     for v, ex in venues.items()}
            await store.record_event(time.time(), run, EventKind.STARTING_BALANCES_RECORDED, start)
            # One leg per venue, journaled, sent, filled on the next emulator book.
            for v, side in ((Venue.UPBIT, Side.SELL), (Venue.BINANCE, Side.BUY)):
                cid = f"leg-{v}"
                await store.record_intent(cid, run, str(v), SYMBOL[str(v)], str(side),
                                          "limit", 0.002, None, None, "entry", "pos-1",
                                          time.time())
                book = await venues[v].fetch_order_book(SYMBOL[str(v)], 5)
                price = book.best_ask * 1.002 if side is Side.BUY else book.best_bid * 0.998
                await venues[v].create_order(OrderRequest(SYMBOL[str(v)], side,
                                                          OrderType.LIMIT, 0.002, cid, price))
                await store.update_intent(cid, "OPEN")
            emu.step(2)
            report = await recover_live(store, venues, time.time())  # records the fills
            assert report.complete and {r["state"] for r in report.resolved} == {"FILLED"}
            assert len(await store.fills(run)) == 2
            result = await reconcile_run(store, venues, run)
            assert result["ok"] is True, result
            assert result["open_orders"] == {"upbit": 0, "binance": 0}

            await admin(emu, "POST", "/admin/fund",
                        {"venue": "upbit", "asset": "BTC", "amount": 0.25})
            result = await reconcile_run(store, venues, run)
            assert result["ok"] is False
            assert [(d["venue"], d["asset"]) for d in result["drift"]] == [("upbit", "BTC")]
            assert float(result["drift"][0]["difference"]) == pytest.approx(0.25)
            await admin(emu, "POST", "/admin/fund",
                        {"venue": "binance", "asset": "USDT", "amount": -1.0})
            result = await reconcile_run(store, venues, run)
            assert sorted((d["venue"], d["asset"]) for d in result["drift"]) == [
                ("binance", "USDT"), ("upbit", "BTC")]
            # A venue that cannot be read is a problem, not a pass.
            emu.add_fault(venue="binance", kind="maintenance", count=None, path="/account")
            result = await reconcile_run(store, venues, run)
            assert result["ok"] is False
            assert any(p.startswith("binance: cannot read the venue") for p in
                       result["problems"])
        finally:
            for ex in venues.values():
                await ex.close()
            await store.close()


# --- the CLI ----------------------------------------------------------------------------
def test_cli_reconcile_and_balance_after_a_fast_paper_run() -> None:
    with short_data_dir("avr") as d:
        env = arbops_env(d, {"ARBOPS_SIM_FAST": "1"})
        empty = run_cli(["reconcile"], d, env)
        assert empty.returncode == 1, empty
        assert "no run to reconcile yet" in empty.stderr
        run = run_cli(["run", "--duration-seconds", "30", "--universe", "top10",
                       "--seed", "5"], d, env, timeout=90)
        assert run.returncode in (0, 1), run.stderr[-3000:]  # the gate may fail a short run
        assert "KPI JSON" in run.stdout

        rec = run_cli(["reconcile"], d, env)
        assert rec.returncode == 0, rec.stderr
        assert "reconciliation of run" in rec.stdout and ": OK" in rec.stdout
        assert "open orders on the venues: upbit 0, binance 0" in rec.stdout
        rec_json = run_cli(["reconcile", "--json"], d, env)
        assert rec_json.returncode == 0, rec_json.stderr
        data = json.loads(rec_json.stdout)
        assert data["ok"] is True and data["drift"] == [] and data["problems"] == []
        assert data["source"] == "recorded at the end of the paper run"
        assert data["run_id"].endswith(tuple("0123456789abcdef")) and "-paper-p1-" in data[
            "run_id"]

        bal = run_cli(["balance"], d, env)
        assert bal.returncode == 0, bal.stderr
        assert bal.stdout.startswith("balances (paper")
        assert data["run_id"] in bal.stdout
        bal_json = run_cli(["balance", "--json"], d, env)
        assert bal_json.returncode == 0, bal_json.stderr
        b = json.loads(bal_json.stdout)
        assert b["run_id"] == data["run_id"]
        assert set(b["balances_at_start"]) == {"upbit", "binance"}
        assert b["balances_at_start"]["binance"]["USDT"] == pytest.approx(20_000.0)
        assert b["balances_at_start"]["upbit"]["KRW"] > 1e7


async def test_cli_reconcile_and_balance_of_a_live_run_against_the_emulator() -> None:
    """A live run's reconciliation is re-checked against the venues now (here: the
    emulator, reached with its env and fake keys), and `balance` reads them."""
    async with emulator(autostep=False) as emu:
        with short_data_dir("avl") as d:
            store = await SqliteStore.open(d / "arbops.sqlite3")
            try:
                run = "20260101T000000Z-live-p1-f00d"
                await store.create_run(run, "live", 1, "top10", "real", time.time())
                bal = await admin(emu, "GET", "/admin/balances")
                await store.record_event(time.time(), run, EventKind.STARTING_BALANCES_RECORDED, {
                    v: {a: x["total"] for a, x in assets.items()} for v, assets in bal.items()})
                await store.finish_run(run, time.time(), "completed", "duration_elapsed", 0,
                                       None)
            finally:
                await store.close()
            env = arbops_env(d, emu_env(emu))
            rc, out, err = await acli(["reconcile", "--json"], d, env)
            assert rc == 0, err
            data = json.loads(out)
            assert data["ok"] is True and data["source"] == "venues now"
            assert data["recovery"]["complete"] is True
            await admin(emu, "POST", "/admin/fund",
                        {"venue": "binance", "asset": "USDT", "amount": 7.0})
            # A deposit the journal knows nothing of is drift (exit 1), named.
            rc, out, err = await acli(["reconcile"], d, env)
            assert rc == 1 and "(venues now): DRIFT" in out, (out, err)
            assert "binance USDT: journal 0 vs venue 7 (diff 7)" in out, out
            rc, out, err = await acli(["balance", "--json"], d, env)
            assert rc == 0, err
            b = json.loads(out)
            assert b["source"] == "venues now"
            assert b["binance"]["USDT"]["free"] == pytest.approx(20_007.0)
            assert b["upbit"]["BTC"]["free"] > 0
            rc, out, err = await acli(["balance"], d, env)
            assert rc == 0 and "binance  USDT" in out, (out, err)


async def acli(args: list[str], d: Path, env: dict[str, str], timeout: float = 60
               ) -> tuple[int, str, str]:
    """`arbops args` as a subprocess without blocking the loop (the emulator runs on it)."""
    proc = await asyncio.create_subprocess_exec(
        ARBOPS, *args, cwd=str(d), env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()

