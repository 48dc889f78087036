"""The scheduled reconciliation (runbook §5.2): skipped during a run and without
venue keys; a drift or a failure becomes an ALERT."""
from __future__ import annotations

from typing import Any

from core.monitoring.jobs import scheduled_reconcile


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def notify(self, severity: str, title: str, body: str) -> None:
        self.sent.append((severity, title, body))


class FakeService:
    def __init__(self, result: Any, keys: bool = True, running: bool = False) -> None:
        self.result = result
        self.keys = keys
        self.current = object() if running else None
        self.notifier = FakeNotifier()
        self.calls = 0

    def venue_keys_configured(self) -> bool:
        return self.keys

    async def reconcile(self) -> dict[str, Any]:
        self.calls += 1
        if isinstance(self.result, Exception):
            raise self.result
        return dict(self.result)


async def test_skipped_during_a_run_and_without_keys() -> None:
    for svc in (FakeService({"ok": True}, running=True), FakeService({"ok": True}, keys=False)):
        assert await scheduled_reconcile(svc) is None
        assert svc.calls == 0 and svc.notifier.sent == []


async def test_ok_is_quiet_and_drift_alerts() -> None:
    quiet = FakeService({"ok": True, "problems": []})
    assert (await scheduled_reconcile(quiet))["ok"] is True
    assert quiet.notifier.sent == []
    drift = FakeService({"ok": False, "problems": ["binance USDT drift"]})
    await scheduled_reconcile(drift)
    assert drift.notifier.sent == [("ALERT", "reconciliation", "binance USDT drift")]


async def test_a_failure_alerts_and_does_not_raise() -> None:
    svc = FakeService(RuntimeError("venue down"))
    assert await scheduled_reconcile(svc) is None
    assert svc.notifier.sent and "venue down" in svc.notifier.sent[0][2]
