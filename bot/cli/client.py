"""The CLI's one way to reach the engine: ask the running one, else act here.

One engine per data dir: when `arbops serve` (or a foreground run) is up, a command
goes over its control channel and is audited there under the peer's uid; when none
answers, an `offline` row is carried out in this process on the same journal,
through the same table dispatch and audit, under the same actor name
(core.control_channel.local_actor). A row that needs the running engine says so.
"""
from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from core.commands import BY_NAME, Args
from core.config.settings import Settings
from core.control_channel import ask, local_actor, socket_path_for
from core.errors import EngineNotRunning, ExitCode, ServiceError

if TYPE_CHECKING:
    from core.service import OperatorService

T = TypeVar("T")


def payload(args: Args | None) -> dict[str, Any]:
    """Arguments as they travel: JSON values, by alias, unset ones left out."""
    if args is None:
        return {}
    return args.model_dump(mode="json", by_alias=True, exclude_none=True)


class EngineClient:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.socket = socket_path_for(settings.data_dir)
        self.actor = local_actor()

    def ask(self, name: str, args: Args | None = None) -> dict[str, Any]:
        """The running engine's answer; EngineNotRunning when there is none."""
        return ask(self.socket, name, payload(args), BY_NAME[name].timeout_s)

    def ask_or_here(self, name: str, args: Args | None = None) -> dict[str, Any]:
        row = BY_NAME[name]
        try:
            return self.ask(name, args)
        except EngineNotRunning:
            if not row.offline:
                raise ServiceError(f"no engine is running on this data dir "
                                   f"({self.settings.data_dir}): nothing to {name}",
                                   ExitCode.FAILED) from None
        return self.here(lambda s: s.control(name, payload(args), self.actor))

    def here(self, fn: Callable[[OperatorService], Awaitable[T]]) -> T:
        """`fn(service)` on a service built in this process, closed afterwards."""

        async def run() -> T:
            from bot.app import build_service
            from core.monitoring.logging_setup import redact_console

            redact_console(self.settings.secret_values())
            service = await build_service(self.settings)
            try:
                return await fn(service)
            finally:
                await service.close()

        return asyncio.run(run())
