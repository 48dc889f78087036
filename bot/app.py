"""The one place the object graph is built (docs/architecture.md): settings -> store ->
venues -> service. Surfaces receive the service; nothing else builds one.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.clock import Clock, ManualClock, SystemClock
from core.config.settings import Settings
from core.domain.models import Venue
from core.files import secure_data_dir
from core.journal.sqlite_store import SqliteStore
from core.redaction import register_secrets
from core.safety.watchdog import Watchdog, headroom_warnings
from core.service import OperatorService
from core.trading.phase_run import RunSpec
from core.venues.paper_exchange import PaperExchange, paper_journal_probe
from core.venues.sim_market import SimMarket

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
        level_vol_bps=settings.sim_level_vol_bps,
        level_halflife_s=settings.sim_level_halflife_s,
    )
    return market, _paper_on(settings, clock, market)


def real_venues(settings: Settings, budgets: Any = None, role: str = "trading",
                alert: Any = None, timeout_ms: int = 10_000, streams: bool = False
                ) -> dict[Venue, Any]:
    """ccxt venues from the settings (keys, API bases); nothing is sent yet. A kill
    passes a shorter timeout: every venue call it makes must end within its 10 s.

    `budgets` (core.venues.rate_budget.VenueBudgets) is the process's one budget per
    venue: pass the same object to every client built in this process so they share
    it (a fresh one is made when omitted, for one-off commands)."""
    from core.venues.ccxt_exchange import CcxtExchange
    from core.venues.profiles import PROFILES
    from core.venues.rate_budget import Role

    budgets = budgets if budgets is not None else venue_budgets()

    def setting(name: str) -> Any:
        value = getattr(settings, name)
        return value.get_secret_value() if hasattr(value, "get_secret_value") else value

    return {
        venue: CcxtExchange(venue, setting(p.keys.api_base), setting(p.keys.key),
                            setting(p.keys.secret), setting(p.keys.fee_bps),
                            budget=budgets[venue], role=Role(role), alert=alert,
                            timeout_ms=timeout_ms, streams=streams)
        for venue, p in PROFILES.items()
    }


def venue_budgets() -> Any:
    """One request budget per venue, to share between every client of this process."""
    import time

    from core.venues.profiles import PROFILES
    from core.venues.rate_budget import VenueBudgets

    return VenueBudgets({str(v): p.rate for v, p in PROFILES.items()}, time.monotonic)


def venues_for(settings: Settings, clock: Clock, spec: RunSpec, budgets: Any = None,
               alert: Any = None) -> tuple[Any, dict[Venue, Any]]:
    """Market data and venues for a run: sim + paper; real data + paper; or live.
    Real market data has its own ccxt clients (role market data), never the
    trading ones, so books cannot delay an order: websocket streams, or REST
    polling when ARBOPS_MARKET_DATA_STREAMS is off."""
    if spec.data_source == "sim":
        if spec.mode == "live":
            raise ValueError("live never runs on the simulated market")
        return paper_venues(settings, clock, spec)
    if spec.data_source == "real":
        from core.venues.book_streams import StreamMarketData
        from core.venues.ccxt_market_data import CcxtMarketData

        budgets = budgets if budgets is not None else venue_budgets()
        streams = settings.market_data_streams
        feed_venues = real_venues(settings, budgets, "market_data", alert, streams=streams)
        for ex in feed_venues.values():
            ex.owned_by_market = True  # market.close() closes them
        market = (StreamMarketData(feed_venues, clock, settings.real_poll_interval_s,
                                   stale_ms=settings.stale_book_ms)
                  if streams else
                  CcxtMarketData(feed_venues, clock, settings.real_poll_interval_s))
        if spec.mode == "live":
            # The service closes the trading venues after the run.
            return market, real_venues(settings, budgets, "trading", alert,
                                       streams=settings.order_streams)
        return market, _paper_on(settings, clock, market)
    if spec.data_source == "replay" and spec.replay_path is not None:
        from core.venues.replay_market import ReplayMarket

        replay = ReplayMarket(spec.replay_path, clock)
        return replay, _paper_on(settings, clock, replay)
    raise ValueError(f"data source {spec.data_source!r} is not available")


def _paper_on(settings: Settings, clock: Clock, market: Any) -> dict[Venue, Any]:
    probe = paper_journal_probe(settings.data_dir / DB_NAME)
    fees = {Venue.UPBIT: settings.upbit_fee_bps, Venue.BINANCE: settings.binance_fee_bps}
    return {
        v: PaperExchange(
            v, market, clock, fees[v], latency_ms=settings.paper_latency_ms,
            fill_ratio=settings.paper_fill_ratio, cancel_failures=settings.paper_cancel_failures,
            intent_probe=probe,
        )
        for v in (Venue.UPBIT, Venue.BINANCE)
    }


async def build_service(settings: Settings, *, fast: bool = False) -> OperatorService:
    """Open the store and build the service. `fast` steps the sim on a manual clock."""
    secure_data_dir(settings.data_dir)
    register_secrets(settings.secret_values())
    clock: Clock = ManualClock() if fast else SystemClock()
    store = await SqliteStore.open(settings.data_dir / DB_NAME)

    budgets = venue_budgets()  # every client of this process spends the same budgets
    alert = venue_alerts(lambda: service.notifier)

    def factory(spec: RunSpec) -> tuple[Any, dict[Venue, Any]]:
        return venues_for(settings, clock, spec, budgets, alert)

    service = OperatorService(settings, store, clock, factory, fast=fast)
    service.real_venues = lambda: real_venues(settings, budgets, "trading", alert)
    if settings.telegram_bot_token is not None:
        from core.safety.telegram_probe import telegram_get_me

        service.safety.telegram_probe = telegram_get_me(
            settings.telegram_api_base, settings.telegram_bot_token.get_secret_value())
    await service.load_persistent_state()
    return service


def venue_alerts(notifier: Callable[[], Any]) -> Callable[[str, str], None]:
    """What a venue adapter calls to ALERT the operator (a clock re-sync, a key
    problem, a closed market): queued on the notifier, never awaited by the caller."""
    import asyncio

    from core.domain.journal_kinds import Severity

    pending: set[asyncio.Task[Any]] = set()

    def alert(title: str, body: str) -> None:
        task = asyncio.get_running_loop().create_task(
            notifier().notify(Severity.ALERT, title, body))
        pending.add(task)
        task.add_done_callback(pending.discard)

    return alert


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
