"""The suite's machinery tests (kill, metrics, Telegram, drills) need a market that
trades within seconds: they run on the sim's "rehearsal" profile (a jumpy premium, a
30-second strategy), set here for this process and every subprocess it starts. Tests
about the economics ask for the "calibrated" profile explicitly.

Every test also gets its own per-user state dir: the engine registry and the
host-wide record of used ARMs live there, and a test must neither read the real
user's nor see another test's (the same LIVE_ARM_AT in two tests would be one ARM
used twice)."""
import os

import pytest

os.environ.setdefault("ARBOPS_SIM_PROFILE", "rehearsal")


@pytest.fixture(autouse=True)
def _private_state_home(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))
