"""After /kill, the chat that asked gets what it was promised: the incident report's
path and the run's final figures (or, with no run, the report's path), once the kill
procedure has written them. Waits in the background; never delays the HALT."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from loguru import logger

from bot.telegram.format import h, kpi_text

if TYPE_CHECKING:
    from bot.telegram.context import TelegramDeps

POLL_S = 0.25


def follow_kill(deps: TelegramDeps, chat_id: int, run_id: str | None,
                incident_before: str | None, max_s: float = 900.0) -> None:
    """Start the follow-up; it is one of the app's in-flight tasks (cancelled on stop)."""
    task = asyncio.create_task(_follow(deps, chat_id, run_id, incident_before, max_s),
                               name=f"kill-report-{run_id or 'no-run'}")
    deps.inflight.add(task)
    task.add_done_callback(deps.inflight.discard)


async def _follow(deps: TelegramDeps, chat_id: int, run_id: str | None,
                  incident_before: str | None, max_s: float) -> None:
    service: Any = deps.service
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_s
    try:
        while loop.time() < deadline:
            if run_id is not None:
                result = service.last_run_result()
                if result and result.get("run_id") == run_id:
                    incident = ((result.get("kpi") or {}).get("kill") or {}).get("incident")
                    head = (f"🧾 incident report: <code>{h(incident)}</code>" if incident
                            else "🧾 the run ended without an incident report")
                    await deps.sender.send(chat_id, f"{head}\n{kpi_text(result)}")
                    return
            else:
                path = getattr(service, "last_incident", None)
                if path and path != incident_before:
                    await deps.sender.send(
                        chat_id, f"🧾 incident report: <code>{h(path)}</code>\nNo run was "
                        "active; fill in Cause and Prevention on the host, then /reset.")
                    return
            await asyncio.sleep(POLL_S)
        await deps.sender.send(chat_id, "🧾 the incident report is not written yet: "
                               "`arbops status` and the incidents/ folder on the host say more")
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a follow-up message never hurts the kill
        logger.exception("kill follow-up for {} failed", run_id)
