"""Small helpers the routers share."""
from __future__ import annotations

from typing import Any

from bot.telegram.format import h


def duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "continuous (until stopped; its gate is checked every hour)"
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"


def kv_text(data: Any, limit: int = 40) -> str:
    """A generic, escaped rendering of a result the surface has no special view for."""
    if isinstance(data, dict):
        lines = []
        for k, v in list(data.items())[:limit]:
            if isinstance(v, dict | list):
                v = _short(v)
            lines.append(f"{h(k)}: {h(v)}")
        return "\n".join(lines) or "(empty)"
    if isinstance(data, list):
        return "\n".join(h(_short(x)) for x in data[:limit]) or "(none)"
    return h(data)


def _short(v: Any, n: int = 300) -> str:
    s = str(v)
    return s if len(s) <= n else s[:n] + "…"
