"""Notifier port implementations that need no network: the log.

Telegram delivery plugs in behind the same port (issue #6); every message is
also logged, so nothing the system says is lost when Telegram is down.
"""
from __future__ import annotations

import time

from loguru import logger


class LogNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[float, str, str, str]] = []

    async def notify(self, severity: str, title: str, body: str) -> None:
        self.sent.append((time.time(), severity, title, body))
        log = logger.warning if severity in ("KILL", "CRITICAL", "ALERT") else logger.info
        log("[{}] {}: {}", severity, title, body)


class AlertGate:
    """De-duplicates alerts per (guard, severity) with a cooldown; reports recovery."""

    def __init__(self, cooldown_s: float) -> None:
        self.cooldown_s = cooldown_s
        self._last: dict[tuple[str, str], float] = {}
        self.active: set[str] = set()

    def should_send(self, name: str, severity: str, mono: float) -> bool:
        key = (name, severity)
        last = self._last.get(key)
        self.active.add(name)
        if last is not None and mono - last < self.cooldown_s:
            return False
        self._last[key] = mono
        return True

    def recovered(self, tripped_names: set[str]) -> list[str]:
        """Names that were active and no longer trip (each reported once)."""
        gone = sorted(self.active - tripped_names)
        self.active -= set(gone)
        for name in gone:
            for key in [k for k in self._last if k[0] == name]:
                del self._last[key]
        return gone
