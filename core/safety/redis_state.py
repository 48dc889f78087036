"""One live engine per account (R-S5), ARM and kill-flag mirrors, over Redis or a file.

With REDIS_URL: the lock is `SET key value NX PX ttl` taken together with `INCR` of a
fencing counter in one Lua script, renewed by a task; before every order send the
gateway asks `fence_ok(token)`, one Lua script that checks atomically that the lock
value is still ours *and* the counter has not moved (a newer holder bumps it). A lock
that is gone, stolen, or cannot be confirmed until its lease would have run out calls
`on_lost` once (the service HALTs).

Without Redis: the flock of core.safety.instance_lock, behind the same interface.

`redis` is imported lazily: `arbops status/kill` must stay light.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from core.errors import InstanceLocked
from core.safety.instance_lock import InstanceLock

LostCallback = Callable[[str], Any]

_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false
"""
# Both must hold: the value (with our random owner id) is still ours, and the counter
# has not moved. An expired-and-retaken lock fails both.
_FENCE_OK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
return 1
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LockHeld(InstanceLocked):
    """Another engine holds the account lock in Redis; `holder` is {host, pid, since}."""

    def __init__(self, holder: dict[str, Any], key: str) -> None:
        super().__init__(holder)
        who = (f"host={holder.get('host', '?')} pid={holder.get('pid', '?')} "
               f"since={holder.get('since', '?')}") if holder else "unknown holder"
        self.args = (f"another live engine holds this account's lock (redis key {key}): {who}",)

    def __str__(self) -> str:
        return str(self.args[0])


class EngineLock(Protocol):
    """What the service and the live gate need from a lock, whatever backs it."""

    kind: str

    @property
    def held(self) -> bool: ...

    @property
    def token(self) -> int | None: ...

    async def acquire(self) -> dict[str, Any]: ...

    async def release(self) -> None: ...

    async def fence_ok(self, token: int | None = None) -> bool: ...


def account_id(settings: Any) -> str:
    """A short, non-reversible account name: one lock per Binance key (one per account)."""
    key = getattr(settings, "binance_api_key", None)
    raw = key.get_secret_value() if key is not None else ""
    return hashlib.sha256(raw.encode()).hexdigest()[:12] if raw else "default"


def _holder_info() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "since": datetime.now(UTC).isoformat(timespec="seconds")}


class FileEngineLock:
    """The per-data-dir flock (no Redis). Fencing is trivial: the kernel holds it for us.

    `existing`: the InstanceLock the serving process already took (bot/serve.py). A
    second flock on the same file from the same process would conflict with it, so
    that lock is adopted, and its owner keeps releasing it.
    """

    kind = "file"

    def __init__(self, data_dir: Path | None = None, *,
                 existing: InstanceLock | None = None) -> None:
        if existing is None and data_dir is None:
            raise ValueError("give data_dir or an existing InstanceLock")
        self._adopted = existing is not None
        self._lock = existing if existing is not None else InstanceLock(Path(data_dir or "."))

    @property
    def held(self) -> bool:
        return self._lock.held

    @property
    def token(self) -> int | None:
        return 1 if self._lock.held else None

    async def acquire(self) -> dict[str, Any]:
        if self._adopted:
            if not self._lock.held:
                raise RuntimeError(f"the adopted engine lock {self._lock.path} is not held")
            return dict(self._lock.holder or {})
        return self._lock.acquire()  # raises InstanceLocked naming the holder

    async def release(self) -> None:
        if not self._adopted:
            self._lock.release()

    async def fence_ok(self, token: int | None = None) -> bool:
        return self._lock.held


