"""Environment ARMs already used on this host by this user, whatever the data dir.

The journal remembers the ARMs its own data dir used; a fresh data dir has an empty
journal, so without this record the same `LIVE_ARM_AT` left in a shell would arm a
second engine within its 600 s. Each use is one file under
`${XDG_STATE_HOME:-~/.local/state}/arbops/arm_used/`, named by a fingerprint of the
account (core.safety.redis_state.account_id) and the ARM token, created with
O_EXCL so two engines racing for one ARM cannot both win. With REDIS_URL the same
claim is also a `SET NX` key, which every host of the account sees.

Any error reading or writing the record is a refusal naming it (fail closed).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.safety.arming import ArmState
from core.safety.engine_registry import user_state_dir
from core.safety.failure import Failure
from core.safety.redis_state import RedisState

# Kept this long past the ARM's expiry: the ARM's own age check refuses it by then,
# and the margin covers a wall clock set back after the use.
KEEP_AFTER_EXPIRY_S = 86_400.0


def ledger_dir() -> Path:
    return user_state_dir() / "arm_used"


@dataclass(frozen=True, slots=True)
class ArmUse:
    """Who used an ARM: the run (or "disarmed by ..."), where, and when."""

    used_by: str
    data_dir: str
    ts: float
    host: str = "this host"

    def failure(self, arm: ArmState) -> Failure:
        when = datetime.fromtimestamp(self.ts, UTC).isoformat(timespec="seconds")
        return Failure(
            "arm_consumed",
            f"this ARM (LIVE_ARM_AT={arm.armed_at_raw}) was already used on {self.host} "
            f"by {self.used_by} in data dir {self.data_dir} at {when} UTC; an environment "
            "ARM is single use per host and account, whatever the data dir: arm again "
            "(export LIVE_ARM_AT=$(date +%s))")


class HostArmLedger:
    def __init__(self, account: str, directory: Path | None = None,
                 redis: RedisState | None = None) -> None:
        self.account = account
        self.directory = directory if directory is not None else ledger_dir()
        self.redis = redis

    def fingerprint(self, arm: ArmState) -> str:
        return hashlib.sha256(f"{self.account}|{arm.token}".encode()).hexdigest()[:32]

    def _path(self, arm: ArmState) -> Path:
        return self.directory / f"{self.fingerprint(arm)}.json"

    async def used(self, arm: ArmState) -> ArmUse | None:
        """Who used this ARM on this host (or, with Redis, on any host), or None."""
        use = _read(self._path(arm))
        if use is None and self.redis is not None:
            raw = await self.redis.env_arm_use(self.fingerprint(arm))
            use = None if raw is None else _use(raw, "another host of this account")
        return use

    async def claim(self, arm: ArmState, used_by: str, data_dir: Path,
                    now: float) -> ArmUse | None:
        """Record this use; None when it is ours, else the earlier use that won."""
        expires = arm.expires_at() or now
        body = {"used_by": used_by, "data_dir": str(data_dir), "ts": now,
                "expires": expires, "host": os.uname().nodename}
        if self.redis is not None:
            ttl = int(max(expires - now, 0) + KEEP_AFTER_EXPIRY_S)
            earlier = await self.redis.claim_env_arm(self.fingerprint(arm), body, ttl)
            if earlier is not None:
                return _use(earlier, "another host of this account")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._prune(now)
        path = self._path(arm)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _read(path) or ArmUse("an earlier start", "?", now)
        try:
            os.write(fd, json.dumps(body, sort_keys=True).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return None

    def _prune(self, now: float) -> None:
        for path in self.directory.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                if float(json.loads(path.read_text())["expires"]) + KEEP_AFTER_EXPIRY_S < now:
                    path.unlink()


def _use(raw: dict[str, Any], host: str) -> ArmUse:
    return ArmUse(str(raw.get("used_by", "?")), str(raw.get("data_dir", "?")),
                  float(raw.get("ts", 0.0)), host)


def _read(path: Path) -> ArmUse | None:
    """The recorded use, None if there is none; an unreadable record raises (the
    caller refuses): a file we cannot read might be the use that matters."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return _use(dict(json.loads(text)), "this host")
    except (ValueError, TypeError):
        # A half-written record (a crash between create and write) still means used.
        return ArmUse("an earlier start (its record is damaged)", "?",
                      path.stat().st_mtime)


__all__ = ["KEEP_AFTER_EXPIRY_S", "ArmUse", "HostArmLedger", "ledger_dir"]
