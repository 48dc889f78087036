"""A kill during a live phase while both venues answer 429 (Retry-After 2 s) to every
request for 4 s (R-K1, R-K6): the kill waits as the venues say, keeps flattening past
its close deadline, and ends flat once they answer again - the emulator holds no open
order and the journal no open position."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_service
from bot.drill.emulator import start_emulator
from core.commands import RunArgs
from core.config.settings import Settings
from core.safety.redis_state import FileEngineLock
from core.trading.phase_run import PhaseRun
from tests.venues.support import admin, db_rows

CAP = 20.0


@pytest.mark.timeout(180)
async def test_a_kill_in_a_429_storm_ends_flat_once_the_venues_answer(tmp_path: Path) -> None:
    emu = await start_emulator(top_n=10, jump_rate_per_min=12.0)
    try:
        settings = Settings(
            _env_file=None, data_dir=tmp_path, arbitrage_env="live",  # type: ignore[call-arg]
            upbit_api_base=emu.url, binance_api_base=emu.url,
            upbit_access_key=emu.keys["upbit"][0], upbit_secret_key=emu.keys["upbit"][1],
            binance_api_key=emu.keys["binance"][0], binance_api_secret=emu.keys["binance"][1],
            telegram_bot_token="424242:AAdrillTokenNotRealOnlyForTheEmulator0",
            telegram_chat_id=1, telegram_api_base=emu.url,
            upbit_withdrawals_disabled_attested=True, real_poll_interval_s=0.2,
            live_arm_ack="I_UNDERSTAND_LIVE_RISK", live_arm_at=str(int(time.time())),
            live_max_notional_usd=str(CAP), guard_memory_anomaly_mb=4000.0,
            guard_memory_kill_mb=4000.0, guard_rss_growth_mb=4000.0,
            guard_rate_limit_hits=1000, guard_exchange_errors_per_min=1000)
        service = await build_service(settings)
        service.safety.lock = FileEngineLock(data_dir=tmp_path)
        storm: dict[str, Any] = {}

        async def kill_in_a_storm() -> None:
            emu.add_fault(venue="both", kind="http_429", count=None, seconds=2)
            storm["from"] = time.monotonic()
            await service.kill("in a 429 storm", "tester")
            await asyncio.sleep(4.0)
            emu.clear_faults()
            storm["until"] = time.monotonic()

        def on_progress(run: PhaseRun) -> None:
            if "task" in storm or run.engine is None:
                return
            if any(p["state"] == "open" for p in run.engine.open_positions()):
                storm["task"] = asyncio.ensure_future(kill_in_a_storm())

        try:
            report = await service.preflight(dry_run=False)
            assert report["summary"]["ready_for_live"], report["blocking"]
            await service.ladder_override(1, "tester", "no paper rung in this test")
            spec = service.plan_run(RunArgs(phase=1, mode="live", data_source="real",
                                            duration_seconds=90, max_notional_usd=CAP))
            outcome = await asyncio.wait_for(service.run_phase(spec, on_progress), 150)
            assert "task" in storm, "no position opened: the storm never came"
            await storm["task"]
        finally:
            await service.close()
        kpi = outcome.kpi
        steps: dict[str, list[dict[str, Any]]] = {}
        for step in kpi["kill"]["steps"]:
            steps.setdefault(step["step"], []).append(step)
        assert kpi["summary"]["kill_switch_triggered"] is True
        assert steps["cancel_all"][-1]["ok"], steps["cancel_all"]
        assert steps["verify_flat"][-1]["ok"], steps["verify_flat"]
        assert kpi["trading"]["still_open_on_venues"] == []
        state = await admin(emu, "GET", "/admin/orders")
        still_open = [o for recs in state.values() for o in recs
                      if o.get("status") in ("open", "NEW", "wait", "PARTIALLY_FILLED")]
        assert still_open == [], still_open
        assert db_rows(tmp_path, "SELECT position_id FROM positions WHERE state IN "
                                 "('entering','open','exiting')") == []
        assert db_rows(tmp_path, "SELECT client_order_id FROM order_intents WHERE state IN "
                                 "('PENDING','OPEN','UNKNOWN')") == []
    finally:
        await emu.stop()
