"""Market data `real` (R-M8): books polled through ccxt from the emulator, traded on
paper venues. Real time (not fast): one short phase, plus the feed on its own."""
from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

from bot.app import build_service, real_venues
from core.clock import SystemClock
from core.commands import RunArgs
from core.domain.journal_kinds import EventKind
from core.domain.models import FX_SYMBOL, Venue
from core.venues.ccxt_market_data import DEPTH, CcxtMarketData
from tests.helpers.procs import arbops_env, run_cli, short_data_dir
from tests.venues.support import (
    BASES,
    assert_performance_measured,
    capture_venues,
    db_rows,
    emu_settings,
    emulator,
)


async def test_paper_phase_on_real_data_completes(tmp_path: Path) -> None:
    async with emulator(interval_s=0.1, autostep=True) as emu:
        settings = emu_settings(emu, tmp_path, baseline_warmup_s=1.0)
        service = await build_service(settings)
        cap = capture_venues(service)
        try:
            spec = service.plan_run(RunArgs(phase=1, data_source="real", duration_seconds=8,
                                            universe="top10"))
            assert spec.data_source == "real" and not spec.fast
            out = await asyncio.wait_for(service.run_phase(spec), 45)
        finally:
            await service.store.close()
        kpi = out.kpi
        assert kpi["final"] is True
        assert kpi["run"]["data_source"] == "real"
        assert kpi["run"]["mode"] == "paper"
        assert kpi["summary"]["stop_reason"] == "duration_elapsed"
        assert kpi["summary"]["exit_code"] == out.exit_code
        assert not kpi["summary"]["kill_switch_triggered"]
        assert kpi["guards"]["unhandled_errors"] == 0
        assert kpi["trading"]["still_open_on_venues"] == []
        # Real time: the loop ticked on polled books (~0.2 s poll), not a stepped sim.
        assert kpi["trading"]["ticks"] >= 10
        assert kpi["run"]["duration_seconds"] >= 8
        rec = kpi["reconciliation"]
        assert rec["ok"] is True, rec
        assert rec["problems"] == [] and rec["drift"] == []
        assert rec["open_orders"] == {"upbit": 0, "binance": 0}
        assert rec["run_id"] == out.run_id
        assert_performance_measured(kpi)
        # The KPI file on disk is the same final document.
        assert json.loads(out.kpi_path.read_text())["reconciliation"]["ok"] is True
        # The feed marked nothing down; the universe is the emulator's listed bases.
        assert cap.market.down == {}
        assert isinstance(cap.market, CcxtMarketData)
        run = db_rows(tmp_path, "SELECT * FROM runs WHERE run_id=?", (out.run_id,))[0]
        assert run["data_source"] == "real" and run["mode"] == "paper"
        assert run["status"] in ("completed", "failed")  # the gate may FAIL a short run
        events = db_rows(tmp_path, "SELECT kind FROM events WHERE run_id=?", (out.run_id,))
        kinds = {e["kind"] for e in events}
        assert {EventKind.STARTING_BALANCES_RECORDED, EventKind.RECONCILED} <= kinds
        # A paper run on real data is not a live run: no start-up recovery against venues.
        assert "recovery" not in kinds
        # Paper venues: nothing was sent to the (emulated) exchanges.
        assert all(not recs for recs in
                   (await _admin_orders(emu)).values())


async def _admin_orders(emu: object) -> dict[str, list[object]]:
    from tests.venues.support import admin

    return await admin(emu, "GET", "/admin/orders")  # type: ignore[arg-type]


