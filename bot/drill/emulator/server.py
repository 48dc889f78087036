"""Start/stop the emulator: `await start_emulator(...)` for tests, `main()` for the CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from typing import Any

from aiohttp import web

from bot.drill.emulator.app import build_app
from bot.drill.emulator.state import DEFAULT_KEYS, EmulatorCore
from core.clock import ManualClock
from core.http_listener import listen


@dataclasses.dataclass
class EmulatorHandle:
    url: str  # e.g. "http://127.0.0.1:54321"
    port: int
    keys: dict[str, tuple[str, str]]  # venue -> (api key, secret); fake
    core: EmulatorCore
    autostep: bool
    _runner: web.AppRunner

    def step(self, n: int = 1) -> int:
        """Advance the sim n steps (fills happen against the new books); returns the seq."""
        return self.core.step(n)

    def add_fault(self, **spec: Any) -> None:
        self.core.faults.add(spec)

    def clear_faults(self) -> None:
        self.core.faults.clear()

    def ccxt_config(self, venue: str) -> dict[str, Any]:
        from bot.drill.emulator.ccxt_config import ccxt_config

        key, secret = self.keys[venue]
        return ccxt_config(venue, self.url, key, secret)

    async def stop(self) -> None:
        await self.core.stop()
        await self._runner.cleanup()


async def start_emulator(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 7,
    top_n: int = 50,
    interval_s: float = 0.1,
    autostep: bool = True,
    keys: dict[str, tuple[str, str]] | None = None,
    faults: list[dict[str, Any]] | None = None,
    bases: list[str] | None = None,
    quote_usd: float = 20_000.0,
    per_base_usd: float = 1_000.0,
    jump_rate_per_min: float = 1.0,
    limits: dict[str, Any] | None = None,
    bnb_discount: bool = False,
    upbit_ticks: dict[str, float] | None = None,
    manual_clock: bool = False,
) -> EmulatorHandle:
    """Serve both venues on one port. port=0 picks a free one (see handle.port).

    bases overrides the universe (default: the top_n by core.trading.universe.select_universe);
    each venue is funded with quote_usd of quote and per_base_usd of every base.
    limits overrides the venues' request limits (bot.drill.emulator.limits.LimitConfig
    fields; {"enforce": False} turns them off); bnb_discount charges Binance fees in
    BNB (funded with per_base_usd of it); upbit_ticks gives Upbit pairs their own tick.
    manual_clock: the market's clock starts now and moves only with POST /admin/advance
    (no autostep), so a client that advances it steps both sides on one data clock.
    """
    merged = dict(DEFAULT_KEYS)
    merged.update(keys or {})
    core = EmulatorCore(
        seed=seed,
        top_n=top_n,
        interval_s=interval_s,
        keys=merged,
        bases=bases,
        quote_usd=quote_usd,
        per_base_usd=per_base_usd,
        jump_rate_per_min=jump_rate_per_min,
        limits=limits,
        bnb_discount=bnb_discount,
        upbit_ticks=upbit_ticks,
        clock=ManualClock(time.time()) if manual_clock else None,
    )
    autostep = autostep and not manual_clock
    for spec in faults or []:
        core.faults.add(spec)
    app = build_app(core, autostep)
    runner, bound = await listen(app, host, port, shutdown_timeout=1.0)
    if autostep:
        core.start_autostep()
    return EmulatorHandle(
        url=f"http://{host}:{bound}",
        port=bound,
        keys=merged,
        core=core,
        autostep=autostep,
        _runner=runner,
    )


async def serve_forever(**kwargs: Any) -> None:
    handle = await start_emulator(**kwargs)
    print(f"arbops exchange emulator listening on {handle.url}", flush=True)
    print(
        f"  Binance spot: {handle.url}/api/v3   Upbit: {handle.url}/v1   admin: {handle.url}/admin/..."
    )
    for venue, (key, secret) in handle.keys.items():
        print(f"  {venue}: apiKey={key} secret={secret}")
    print("  (these keys are FAKE and only valid against this emulator)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        await handle.stop()
