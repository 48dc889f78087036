"""Serve an aiohttp app on host:port: the one way arbops opens a local HTTP listener
(metrics endpoint, Telegram webhook, exchange emulator, its Bot API stand-in)."""
from __future__ import annotations

from typing import Any

from aiohttp import web


async def listen(app: web.Application, host: str, port: int,
                 **runner_kw: Any) -> tuple[web.AppRunner, int]:
    """Start serving; return the runner (`await runner.cleanup()` stops it) and the
    port actually bound, so port 0 ("any free port", for tests) can be reported.
    A bind failure (port taken) cleans up and raises."""
    runner = web.AppRunner(app, access_log=None, **runner_kw)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = getattr(site, "_server", None)
    sockets = server.sockets if server is not None and server.sockets else []
    return runner, (sockets[0].getsockname()[1] if sockets else port)
