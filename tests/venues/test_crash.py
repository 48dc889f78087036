"""Crash safety (R-S6, issue #4): kill -9 the engine at seeded random points of the
order path, restart it, and check against the emulator's own records that no
order was sent twice, every order is accounted for in the journal, and the
journal's fills equal the emulator's balance changes.

`make test` runs CRASH_POINTS (10) crashes; `make soak` runs ARBOPS_SOAK_CRASHES (50+).
"""
from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.drill.emulator import start_emulator
from core.venues.reconcile import expected_changes
from tests.venues.support import admin

CRASHES = int(os.environ.get("ARBOPS_SOAK_CRASHES", "10"))
SEED = int(os.environ.get("ARBOPS_CRASH_SEED", "20261125"))
POINTS = ("before_send", "after_send", "after_fill")
ROOT = Path(__file__).resolve().parents[2]


async def harness(data_dir: Path, url: str, seconds: float, crash_at: str | None
                  ) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.venues.crash_harness", str(data_dir), url, str(seconds),
        *([crash_at] if crash_at else []), cwd=str(ROOT), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), seconds + 90)
    return proc.returncode or 0, (out + err).decode()[-3000:]


def journal(data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    con = sqlite3.connect(f"file:{data_dir / 'arbops.sqlite3'}?mode=ro", uri=True)
    con.row_factory = sqlite3.Row
    try:
        intents = [dict(r) for r in con.execute("SELECT * FROM order_intents")]
        fills = [dict(r) for r in con.execute("SELECT * FROM fills")]
    finally:
        con.close()
    return intents, fills


@pytest.mark.timeout(900)
async def test_crash_points_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    plan = [(rng.choice(POINTS), rng.randint(1, 2)) for _ in range(CRASHES)]
    # A jumpy premium: entries (and so crash points) come within seconds.
    emu = await start_emulator(top_n=10, seed=SEED % 1000, jump_rate_per_min=12.0)
    try:
        start = await admin(emu, "GET", "/admin/balances")
        crashed = 0
        for i, (point, n) in enumerate(plan):
            code, log = await harness(tmp_path, emu.url, 10.0, f"{point}:{n}")
            # -9: it died where told; 0: the run ended before reaching that point.
            assert code in (-9, 0), (i, point, n, code, log)
            crashed += code == -9
        code, log = await harness(tmp_path, emu.url, 8.0, None)  # recover, trade, end
        assert code == 0, log
        assert crashed >= CRASHES // 2, f"only {crashed} of {CRASHES} runs reached their point"

        orders = (await admin(emu, "GET", "/admin/orders"))
        intents, fills = journal(tmp_path)
        by_cid = {i["client_order_id"]: i for i in intents}
        received = [o for venue in ("upbit", "binance") for o in orders[venue]]
        # No order sent twice: every client id reached a venue at most once.
        dupes = [c for c, k in Counter(o["client_order_id"] for o in received).items() if k > 1]
        assert not dupes, dupes
        # Every order the venues saw is in the journal, and resolved.
        for o in received:
            intent = by_cid.get(o["client_order_id"])
            assert intent is not None, o
            assert intent["state"] in ("FILLED", "CANCELED", "REJECTED"), (intent, o)
        unresolved = [i for i in intents if i["state"] in ("PENDING", "UNKNOWN", "OPEN")]
        assert not unresolved, unresolved
        # The journal's fills equal the venues' balance changes, asset by asset.
        end = await admin(emu, "GET", "/admin/balances")
        want = expected_changes(fills)
        for venue, assets in want.items():
            for asset, change in assets.items():
                got = Decimal(repr(end[venue][asset]["total"])) - Decimal(
                    repr(start[venue].get(asset, {"total": 0.0})["total"]))
                tol = Decimal("0.05") if asset in ("USDT",) else (
                    Decimal("50") if asset == "KRW" else abs(got) * Decimal("1e-6") + Decimal("1e-8"))
                assert abs(got - change) <= tol, (venue, asset, got, change)
        assert fills, "the harness never traded"
    finally:
        await emu.stop()
