"""Shared helpers for the venue tests (real data, outage, recovery, reconcile, replay).

Imported as ``tests.venues.support`` (importlib mode, no conftest, no __init__).
Everything here is real: the local exchange emulator on a free loopback port,
ccxt's async clients, SQLite, and the `arbops` console script for CLI tests.
"""
from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from bot.drill.emulator import EmulatorHandle, start_emulator
from core.config.settings import Settings

BASES = ["BTC", "ETH", "XRP", "DOGE", "SOL", "ADA"]
SYMBOL = {"binance": "BTC/USDT", "upbit": "BTC/KRW"}
DB_NAME = "arbops.sqlite3"

# Settings that make a real-data paper run enter quickly and hold its positions
# (zero fees and buffer: any deviation is an edge; exits only at shutdown).
HOLDING = {
    "upbit_fee_bps": 0.0, "binance_fee_bps": 0.0, "entry_buffer_bps": 0.0,
    "baseline_warmup_s": 0.5, "take_profit_bps": 1000.0, "stop_loss_bps": 1000.0,
    "max_hold_s": 1000.0, "reversal_bps": 1000.0,
}


@contextlib.asynccontextmanager
async def emulator(**kwargs: Any) -> AsyncIterator[EmulatorHandle]:
    """The emulator on a free port; stopped afterwards whatever happens."""
    kwargs.setdefault("bases", list(BASES))
    kwargs.setdefault("seed", 7)
    handle = await start_emulator(**kwargs)
    try:
        yield handle
    finally:
        await handle.stop()


def emu_env(handle: EmulatorHandle) -> dict[str, str]:
    """Environment variables pointing arbops at the emulator, with its fake keys."""
    return {
        "UPBIT_API_BASE": handle.url, "BINANCE_API_BASE": handle.url,
        "UPBIT_ACCESS_KEY": handle.keys["upbit"][0], "UPBIT_SECRET_KEY": handle.keys["upbit"][1],
        "BINANCE_API_KEY": handle.keys["binance"][0],
        "BINANCE_API_SECRET": handle.keys["binance"][1],
    }


def emu_settings(handle: EmulatorHandle, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a run against the emulator (no .env read: constructed directly)."""
    cfg: dict[str, Any] = {
        "data_dir": data_dir, "upbit_api_base": handle.url, "binance_api_base": handle.url,
        "upbit_access_key": handle.keys["upbit"][0], "upbit_secret_key": handle.keys["upbit"][1],
        "binance_api_key": handle.keys["binance"][0],
        "binance_api_secret": handle.keys["binance"][1],
        "real_poll_interval_s": 0.2,
        # The test process carries pytest, ccxt and aiogram: its RSS says nothing
        # about the engine, so the memory guards must not end these runs.
        "guard_memory_anomaly_mb": 4000.0, "guard_memory_kill_mb": 4000.0,
        "guard_rss_growth_mb": 4000.0,
    }
    cfg.update(overrides)
    return Settings(_env_file=None, **cfg)  # type: ignore[call-arg]


async def admin(handle: EmulatorHandle, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, handle.url + path,
                                                       json=body) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def db_rows(data_dir: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    con = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True, timeout=5)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params).fetchall()]
    finally:
        con.close()


def assert_performance_measured(kpi: dict[str, Any]) -> None:
    perf = kpi["performance"]
    figures = {
        **{f"loop_latency_ms.{k}": perf["loop_latency_ms"][k] for k in ("avg", "p50", "p99", "max")},
        **{f"cpu_percent.{k}": perf["cpu_percent"][k] for k in ("avg", "max")},
        **{f"memory_mb.{k}": perf["memory_mb"][k] for k in ("avg", "max")},
    }
    assert all(isinstance(v, int | float) and v > 0 for v in figures.values()), figures
    lat = perf["loop_latency_ms"]
    assert lat["p50"] <= lat["p99"] <= lat["max"]
    assert perf["memory_mb"]["avg"] <= perf["memory_mb"]["max"]


@dataclasses.dataclass
class Capture:
    """Wraps a service's venues factory to keep the run's market and venues."""

    inner: Callable[[Any], tuple[Any, dict[Any, Any]]]
    market: Any = None
    venues: dict[Any, Any] = dataclasses.field(default_factory=dict)

    def __call__(self, spec: Any) -> tuple[Any, dict[Any, Any]]:
        self.market, self.venues = self.inner(spec)
        return self.market, self.venues


def capture_venues(service: Any) -> Capture:
    cap = Capture(service._venues_factory)
    service._venues_factory = cap
    return cap


def wait_for(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