class RedisState:
    """Redis keys of one account: the lock, the fence counter, the ARM and kill mirrors."""

    def __init__(self, client: Any, prefix: str = "arbops", account: str = "default") -> None:
        self.client = client
        base = f"{prefix}:{account}"
        self.lock_key = f"{base}:lock"
        self.fence_key = f"{base}:fence"
        self.arm_key = f"{base}:arm"
        self.kill_key = f"{base}:kill"
        self.arm_used_prefix = f"{base}:arm_used:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "arbops", account: str = "default",
                 timeout_s: float = 2.0) -> RedisState:
        import redis.asyncio as aioredis

        client = aioredis.from_url(url, socket_timeout=timeout_s,
                                   socket_connect_timeout=timeout_s)
        return cls(client, prefix, account)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    # --- ARM mirror: expires by itself, so a stale ARM can never outlive its window
    async def mirror_arm(self, payload: dict[str, Any], ttl_s: int) -> None:
        if ttl_s <= 0:
            await self.client.delete(self.arm_key)
            return
        await self.client.set(self.arm_key, json.dumps(payload, sort_keys=True), ex=int(ttl_s))

    async def arm_mirror(self) -> dict[str, Any] | None:
        raw = await self.client.get(self.arm_key)
        return None if raw is None else dict(json.loads(raw))

    async def clear_arm(self) -> None:
        await self.client.delete(self.arm_key)

    # --- environment ARMs used by any host of this account (core.safety.arm_ledger)
    async def claim_env_arm(self, fingerprint: str, body: dict[str, Any],
                            ttl_s: int) -> dict[str, Any] | None:
        """SET NX: None when this claim won, else the earlier use."""
        key = self.arm_used_prefix + fingerprint
        if await self.client.set(key, json.dumps(body, sort_keys=True), nx=True,
                                 ex=max(int(ttl_s), 1)):
            return None
        return await self.env_arm_use(fingerprint) or {"used_by": "an earlier start"}

    async def env_arm_use(self, fingerprint: str) -> dict[str, Any] | None:
        raw = await self.client.get(self.arm_used_prefix + fingerprint)
        return None if raw is None else dict(json.loads(raw))

    # --- kill flag mirror: no TTL; only `reset` clears it
    async def set_kill(self, reason: str) -> None:
        await self.client.set(self.kill_key, reason)

    async def kill_reason(self) -> str | None:
        raw = await self.client.get(self.kill_key)
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def clear_kill(self) -> None:
        await self.client.delete(self.kill_key)

    def lock(self, ttl_ms: int = 10_000, on_lost: LostCallback | None = None,
             renew_every_s: float | None = None) -> RedisEngineLock:
        return RedisEngineLock(self, ttl_ms, on_lost, renew_every_s)


class RedisEngineLock:
    kind = "redis"

    def __init__(self, state: RedisState, ttl_ms: int = 10_000,
                 on_lost: LostCallback | None = None, renew_every_s: float | None = None) -> None:
        self.state = state
        self.ttl_ms = int(ttl_ms)
        self.renew_every_s = renew_every_s or self.ttl_ms / 3000.0
        self.on_lost = on_lost
        self._value: str | None = None
        self._fence: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.lost_reason: str | None = None
        self.holder: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return self._value is not None and self.lost_reason is None

    @property
    def token(self) -> int | None:
        return self._fence if self.held else None

    async def acquire(self) -> dict[str, Any]:
        if self._value is not None:
            raise RuntimeError("this RedisEngineLock is already held")
        info = {**_holder_info(), "owner": uuid.uuid4().hex}
        c = self.state.client
        value = json.dumps(info, sort_keys=True)
        fence = await c.eval(_ACQUIRE, 2, self.state.lock_key, self.state.fence_key,
                             value, self.ttl_ms)
        if not fence:
            raw = await c.get(self.state.lock_key)
            holder: dict[str, Any] = {}
            with contextlib.suppress(ValueError, TypeError):
                holder = dict(json.loads(raw)) if raw is not None else {}
            holder.pop("owner", None)
            raise LockHeld(holder, self.state.lock_key)
        self._value, self._fence, self.lost_reason = value, int(fence), None
        self.holder = {k: info[k] for k in ("host", "pid", "since")}
        self._task = asyncio.create_task(self._renew_loop(), name="redis-lock-renew")
        return {**self.holder, "fence": self._fence}

    async def fence_ok(self, token: int | None = None) -> bool:
        """Before every order send. Any error is False: no confirmation, no order."""
        if self._value is None or self.lost_reason is not None:
            return False
        want = self._fence if token is None else token
        try:
            ok = await self.state.client.eval(_FENCE_OK, 2, self.state.lock_key,
                                              self.state.fence_key, self._value, str(want))
        except Exception as exc:  # noqa: BLE001 - fail closed
            logger.warning("fence check failed: {}", exc)
            return False
        return bool(ok)

    async def release(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        value, self._value = self._value, None
        if value is not None:
            with contextlib.suppress(Exception):  # an expired lease is released already
                await self.state.client.eval(_RELEASE, 1, self.state.lock_key, value)

    def stop_renewing(self) -> None:
        """Test and drill hook: behave like a holder that froze (GC pause, stuck loop)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def _lose(self, reason: str) -> None:
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        logger.error("engine lock lost: {}", reason)
        if self.on_lost is not None:
            try:
                result = self.on_lost(reason)
                if asyncio.iscoroutine(result):
                    asyncio.get_running_loop().create_task(result)
            except Exception:  # noqa: BLE001 - the lock is lost regardless
                logger.exception("on_lost callback failed")

    async def _renew_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_ok = loop.time()
        while True:
            await asyncio.sleep(self.renew_every_s)
            try:
                ok = await self.state.client.eval(_RENEW, 1, self.state.lock_key, self._value,
                                                  self.ttl_ms)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                # Redis unreachable: we may still own the lease until it would expire;
                # fence_ok already refuses orders meanwhile. Past that, someone else may own it.
                if loop.time() - last_ok >= self.ttl_ms / 1000.0:
                    self._lose(f"redis unreachable for the whole lease: {exc}")
                    return
                continue
            if not ok:
                self._lose("lock expired or taken by another instance")
                return
            last_ok = loop.time()
