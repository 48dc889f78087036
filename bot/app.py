"""The one place the object graph is built (design.md): settings -> store ->
venues -> service. Surfaces receive the service; nothing else builds one.
"""
from __future__ import annotations

from typing import Any

from core.adapters.paper_exchange import PaperExchange, paper_journal_probe
from core.adapters.sim_market import SimMarket
from core.adapters.sqlite_store import SqliteStore
from core.clock import Clock, ManualClock, SystemClock
from core.domain.models import Venue
from core.phase_run import RunSpec
from core.service import OperatorService
from core.settings import Settings
from core.watchdog import Watchdog, headroom_warnings

DB_NAME = "arbops.sqlite3"


def paper_venues(settings: Settings, clock: Clock, spec: RunSpec) -> tuple[Any, dict[Venue, Any]]:
    """The sim market and a paper exchange per venue, for one run."""
    market = SimMarket(
        seed=spec.seed if spec.seed is not None else settings.sim_seed,
        n_symbols=settings.sim_symbols,
        interval_s=settings.tick_interval_ms / 1000.0,
        clock=clock,
        mean_reversion=settings.sim_mean_reversion,
        premium_vol_bps=settings.sim_premium_vol_bps,
        jump_rate_per_min=settings.sim_jump_rate_per_min,
        jump_bps=settings.sim_jump_bps,
        fx_krw=settings.sim_fx_krw,
    )
    probe = paper_journal_probe(settings.data_dir / DB_NAME)
    fees = {Venue.UPBIT: settings.upbit_fee_bps, Venue.BINANCE: settings.binance_fee_bps}
    exchanges = {
        v: PaperExchange(
            v, market, clock, fees[v], latency_ms=settings.paper_latency_ms,
            fill_ratio=settings.paper_fill_ratio, cancel_failures=settings.paper_cancel_failures,
            intent_probe=probe,
        )
        for v in (Venue.UPBIT, Venue.BINANCE)
    }
    return market, exchanges


async def build_service(settings: Settings, *, fast: bool = False) -> OperatorService:
    """Open the store and build the service. `fast` steps the sim on a manual clock."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    clock: Clock = ManualClock() if fast else SystemClock()
    store = await SqliteStore.open(settings.data_dir / DB_NAME)

    def factory(spec: RunSpec) -> tuple[Any, dict[Venue, Any]]:
        return paper_venues(settings, clock, spec)

    service = OperatorService(settings, store, clock, factory, fast=fast)
    await service.load_persistent_state()
    return service


def start_watchdog(service: OperatorService) -> Watchdog:
    """The watchdog thread; it samples the baseline RSS now, after start-up."""
    import asyncio

    from loguru import logger

    watchdog = Watchdog(service, service.settings, service.clock)
    for warning in headroom_warnings(watchdog.rss_baseline, service.settings):
        logger.warning(warning)
    service.watchdog = watchdog
    watchdog.start(asyncio.get_running_loop())
    return watchdog
