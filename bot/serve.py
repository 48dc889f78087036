"""`arbops serve`: the long-running service (Procfile `bot: arbops serve`).

One asyncio process, started through the one bootstrap (bot/bootstrap.py): engine
(runs started over the control channel or Telegram), watchdog thread, control
channel and metrics; then what only the service has: scheduled reports
(bot/monitoring_app.py) and Telegram (bot/telegram_app.py).
"""
from __future__ import annotations

import asyncio
import gc
import os
import signal
from typing import Any

from loguru import logger

from core.config.settings import Settings
from core.errors import ExitCode, Refused


async def serve(settings: Settings) -> int:
    from bot.bootstrap import engine_process
    from bot.monitoring_app import start_schedules
    from bot.telegram_app import start_telegram, telegram_start_problems

    problems = telegram_start_problems(settings)
    if problems:  # before anything starts: no lock taken, no engine, no socket
        raise Refused("arbops serve refused:\n" + "\n".join(f"  - {p}" for p in problems))
    async with engine_process(settings) as service:
        stop = asyncio.Event()
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

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        surfaces: list[Any] = []
        try:
            for start in (start_schedules, start_telegram):
                handle = await start(service, settings)
                if handle is not None:
                    surfaces.append(handle)
            # Start-up objects (aiogram's and pydantic's models, settings, ccxt in live
            # mode) live as long as the process. Freezing them takes them out of the
            # collector's generations: a full collection no longer walks ~200k objects
            # (measured 50-150 ms of blocked event loop before, under 1 ms after;
            # docs/performance.md). Collect first so start-up garbage is freed, not frozen.
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
            return ExitCode.OK
        finally:
            for handle in reversed(surfaces):
                await handle.stop()
