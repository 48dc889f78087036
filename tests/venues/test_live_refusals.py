"""R-S1 through the CLI against the emulator: with a condition broken,
`arbops run --mode live` refuses with exit 2, names the condition, and nothing
reaches the venues."""
from __future__ import annotations

import time

import pytest

from bot.drill.emulator import start_emulator
from tests.helpers.procs import arbops_env, short_data_dir
from tests.venues.support import admin, emu_env
from tests.venues.test_reconcile import acli

LIVE = ["run", "--mode", "live", "--phase", "1", "--data-source", "real",
        "--duration-seconds", "30"]


@pytest.mark.parametrize(("broken", "extra_env", "named"), [
    ("not armed", {}, "arm"),
    ("ARBITRAGE_ENV is paper", {"ARBITRAGE_ENV": "paper"}, "env"),
    ("ack with a trailing space", {"LIVE_ARM_ACK": "I_UNDERSTAND_LIVE_RISK "}, "arm"),
    ("cap above 1000", {"LIVE_MAX_NOTIONAL_USD": "1000.01"}, "arm"),
])
async def test_live_refused_naming_the_condition_and_nothing_sent(
        broken: str, extra_env: dict[str, str], named: str) -> None:
    emu = await start_emulator(top_n=10)
    try:
        with short_data_dir("lrf") as d:
            env = {**emu_env(emu), "ARBITRAGE_ENV": "live"}
            if broken != "not armed":
                env.update({"LIVE_ARM_ACK": "I_UNDERSTAND_LIVE_RISK",
                            "LIVE_ARM_AT": str(int(time.time())),
                            "LIVE_MAX_NOTIONAL_USD": "50"})
            env.update(extra_env)
            rc, out, err = await acli(LIVE, d, arbops_env(d, env))
            assert rc == 2, (broken, out, err)
            assert "LIVE refused" in err and named in err, (broken, err)
            assert "Traceback" not in err
            orders = await admin(emu, "GET", "/admin/orders")
            assert orders["upbit"] == [] and orders["binance"] == [], broken
    finally:
        await emu.stop()
