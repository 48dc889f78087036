"""One way an engine process starts and stops: `arbops serve` and a foreground
`arbops run` (and `demo`) both come up through `engine_process`.

Order (torn down in reverse, whatever fails half way): file-descriptor limit ->
data dir -> logging -> instance lock (one engine per data dir) -> the user's engine
registry (so `arbops kill` finds it from anywhere) -> ccxt preloaded in LIVE mode -> service
(journal, persisted HALT) -> engine lock (Redis, else the instance lock itself) ->
control channel -> watchdog thread -> metrics endpoint. The surfaces that only
`serve` has (Telegram, scheduled reports) start on top of this.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from core.config.settings import Settings

if TYPE_CHECKING:
    from core.service import OperatorService


@contextlib.asynccontextmanager
async def engine_process(settings: Settings, *, console_log: bool = True,
                         fast: bool = False) -> AsyncIterator[OperatorService]:
    from loguru import logger

    from bot.app import build_service, start_watchdog
    from bot.monitoring_app import start_metrics
    from core.config.check import unknown_names
    from core.control_channel import ControlServer, socket_path_for
    from core.files import private_umask, secure_data_dir
    from core.monitoring.logging_setup import setup_logging
    from core.safety import engine_registry
    from core.safety.instance_lock import InstanceLock
    from core.safety.redis_state import FileEngineLock

    raise_fd_limit()
    private_umask()
    secure_data_dir(settings.data_dir)
    setup_logging(settings.data_dir, settings.log_level, settings.secret_values(),
                  console=console_log)
    for line in unknown_names(os.environ, only_prefixed=True):
        logger.warning("{} (`arbops config check` lists every such name)", line)
    async with contextlib.AsyncExitStack() as stack:
        lock = InstanceLock(settings.data_dir)
        lock.acquire()  # InstanceLocked is a refusal (exit 2) naming the holder
        stack.callback(lock.release)
        entry = engine_registry.register(settings.data_dir)
        stack.callback(engine_registry.unregister, entry)
        if settings.arbitrage_env == "live":
            from core.venues.ccxt_exchange import preload

            preload()  # ccxt's ~70 MB belong to the start-up baseline, not to a leak
        service = await build_service(settings, fast=fast)
        stack.push_async_callback(service.close)
        if service.safety.redis is None:
            service.safety.lock = FileEngineLock(existing=lock)  # one lock per data dir
        server = ControlServer(socket_path_for(settings.data_dir), service.control)
        await server.start()
        stack.push_async_callback(server.stop)
        watchdog = start_watchdog(service)
        stack.callback(watchdog.stop)
        metrics = await start_metrics(service, settings)
        if metrics is not None:
            stack.push_async_callback(metrics.stop)
        yield service


def raise_fd_limit(want: int = 65536) -> int:
    """Lift the soft limit on open files towards the hard one: the default 1,024 is a few
    hundred venue sockets, log files and clients away from "Too many open files" in the
    middle of a run. Returns the soft limit in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            pass
    return soft
