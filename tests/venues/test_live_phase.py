"""R-S1/R-S2 positive path: with ARBITRAGE_ENV=live, a valid env ARM, a passing
preflight and the ladder satisfied, a live phase 1 trades against the emulator -
and no order above the armed cap reaches it; the ARM is used up."""
from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_service
from bot.cli.control import status_lines
from bot.drill.emulator import start_emulator
from core.commands import RunArgs
from core.config.settings import Settings
from core.errors import ServiceError
from core.safety.redis_state import FileEngineLock
from tests.venues.support import admin

CAP = 20.0


@pytest.mark.timeout(180)
async def test_live_phase_1_trades_within_the_armed_cap(tmp_path: Path) -> None:
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
            live_max_notional_usd=str(CAP), guard_memory_anomaly_mb=4000.0)
        service = await build_service(settings)
        service.safety.lock = FileEngineLock(data_dir=tmp_path)
        try:
            report = await service.preflight(dry_run=False)
            assert report["summary"]["ready_for_live"], report["blocking"]
            await service.ladder_override(1, "tester", "no paper rung in this test")
            spec = service.plan_run(RunArgs(phase=1, mode="live", data_source="real",
                                            duration_seconds=15, max_notional_usd=CAP))
            running = asyncio.ensure_future(service.run_phase(spec))
            # While it runs, status shows each venue's book and order streams up.
            shown: dict[str, Any] = {}
            async with asyncio.timeout(30):
                while not (shown and all(all(k.values()) and len(k) == 2
                                         for k in shown.values())):
                    await asyncio.sleep(0.1)
                    shown = ((service.status().get("run") or {}).get("venue_streams") or {})
            assert set(shown) == {"upbit", "binance"}
            assert "  streams: binance books up, orders up · upbit books up, orders up" in \
                status_lines({**service.status(), "engine_running": True}, settings)
            outcome = await running
            assert outcome.kpi["run"]["mode"] == "live"
            # Own orders came from the private streams: no order missed by them, and
            # the engine read none over REST.
            orders_kpi = outcome.kpi["order_streams"]
            assert all(orders_kpi[v]["missed"] == 0 and orders_kpi[v]["rest_reads"] == 0
                       for v in ("upbit", "binance")), orders_kpi
            if outcome.kpi["trading"]["entries"]:
                assert all(orders_kpi[v]["answers"] > 0 for v in ("upbit", "binance"))
            assert outcome.kpi["reconciliation"]["ok"], outcome.kpi["reconciliation"]
            # Books came from the venues' websocket streams, stamped by the venues.
            streams = outcome.kpi["market_data"]["streams"]
            assert all(streams[v]["events"] > 0 for v in ("upbit", "binance")), streams
            assert outcome.kpi["performance"]["book_to_legs_sent_ms"]["max"] >= 0
            # Live, the commit, the sends and the acks ran in send tasks, off the tick.
            if outcome.kpi["trading"]["entries"]:
                assert outcome.kpi["performance"]["send_task_ms"]["max"] > 0
            # The ARM was used up by this start: the next live phase is refused.
            with pytest.raises(ServiceError) as refused:
                await service.run_phase(spec)
            assert refused.value.code == 2 and "arm" in str(refused.value)
        finally:
            await service.safety.close()
            await service.store.close()
        orders = await admin(emu, "GET", "/admin/orders")
        state = await admin(emu, "GET", "/admin/state")
        fx = Decimal(str(state["fx"]))
        sent = 0
        for venue, recs in orders.items():
            for o in recs:
                p = o["params"]
                if venue == "binance":
                    notional = Decimal(p["quantity"]) * Decimal(p["price"])
                else:
                    notional = Decimal(p["volume"]) * Decimal(p["price"]) / fx
                assert notional <= Decimal(str(CAP)) * Decimal("1.01"), (venue, p, notional)
                sent += 1
        assert sent > 0, "the live phase never traded"
    finally:
        await emu.stop()
