"""Every test gets its own per-user state dir: the engine registry and the host-wide
record of used ARMs live there, and a test must neither read the real user's nor
see another test's (the same LIVE_ARM_AT in two tests would be one ARM used twice)."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
