"""R-S2: an environment ARM is single use per host and account, not per data dir: the same
LIVE_ARM_AT used in data dir A is refused in a fresh data dir B within its 600 s
(real SQLite journals, the real per-user state dir, a real redis-server)."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.errors import ArmRefused
from core.journal.sqlite_store import SqliteStore
from core.safety.arm_ledger import KEEP_AFTER_EXPIRY_S, HostArmLedger, ledger_dir
from core.safety.arming import ACK_TEXT, ArmState
from core.safety.live_safety import LiveSafety
from core.safety.redis_state import RedisState, account_id
from tests.safety.safety_support import make_settings, redis_server

NOW = 1_767_225_600.0


def env_settings(data_dir: Path, **over: object):
    fields: dict[str, object] = {"live_arm_ack": ACK_TEXT, "live_arm_at": str(int(NOW) - 30),
                                 "live_max_notional_usd": "100", **over}
    return make_settings(data_dir, **fields)


async def safety_in(data_dir: Path, clock: ManualClock, **over: object) -> LiveSafety:
    data_dir.mkdir(parents=True, exist_ok=True)
    store = await SqliteStore.open(data_dir / "arbops.sqlite3")
    settings = env_settings(data_dir, **over)
    redis = None
    if settings.redis_url is not None:
        redis = RedisState.from_url(settings.redis_url.get_secret_value(),
                                    settings.redis_key_prefix, account_id(settings))
    return LiveSafety(settings, store, clock, redis=redis)


async def close(safety: LiveSafety) -> None:
    await safety.store.close()
    if safety.redis is not None:
        await safety.redis.close()


async def start_live_in(data_dir: Path, clock: ManualClock, run_id: str) -> None:
    """A live start in data_dir uses the env ARM up."""
    safety = await safety_in(data_dir, clock)
    try:
        assert (await safety.arm_view()).failures == []
        await safety.consume_arm(run_id)
    finally:
        await close(safety)


async def test_env_arm_used_in_a_is_refused_in_fresh_b_with_a_clear_message(
        tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    await start_live_in(tmp_path / "a", clock, "run-a")
    b = await safety_in(tmp_path / "b", ManualClock(NOW + 60))  # a fresh journal
    try:
        view = await b.arm_view()
        assert [f.name for f in view.failures] == ["arm_consumed"]
        message = view.failures[0].message
        assert "run run-a" in message and str(tmp_path / "a") in message
        assert "single use per host and account" in message
        assert (await b.arm_status())["armed"] is False
        with pytest.raises(ArmRefused):
            await b.consume_arm("run-b")
        # a new ARM (a new LIVE_ARM_AT) is a new ARM
        fresh = await safety_in(tmp_path / "c", clock, live_arm_at=str(int(NOW)))
        try:
            assert (await fresh.arm_view()).failures == []
        finally:
            await close(fresh)
    finally:
        await close(b)


async def test_another_account_on_the_same_host_has_its_own_arm(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    await start_live_in(tmp_path / "a", clock, "run-a")
    other = await safety_in(tmp_path / "b", clock, binance_api_key="another-account-key")
    try:
        assert (await other.arm_view()).failures == []
    finally:
        await close(other)


async def test_two_data_dirs_racing_for_one_arm_one_wins(tmp_path: Path) -> None:
    """Both gates said yes before either consumed: the O_EXCL claim lets one through."""
    clock = ManualClock(NOW)
    a = await safety_in(tmp_path / "a", clock)
    b = await safety_in(tmp_path / "b", clock)
    try:
        assert (await a.arm_view()).failures == [] and (await b.arm_view()).failures == []
        await a.consume_arm("run-a")
        with pytest.raises(ArmRefused) as refused:
            await b.consume_arm("run-b")
        assert "run run-a" in str(refused.value)
        assert (await b.store.get_flag("arm_consumed:env:" + str(int(NOW) - 30))) is None
    finally:
        await close(a)
        await close(b)


async def test_disarm_in_a_burns_the_env_arm_for_b(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    a = await safety_in(tmp_path / "a", clock)
    try:
        await a.disarm("op")
    finally:
        await close(a)
    b = await safety_in(tmp_path / "b", clock)
    try:
        assert "disarmed by op" in (await b.arm_view()).failures[0].message
    finally:
        await close(b)


async def test_the_record_is_private_and_holds_no_secret(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    await start_live_in(tmp_path / "a", clock, "run-a")
    directory = ledger_dir()
    assert Path(os.environ["XDG_STATE_HOME"]) in directory.parents
    (record,) = list(directory.iterdir())
    assert record.stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    text = record.read_text()
    assert "binance-test-key" not in text and "upbit-test-key" not in text
    assert json.loads(text)["used_by"] == "run run-a"


async def test_an_unreadable_record_refuses(tmp_path: Path) -> None:
    clock = ManualClock(NOW)
    ledger = HostArmLedger("acct", tmp_path / "not-a-dir")
    (tmp_path / "not-a-dir").write_text("a file where the record dir should be")
    a = await safety_in(tmp_path / "a", clock)
    a.arm_ledger = ledger
    try:
        with pytest.raises(ArmRefused) as refused:
            await a.consume_arm("run-a")
        assert "arm_ledger" in str(refused.value)
        assert (await a.store.get_flag("arm_consumed:env:" + str(int(NOW) - 30))) is None
    finally:
        await close(a)


async def test_expired_records_are_pruned(tmp_path: Path) -> None:
    ledger = HostArmLedger("acct", tmp_path / "ledger")
    old = ArmState("env", ACK_TEXT, str(int(NOW)), "100")
    assert await ledger.claim(old, "run-1", tmp_path, NOW) is None
    assert await ledger.used(old) is not None
    newer = ArmState("env", ACK_TEXT, str(int(NOW) + 10_000_000), "100")
    later = NOW + 600 + KEEP_AFTER_EXPIRY_S + 1
    assert await ledger.claim(newer, "run-2", tmp_path, later) is None
    assert await ledger.used(old) is None and await ledger.used(newer) is not None


async def test_with_redis_another_host_of_the_account_is_refused(tmp_path: Path) -> None:
    """Two hosts share nothing on disk (two state dirs here) but the account's Redis."""
    with redis_server(tmp_path / "redis") as server:
        prefix = f"t{uuid.uuid4().hex[:8]}"
        clock = ManualClock(NOW)
        a = await safety_in(tmp_path / "a", clock, redis_url=server.url,
                            redis_key_prefix=prefix)
        a.arm_ledger.directory = tmp_path / "host-a-state"
        try:
            await a.consume_arm("run-a")
        finally:
            await close(a)
        b = await safety_in(tmp_path / "b", clock, redis_url=server.url,
                            redis_key_prefix=prefix)
        b.arm_ledger.directory = tmp_path / "host-b-state"
        try:
            view = await b.arm_view()
            assert [f.name for f in view.failures] == ["arm_consumed"]
            assert "another host of this account" in view.failures[0].message
            with pytest.raises(ArmRefused):
                await b.consume_arm("run-b")
        finally:
            await close(b)
