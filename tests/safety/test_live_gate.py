"""R-S1 live start gate: each condition alone refuses, naming itself; errors refuse too.

The "all good" world is real: a SQLite journal with a passed paper phase 1, a command
ARM, a stored ready preflight, the file lock held, and CcxtExchange adapters (never
contacted). Each test breaks exactly one thing.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.clock import ManualClock
from core.domain.models import Venue
from core.journal.sqlite_store import SqliteStore
from core.safety.failure import Failure
from core.safety.ladder import LadderDecision
from core.safety.live_gate import (
    CONDITIONS,
    PREFLIGHT_FLAG,
    ArmView,
    LiveStartContext,
    check_live_start,
)
from core.safety.live_safety import LiveSafety
from core.safety.redis_state import FileEngineLock
from core.trading.state import HALT_FLAG
from core.venues.ccxt_exchange import CcxtExchange
from core.venues.paper_exchange import PaperExchange
from core.venues.sim_market import SimMarket
from tests.safety.safety_support import make_settings

NOW = 1_767_225_600.0
PASS = json.dumps({"result": "PASS"})


class World:
    def __init__(self, tmp: Path, store: SqliteStore, venues: dict[Venue, Any]) -> None:
        self.tmp = tmp
        self.store = store
        self.clock = ManualClock(NOW)
        self.venues = venues
        self.settings = make_settings(tmp)
        self.safety = LiveSafety(self.settings, store, self.clock,
                                 lock=FileEngineLock(tmp / "lockdir"))

    async def setup(self) -> None:
        await self.store.create_run("p1", "paper", 1, "top10", "sim", NOW - 900)
        await self.store.finish_run("p1", NOW - 600, "completed", None, 0, None, gate_json=PASS)
        await self.safety.acquire_lock()
        await self.safety.arm("100", "op")
        await self.store_preflight(ts=NOW, ready=True)

    async def store_preflight(self, ts: float, ready: bool, dry_run: bool = False) -> None:
        rec = {"ts": ts, "ready_for_live": ready, "dry_run": dry_run, "blocking": []}
        await self.store.set_flag(PREFLIGHT_FLAG, json.dumps(rec), ts)

    async def check(self, phase: int = 1, notional: float = 50.0,
                    venues: Any = "default") -> list[Failure]:
        return await self.safety.check_live_start(
            phase, notional, self.venues if venues == "default" else venues)


@contextlib.asynccontextmanager
async def world(tmp: Path) -> AsyncIterator[World]:
    store = await SqliteStore.open(tmp / "arbops.sqlite3")
    venues = {Venue.UPBIT: CcxtExchange(Venue.UPBIT, "http://127.0.0.1:9", "k", "s", 5.0),
              Venue.BINANCE: CcxtExchange(Venue.BINANCE, "http://127.0.0.1:9", "k", "s", 10.0)}
    w = World(tmp, store, venues)
    try:
        await w.setup()
        yield w
    finally:
        await w.safety.release_lock()
        for ex in venues.values():
            await ex.close()
        await store.close()


def names(failures: list[Failure]) -> set[str]:
    return {f.name for f in failures}


async def test_all_good_passes(tmp_path):
    async with world(tmp_path) as w:
        assert await w.check() == []


async def test_env_not_live(tmp_path):
    async with world(tmp_path) as w:
        w.safety.settings = make_settings(tmp_path, arbitrage_env="paper")
        f = await w.check()
        assert names(f) == {"env"} and "ARBITRAGE_ENV=paper" in f[0].message


@pytest.mark.parametrize("breaker,expected", [
    ("disarm", {"arm_missing", "notional_cap"}), ("expire", {"arm_age"}),
    ("consume", {"arm_missing", "notional_cap"}),
])
async def test_arm_conditions(tmp_path, breaker, expected):
    async with world(tmp_path) as w:
        if breaker == "disarm":
            await w.safety.disarm("op")
        elif breaker == "expire":
            w.clock.advance(601)
            await w.store_preflight(ts=w.clock.time(), ready=True)
        else:
            await w.safety.consume_arm("run-x")
        # without any ARM there is no cap to compare with either
        assert names(await w.check()) == expected


async def test_env_arm_consumed_value_refused(tmp_path):
    async with world(tmp_path) as w:
        await w.safety.disarm("op")
        w.safety.settings = make_settings(tmp_path, live_arm_ack="I_UNDERSTAND_LIVE_RISK",
                                          live_arm_at=str(int(NOW)), live_max_notional_usd="100")
        assert await w.check() == []
        await w.safety.consume_arm("run-1")
        assert names(await w.check()) == {"arm_consumed"}


@pytest.mark.parametrize("ts,ready,dry,missing", [
    (NOW - 1801, True, False, False), (NOW, False, False, False), (NOW, True, True, False),
    (NOW, True, False, True),
])
async def test_preflight_condition(tmp_path, ts, ready, dry, missing):
    async with world(tmp_path) as w:
        if missing:
            await w.store.clear_flag(PREFLIGHT_FLAG)
        else:
            await w.store_preflight(ts=ts, ready=ready, dry_run=dry)
        assert names(await w.check()) == {"preflight"}


async def test_preflight_1800s_old_still_ok(tmp_path):
    async with world(tmp_path) as w:
        await w.store_preflight(ts=NOW - 1800, ready=True)
        assert await w.check() == []


async def test_notional_over_cap(tmp_path):
    async with world(tmp_path) as w:
        assert await w.check(notional=100.0) == []
        f = await w.check(notional=100.01)
        assert names(f) == {"notional_cap"} and "$100.01" in f[0].message


@pytest.mark.parametrize("how", ["sqlite", "memory"])
async def test_halted(tmp_path, how):
    async with world(tmp_path) as w:
        if how == "sqlite":
            await w.store.set_flag(HALT_FLAG, "HALTED:kill (by op)", NOW)
        else:
            w.safety.state_probe = lambda: "watchdog: heartbeat"
        assert names(await w.check()) == {"halted"}


@pytest.mark.parametrize("status,gate,ended", [
    ("running", None, False), ("killed", None, True), ("stopped", None, True),
    ("failed", None, True),
])
async def test_last_run_unclean_until_reconciled(tmp_path, status, gate, ended):
    async with world(tmp_path) as w:
        await w.store.create_run("r2", "paper", 1, "top10", "sim", NOW - 100)
        if ended:
            await w.store.finish_run("r2", NOW - 50, status, "x", 1, None, gate_json=gate)
        f = await w.check()
        assert names(f) == {"last_run"} and "r2" in f[0].message
        await w.store.record_event(NOW - 2, "r2", "reconciled",
                                   {"ok": False, "problems": ["BTC drift"]})
        assert names(await w.check()) == {"last_run"}  # a drift does not clear it
        await w.store.record_event(NOW - 1, "r2", "reconciled", {"ok": True, "problems": []})
        assert await w.check() == []


async def test_failed_gate_is_a_clean_end(tmp_path):
    async with world(tmp_path) as w:
        await w.store.create_run("r2", "paper", 2, "top20", "sim", NOW - 100)
        await w.store.finish_run("r2", NOW - 50, "failed", None, 1, None,
                                 gate_json=json.dumps({"result": "FAIL"}))
        assert await w.check() == []


async def test_ladder(tmp_path):
    async with world(tmp_path) as w:
        f = await w.check(phase=2)
        assert names(f) == {"ladder"} and "LIVE phase 1" in f[0].message
        await w.safety.override(2, "admin:1")
        assert await w.check(phase=2) == []


async def test_lock_not_held(tmp_path):
    async with world(tmp_path) as w:
        await w.safety.release_lock()
        assert names(await w.check()) == {"instance_lock"}


@pytest.mark.parametrize("kind", ["paper", "object", "missing"])
async def test_venues_must_be_real(tmp_path, kind):
    async with world(tmp_path) as w:
        if kind == "paper":
            market = SimMarket(seed=1, n_symbols=3, clock=w.clock)
            fake = {v: PaperExchange(v, market, w.clock, 5.0) for v in Venue}
        elif kind == "object":
            fake = {Venue.UPBIT: w.venues[Venue.UPBIT], Venue.BINANCE: object()}
        else:
            fake = {Venue.UPBIT: w.venues[Venue.UPBIT]}
        f = await w.check(venues=fake)
        assert names(f) == {"venues"}


async def test_exception_while_checking_is_a_refusal(tmp_path):
    async with world(tmp_path) as w:
        real_get = w.store.get_flag

        async def broken(key: str) -> str | None:
            if key == PREFLIGHT_FLAG:
                raise OSError("disk I/O error")
            return await real_get(key)

        w.store.get_flag = broken  # type: ignore[method-assign]
        f = await w.check()
        assert names(f) == {"preflight"}
        assert "error while checking: OSError: disk I/O error" in f[0].message


async def test_every_condition_raising_is_named(tmp_path):
    """A context whose every probe raises: one refusal per condition, none skipped."""

    async def boom(*_: Any) -> Any:
        raise RuntimeError("probe down")

    class BadStore:
        def __getattr__(self, name: str) -> Any:
            return boom

    class BadLock:
        @property
        def held(self) -> bool:
            raise RuntimeError("lock probe down")

    class BadSettings:
        @property
        def arbitrage_env(self) -> str:
            raise RuntimeError("settings gone")

    ctx = LiveStartContext(settings=BadSettings(), store=BadStore(), clock=ManualClock(NOW),
                           phase=1, notional_usd=50.0, venues=None, arm=boom, ladder=boom,
                           halted=boom, lock=BadLock())
    failures = await check_live_start(ctx)
    assert [f.name for f in failures] == [name for name, _ in CONDITIONS if name != "venues"] \
        + ["venues", "venues"]
    assert all("error while checking" in f.message for f in failures if f.name != "venues")


async def test_gate_collects_all_failures():
    async def arm() -> ArmView:
        return ArmView([Failure("arm_age", "old")], None)

    async def ladder(p: int) -> LadderDecision:
        return LadderDecision(p, False, "nope")

    async def halted() -> str | None:
        return "kill"

    class Store:
        async def get_flag(self, key: str) -> None:
            return None

        async def last_run(self) -> None:
            return None

    ctx = LiveStartContext(settings=make_settings(Path("/nonexistent"), arbitrage_env="paper"),
                           store=Store(), clock=ManualClock(NOW), phase=1, notional_usd=50.0,
                           venues={}, arm=arm, ladder=ladder, halted=halted, lock=None)
    assert [f.name for f in await check_live_start(ctx)] == [
        "env", "arm_age", "preflight", "notional_cap", "halted", "ladder", "instance_lock",
        "venues", "venues"]
