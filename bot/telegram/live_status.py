"""While a run started from Telegram lasts, one message shows its status, edited
at most every `interval_s` (Telegram allows about one edit per second per chat),
and finally the run's result."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from loguru import logger

from bot.telegram.format import h, kpi_text, status_text

if TYPE_CHECKING:
    from bot.telegram.sender import Sender
    from core.service import OperatorService



class LiveStatus:
    def __init__(self, service: OperatorService, sender: Sender, interval_s: float = 5.0,
                 max_s: float = 6 * 3600) -> None:
        self.service = service
        self.sender = sender
        self.interval_s = interval_s
        self.max_s = max_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def follow(self, chat_id: int, message_id: int, run_id: str) -> None:
        if run_id in self._tasks or self.interval_s <= 0:
            return
        task = asyncio.create_task(self._loop(chat_id, message_id, run_id),
                                   name=f"live-status-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    async def _loop(self, chat_id: int, message_id: int, run_id: str) -> None:
        last = ""
        seen = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            while loop.time() < started + self.max_s:
                await asyncio.sleep(self.interval_s)
                st = self.service.status()
                run = st.get("run")
                if run is None or run.get("run_id") != run_id:
                    res = self.service.last_run_result()
                    if res and res.get("run_id") == run_id:
                        await self.sender.edit(
                            chat_id, message_id,
                            f"⏹ run <code>{h(run_id)}</code> ended\n{kpi_text(res)}")
                        return
                    if seen or loop.time() - started > 60:
                        await self.sender.edit(
                            chat_id, message_id,
                            f"⏹ run <code>{h(run_id)}</code> is no longer active")
                        return
                    continue  # not built yet
                seen = True
                # The header names the run's real mode: "live" here once read as LIVE
                # trading on a paper run.
                text = f"▶️ <b>{h(str(run.get('mode') or '?').upper())} run</b> · updating\n" \
                       f"{status_text(st)}"
                if text != last:
                    await self.sender.edit(chat_id, message_id, text)
                    last = text
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a status display never hurts the run
            logger.exception("live status for {} failed", run_id)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
