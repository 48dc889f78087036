"""R-S5 over a real redis-server: lock + fencing, contention between processes, ARM TTL,
kill mirror, and Redis dying under a live holder."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.journal.sqlite_store import SqliteStore
from core.safety.live_safety import LiveSafety
from core.safety.redis_state import FileEngineLock, LockHeld, RedisState
from tests.safety.safety_support import RedisServer, make_settings, redis_server

CHILD = textwrap.dedent("""
    import asyncio, json, sys
    from core.safety.redis_state import LockHeld, RedisState

    async def main(url, prefix, mode):
        st = RedisState.from_url(url, prefix=prefix)
        lock = st.lock(ttl_ms=1000)
        try:
            try:
                info = await lock.acquire()
            except LockHeld as exc:
                print(json.dumps({"refused": str(exc), "holder": exc.holder}), flush=True)
                return 2
            print(json.dumps({"held": info}), flush=True)
            if mode == "hold":  # hold (renewing) until told to go
                await asyncio.to_thread(sys.stdin.readline)
            await lock.release()
            return 0
        finally:
            await st.close()

    sys.exit(asyncio.run(main(*sys.argv[1:4])))
""")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
async def rs(redis_url: str) -> AsyncIterator[RedisState]:
    state = RedisState.from_url(redis_url, prefix=f"t{uuid.uuid4().hex[:8]}")
    try:
        yield state
    finally:
        await state.close()


def child(url: str, prefix: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD, url, prefix, mode], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=os.getcwd())


async def test_second_process_refused_naming_holder(rs, redis_url):
    prefix = rs.lock_key.split(":")[0]
    lock = rs.lock(ttl_ms=1000)
    info = await lock.acquire()
    try:
        proc = child(redis_url, prefix, "try")
        out, _ = await asyncio.to_thread(proc.communicate, None, 20)
        assert proc.returncode == 2, out
        reply = json.loads(out)
        assert reply["holder"]["pid"] == os.getpid() == info["pid"]
        assert f"pid={os.getpid()}" in reply["refused"] and "since=" in reply["refused"]
        assert "owner" not in reply["holder"]
    finally:
        await lock.release()


async def test_lock_held_by_another_process_then_taken_over(rs, redis_url):
    prefix = rs.lock_key.split(":")[0]
    proc = child(redis_url, prefix, "hold")
    try:
        line = await asyncio.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
        held = json.loads(line)["held"]
        await asyncio.sleep(1.2)  # longer than the TTL: only renewal keeps it
        mine = rs.lock(ttl_ms=1000)
        with pytest.raises(LockHeld) as exc:
            await mine.acquire()
        assert exc.value.holder["pid"] == proc.pid and str(proc.pid) in str(exc.value)
        proc.kill()  # dies without releasing: the lease runs out by itself
        await asyncio.to_thread(proc.wait, 10)
        for _ in range(40):
            try:
                got = await mine.acquire()
                break
            except LockHeld:
                await asyncio.sleep(0.1)
        else:
            pytest.fail("lock never freed after the holder died")
        assert got["fence"] > held["fence"] and await mine.fence_ok()
        assert not await mine.fence_ok(held["fence"])  # the dead holder's token is stale
        await mine.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for f in (proc.stdin, proc.stdout):
            if f is not None:
                f.close()


async def test_holder_that_stops_renewing_loses(rs):
    lost: list[str] = []
    a = rs.lock(ttl_ms=300, on_lost=lost.append)
    await a.acquire()
    await asyncio.sleep(0.5)  # renewal keeps it past the TTL
    assert await a.fence_ok()
    a.stop_renewing()  # a frozen holder
    await asyncio.sleep(0.45)
    b = rs.lock(ttl_ms=5000)
    await b.acquire()
    assert not await a.fence_ok() and await b.fence_ok()
    await a.release()  # must not delete b's lock
    assert await b.fence_ok()
    await b.release()


async def test_stolen_lock_fires_callback(rs):
    lost: list[str] = []
    a = rs.lock(ttl_ms=600, on_lost=lost.append)
    await a.acquire()
    await rs.client.delete(rs.lock_key)  # e.g. an operator's DEL, or a failover losing it
    b = rs.lock(ttl_ms=5000)
    await b.acquire()
    for _ in range(30):
        if lost:
            break
        await asyncio.sleep(0.05)
    assert lost and "taken" in lost[0]
    assert not a.held and not await a.fence_ok()
    await a.release()
    await b.release()


async def test_arm_mirror_ttl(rs, tmp_path):
    await rs.mirror_arm({"token": "command:1"}, ttl_s=1)
    assert 0 < await rs.client.ttl(rs.arm_key) <= 1
    assert (await rs.arm_mirror()) == {"token": "command:1"}
    await asyncio.sleep(1.2)
    assert await rs.arm_mirror() is None

    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        safety = LiveSafety(make_settings(tmp_path), store, ManualClock(), redis=rs)
        await safety.arm("100", "op")
        assert 590 <= await rs.client.ttl(rs.arm_key) <= 600
        assert (await safety.arm_view()).failures == []
        await rs.clear_arm()  # expired, or disarmed from another host
        assert [f.name for f in (await safety.arm_view()).failures] == ["arm_mirror"]
        await safety.arm("100", "op")
        await safety.consume_arm("run-1")
        assert await rs.arm_mirror() is None
    finally:
        await store.close()


async def test_kill_mirror(rs, tmp_path):
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        safety = LiveSafety(make_settings(tmp_path), store, ManualClock(), redis=rs)
        assert await safety.halted_reason() is None
        await safety.mirror_kill("kill (by host-b)")
        assert await safety.halted_reason() == "kill (by host-b)"  # SQLite says nothing
        await safety.clear_kill()
        assert await safety.halted_reason() is None
    finally:
        await store.close()


async def test_redis_dies_under_a_live_holder(tmp_path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    state = RedisState.from_url(server.url, prefix="dies", timeout_s=0.3)
    lost: list[str] = []
    try:
        safety = LiveSafety(make_settings(tmp_path), store, ManualClock(), redis=state)
        safety.lock = state.lock(ttl_ms=900, on_lost=lost.append)
        await safety.acquire_lock()
        assert await safety.fence_ok()
        server.stop()
        assert not await safety.fence_ok()  # no confirmation, no order
        for _ in range(60):
            if lost:
                break
            await asyncio.sleep(0.05)
        assert lost and "unreachable" in lost[0]
        failures = await safety.check_live_start(1, 50.0, None)
        by = {f.name: f.message for f in failures}
        assert "unreachable" in by["instance_lock"]
        assert "error while checking" in by["halted"]  # the Redis kill flag cannot be read
    finally:
        server.stop()
        await safety.release_lock()
        await state.close()
        await store.close()


async def test_file_lock_interface(tmp_path):
    a = FileEngineLock(tmp_path)
    info = await a.acquire()
    assert a.held and a.token == 1 and await a.fence_ok() and info["pid"] == os.getpid()
    adopted = FileEngineLock(existing=a._lock)  # the serve process's own InstanceLock
    assert await adopted.acquire() == info and await adopted.fence_ok()
    await adopted.release()  # the adopter never releases the owner's lock
    assert a.held
    await a.release()
    assert not await a.fence_ok()


async def test_status_says_what_redis_holds(redis_url: str, tmp_path: Path) -> None:
    """`arbops status` names Redis next to Telegram and metrics: off without REDIS_URL,
    and with it, the trading state the last write left there."""
    from bot.app import build_service
    from core.config.settings import Settings

    off = await build_service(Settings(data_dir=tmp_path / "a", log_level="WARNING"))
    try:
        assert off.status()["surfaces"]["redis"] == {"state": "off"}
    finally:
        await off.close()
    service = await build_service(Settings(
        data_dir=tmp_path / "b", redis_url=redis_url, log_level="WARNING",
        redis_key_prefix=f"t{uuid.uuid4().hex[:8]}"))
    try:
        await service.kill("status test", "test")
        await service.durable.settle(5.0)
        assert service.status()["surfaces"]["redis"] == {
            "state": "in use", "trading_state_written": "HALTED"}
    finally:
        await service.close()


async def test_status_asks_redis_now_and_is_bounded(redis_url: str, tmp_path: Path) -> None:
    """full_status pings Redis: a measured round trip when it answers; a listener that
    accepts and never answers is "not answering" within the ping's bound."""
    import socket
    import time as _time

    from bot.app import build_service
    from core.config.settings import Settings
    from core.service import REDIS_PING_TIMEOUT_S

    service = await build_service(Settings(
        data_dir=tmp_path / "up", redis_url=redis_url, log_level="WARNING",
        redis_key_prefix=f"t{uuid.uuid4().hex[:8]}"))
    try:
        redis = (await service.full_status())["surfaces"]["redis"]
        assert redis["state"] == "in use" and 0 < redis["ping_ms"] < 1000 * REDIS_PING_TIMEOUT_S
    finally:
        await service.close()
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    try:
        service = await build_service(Settings(
            data_dir=tmp_path / "mute", log_level="WARNING",
            redis_url=f"redis://127.0.0.1:{mute.getsockname()[1]}/0"))
        try:
            started = _time.monotonic()
            redis = (await service.full_status())["surfaces"]["redis"]
            assert redis["state"] == "not answering" and "ping_ms" not in redis
            assert _time.monotonic() - started < REDIS_PING_TIMEOUT_S + 2.0
        finally:
            await service.close()
    finally:
        mute.close()
