"""Starts monitoring inside an engine process: the Prometheus endpoint and the
scheduled jobs (issue #7 fills this in)."""
from __future__ import annotations

from typing import Any

from core.settings import Settings


async def start_monitoring(service: Any, settings: Settings) -> Any:
    """Return a handle with `async stop()`, or None when nothing is enabled."""
    return None