async def test_ccxt_market_data_prepare_ranks_and_poll_builds_a_snapshot(tmp_path: Path) -> None:
    async with emulator(interval_s=0.1, autostep=False) as emu:
        settings = emu_settings(emu, tmp_path)
        venues = real_venues(settings)
        market = CcxtMarketData(venues, SystemClock(), 0.2)
        try:
            await market.prepare()
            stats = market.symbol_stats()
            # Every common KRW/USDT base of the emulator, USDT itself excluded (it is the FX).
            assert sorted(s.base for s in stats) == sorted(BASES)
            for s in stats:
                assert s.upbit_quote_volume_krw > 0 and s.binance_quote_volume_usdt > 0
                assert math.isfinite(s.spread_bps) and 0 <= s.spread_bps < 50
                assert s.depth_usd > 0
            # Ranked by the thinner venue's volume, largest first.
            keys = [min(s.upbit_quote_volume_krw / 1400.0, s.binance_quote_volume_usdt)
                    for s in stats]
            assert keys == sorted(keys, reverse=True)

            snap0 = await market.poll()  # nothing subscribed: the FX book only
            assert snap0 is not None and snap0.upbit == {} and snap0.binance == {}
            market.subscribe(["BTC", "ETH", "BTC"])
            snap = await market.poll()
            assert snap is not None
            assert snap.fx.symbol == FX_SYMBOL
            assert snap.fx.bids and snap.fx.asks and snap.fx.best_bid < snap.fx.best_ask
            assert 1000 < snap.fx.mid < 2000  # KRW per USDT
            assert set(snap.upbit) == {"BTC", "ETH"}
            assert set(snap.binance) == {"BTC", "ETH"}
            for base in ("BTC", "ETH"):
                ub, bb = snap.upbit[base], snap.binance[base]
                assert ub.symbol == f"{base}/KRW" and bb.symbol == f"{base}/USDT"
                assert 0 < len(ub.bids) <= DEPTH and 0 < len(bb.asks) <= DEPTH
                assert ub.best_bid < ub.best_ask and bb.best_bid < bb.best_ask
                # The premium is small in the emulator: Upbit KRW / FX is close to Binance.
                assert abs(ub.mid / snap.fx.mid / bb.mid - 1) < 0.05
                assert ub.seq == bb.seq == snap.seq
                # Stamped when they arrived (the gateway's stale-book check uses it).
                assert 0 <= snap.ts_ms - ub.timestamp_ms < 2000
                assert 0 <= snap.ts_ms - bb.timestamp_ms < 2000
            # Each poll is a new snapshot with a higher sequence; the emulator's books move.
            emu.step(5)
            snap2 = await market.poll()
            assert snap2 is not None and snap2.seq == snap.seq + 1
            assert snap2.upbit["BTC"].asks != snap.upbit["BTC"].asks
            assert market.down == {}
            # run() publishes to listeners and wait_next().
            seen = []
            market.add_listener(seen.append)
            task = asyncio.create_task(market.run())
            try:
                nxt = await asyncio.wait_for(market.wait_next(snap2.seq), 5)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            assert nxt.seq > snap2.seq and seen and market.latest() is not None
        finally:
            for ex in venues.values():
                await ex.close()


async def test_ccxt_market_data_marks_a_silent_venue_down_and_up(tmp_path: Path) -> None:
    async with emulator(interval_s=0.1, autostep=False) as emu:
        venues = real_venues(emu_settings(emu, tmp_path))
        market = CcxtMarketData(venues, SystemClock(), 0.2)
        try:
            await market.prepare()
            market.subscribe(["BTC"])
            emu.add_fault(venue="binance", kind="maintenance", count=None, path="/depth")
            snap = await market.poll()
            # Binance down: the snapshot still carries the FX and Upbit, Binance is left out.
            assert snap is not None and snap.binance == {} and set(snap.upbit) == {"BTC"}
            assert set(market.down) == {Venue.BINANCE} and Venue.BINANCE in market.down_since
            emu.clear_faults()
            emu.add_fault(venue="upbit", kind="maintenance", count=None, path="/orderbook")
            # Upbit down: no FX book, so no snapshot at all; Binance answers again.
            assert await market.poll() is None
            assert set(market.down) == {Venue.UPBIT}
            emu.clear_faults()
            snap = await market.poll()
            assert snap is not None and market.down == {} and market.down_since == {}
        finally:
            for ex in venues.values():
                await ex.close()


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_run_on_real_data_with_unreachable_venues_fails_cleanly() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with short_data_dir("avu") as d:
        env = arbops_env(d, {"UPBIT_API_BASE": url, "BINANCE_API_BASE": url})
        out = run_cli(["run", "--data-source", "real", "--duration-seconds", "5"], d, env,
                      timeout=60)
        assert out.returncode == 1, out.stderr[-2000:]
        assert "Traceback" not in out.stderr, out.stderr[-2000:]
        assert "upbit" in out.stderr
