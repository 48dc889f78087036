"""`arbops serve`: the long-running service (Procfile `bot: arbops serve`).

One asyncio process: engine (runs started over the control channel or
Telegram), watchdog thread, control channel, and the optional surfaces, each
started by its own module: Telegram (bot/telegram_app.py) and monitoring -
metrics endpoint and scheduled reports (bot/monitoring_app.py).
"""
from __future__ import annotations

import asyncio
import gc
import os
import signal
from typing import Any

from loguru import logger

from bot.cli import EXIT_OK, CliError
from core.control_channel import ControlServer, socket_path_for
from core.settings import Settings


async def serve(settings: Settings) -> int:
    from bot.app import build_service, start_watchdog
    from bot.monitoring_app import start_monitoring
    from bot.telegram_app import start_telegram, telegram_start_problems
    from core.monitoring.logging_setup import setup_logging
    from core.safety.instance_lock import InstanceLock, InstanceLocked

    problems = telegram_start_problems(settings)
    if problems:  # before anything starts: no lock taken, no engine, no socket
        raise CliError("arbops serve refused:\n" + "\n".join(f"  - {p}" for p in problems))

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(settings.data_dir, settings.log_level, settings.secret_values())
    lock = InstanceLock(settings.data_dir)
    try:
        lock.acquire()
    except InstanceLocked as exc:
        raise CliError(str(exc)) from None
    if settings.arbitrage_env == "live":
        from core.venues.ccxt_exchange import preload

        preload()  # ccxt's ~70 MB belong to the start-up baseline, not to a leak
    service = await build_service(settings)
    from core.safety.redis_state import FileEngineLock

    if service.safety.redis is None:
        service.safety.lock = FileEngineLock(existing=lock)  # one lock per data dir
    server = ControlServer(socket_path_for(settings.data_dir), service.control)
    watchdog = start_watchdog(service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupted: list[str] = []  # run ids a signal stopped

    def on_signal(sig: signal.Signals) -> None:
        # First signal: a running phase closes gracefully, then the service exits;
        # a second signal is an emergency halt of that phase (R-K1).
        run_task = service._run_task
        if service.current is not None:
            interrupted.append(service.current.run_id)
            service.current.request_stop(f"signal {sig.name}")
        if run_task is not None and not run_task.done():
            run_task.add_done_callback(lambda _t: stop.set())
        else:
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    surfaces: list[Any] = []
    try:
        await server.start()
        for start in (start_monitoring, start_telegram):
            handle = await start(service, settings)
            if handle is not None:
                surfaces.append(handle)
        # Start-up objects (aiogram's and pydantic's models, settings, ccxt in live mode)
        # live as long as the process. Freezing them takes them out of the collector's
        # generations: a full collection no longer walks ~200k objects (measured 50-150
        # ms of blocked event loop before, under 1 ms after; docs/performance.md).
        # Collect first so start-up garbage is freed, not frozen.
        gc.collect()
        gc.freeze()
        logger.info("arbops serve ready (pid {}), state {}", os.getpid(), service.state.state)
        await stop.wait()
        logger.info("arbops serve stopping")
        last = service.last_outcome
        # The runbook's stop semantics for the phase a signal interrupted: 0 after a
        # graceful close, 1 after an emergency halt.
        if last is not None and last.run_id in interrupted:
            return last.exit_code
        return EXIT_OK
    finally:
        for handle in reversed(surfaces):
            await handle.stop()
        watchdog.stop()
        await server.stop()
        await service.store.close()
        lock.release()
