"""R-S2 ARM: boundaries (tables + hypothesis), single use, persistence across restarts."""
from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.clock import ManualClock
from core.errors import ArmRefused
from core.journal.sqlite_store import SqliteStore
from core.safety.arming import ACK_TEXT, ArmState, check_ack, parse_armed_at, parse_cap
from core.safety.live_safety import LiveSafety
from tests.safety.safety_support import make_settings

NOW = 1_767_225_600.0  # ManualClock's start


def names(failures):
    return sorted({f.name for f in failures})


def env_arm(ack=ACK_TEXT, at=None, cap="100.0"):
    return ArmState("env", ack, str(int(NOW)) if at is None else at, cap)


# --- cap ---------------------------------------------------------------------------
@pytest.mark.parametrize("cap,ok", [
    ("9.99", False), ("10", True), ("10.0", True), ("100.0", True), ("1000", True),
    ("1000.0", True), ("1000.01", False), ("1000.0000000001", False), ("-50", False),
    ("0", False), ("abc", False), ("", False), ("NaN", False), ("nan", False), ("inf", False),
    ("1e3", False), (" 100", False), ("100 ", False), ("1_000", False), (None, False),
    (10, True), (1000, True), (9.99, False), (1000.01, False), (float("nan"), False),
    (float("inf"), False), (-100.0, False), (True, False), ([100], False),
])
def test_cap_table(cap, ok):
    _, failures = parse_cap(cap)
    assert (failures == []) is ok, failures
    if not ok:
        assert names(failures) == ["arm_cap"]


@given(st.decimals(min_value=Decimal(10), max_value=Decimal(1000), places=2))
def test_cap_in_range_accepted(d):
    assert parse_cap(str(d))[1] == []


@given(st.one_of(
    st.decimals(max_value=Decimal("9.99"), places=2, allow_nan=False, allow_infinity=False),
    st.decimals(min_value=Decimal("1000.01"), max_value=Decimal(9999999), places=2),
))
def test_cap_out_of_range_refused(d):
    assert names(parse_cap(str(d))[1]) == ["arm_cap"]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_cap_float_inputs(x):
    ok = math.isfinite(x) and 10 <= Decimal(repr(x)) <= 1000
    assert (parse_cap(x)[1] == []) is ok


@given(st.text(max_size=12))
def test_cap_arbitrary_text_never_crashes(t):
    _, failures = parse_cap(t)
    assert failures == [] or names(failures) == ["arm_cap"]


# --- armed-at ----------------------------------------------------------------------
@pytest.mark.parametrize("age,ok", [(0, True), (1, True), (599, True), (600, True),
                                    (601, False), (3600, False), (-1, False), (-600, False)])
def test_armed_at_age_table(age, ok):
    at = str(int(NOW) - age)
    _, failures = parse_armed_at(at, NOW)
    assert (failures == []) is ok
    if not ok:
        assert names(failures) == ["arm_age"]
        assert ("future" in failures[0].message) is (age < 0)


@pytest.mark.parametrize("raw", ["1767225600.0", "1767225600.5", " 1767225600", "1767225600\n",
                                 "+1767225600", "-5", "", "abc", "1.7e9", "١٧٦٧٢٢٥٦٠٠"])
def test_armed_at_not_an_integer(raw):
    _, failures = parse_armed_at(raw, NOW)
    assert names(failures) == ["arm_at"]


@given(st.integers(min_value=-10_000, max_value=10_000))
def test_armed_at_property(age):
    _, failures = parse_armed_at(str(int(NOW) - age), NOW)
    assert (failures == []) is (0 <= age <= 600)


# --- ack ---------------------------------------------------------------------------
@pytest.mark.parametrize("ack", ["i_understand_live_risk", "I_UNDERSTAND_LIVE_RISK ",
                                 " I_UNDERSTAND_LIVE_RISK", "I UNDERSTAND LIVE RISK",
                                 "I_UNDERSTAND_LIVE_RISK\n", "", None, "yes"])
def test_ack_refused(ack):
    assert names(check_ack(ack)) == ["arm_ack"]


@given(st.text(max_size=30))
def test_ack_only_exact(t):
    assert (check_ack(t) == []) is (t == ACK_TEXT)


def test_every_failure_named_at_once():
    arm = ArmState("env", "nope", "12.5", "5000")
    assert names(arm.check(NOW)) == ["arm_ack", "arm_at", "arm_cap"]


def test_env_arm_valid_and_describe():
    arm = env_arm()
    assert arm.check(NOW) == []
    d = arm.describe()
    assert d["per_leg_cap_usd"] == 100.0 and d["mode"].startswith("LIVE")
    assert d["expires_at"] == "2026-01-01T00:10:00+00:00"
    assert "$100" in d["text"]


def test_command_arm_expires_by_monotonic_clock():
    arm = ArmState.arm_command("100", NOW + 0.7, 50.0)
    assert arm.check(NOW + 0.7 + 600, 650.0) == []
    assert names(arm.check(NOW + 0.7 + 601, 651.0)) == ["arm_age"]
    # The wall clock jumped back an hour: the monotonic age still expires it.
    assert names(arm.check(NOW - 3600, 651.0)) == ["arm_age"]
    assert names(ArmState.arm_command("9.99", NOW, 0.0).check(NOW, 0.0)) == ["arm_cap"]


def test_from_env_none_when_unset(tmp_path):
    assert ArmState.from_env(make_settings(tmp_path)) is None


# --- single use, across restarts (real SQLite) --------------------------------------
async def test_consumed_env_arm_refused_after_restart(tmp_path):
    clock = ManualClock(NOW)
    settings = make_settings(tmp_path, live_arm_ack=ACK_TEXT, live_arm_at=str(int(NOW)),
                             live_max_notional_usd="100")
    db = tmp_path / "arbops.sqlite3"
    store = await SqliteStore.open(db)
    safety = LiveSafety(settings, store, clock)
    assert (await safety.arm_view()).failures == []
    await safety.consume_arm("run-1")
    assert names((await safety.arm_view()).failures) == ["arm_consumed"]
    await store.close()

    store2 = await SqliteStore.open(db)  # a restart: new objects, same file
    try:
        again = LiveSafety(settings, store2, ManualClock(NOW + 5))
        view = await again.arm_view()
        assert names(view.failures) == ["arm_consumed"]
        assert "run-1" in view.failures[0].message
        assert (await again.arm_status())["armed"] is False
    finally:
        await store2.close()


async def test_command_arm_single_use_and_disarm(tmp_path):
    clock = ManualClock(NOW)
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        safety = LiveSafety(make_settings(tmp_path), store, clock)
        assert names((await safety.arm_view()).failures) == ["arm_missing"]
        out = await safety.arm("100", "op")
        assert out["armed"] is True and out["arm_cap_usd"] == 100.0
        assert out["arm_expires_at"] == "2026-01-01T00:10:00+00:00"
        # seen from another process (no monotonic stamp): the wall age applies
        other = LiveSafety(make_settings(tmp_path), store, clock)
        assert (await other.arm_view()).failures == []
        await safety.consume_arm("run-1")
        assert names((await safety.arm_view()).failures) == ["arm_missing"]
        assert names((await other.arm_view()).failures) == ["arm_missing"]

        await safety.arm("50", "op")
        await safety.disarm("op")
        assert (await safety.arm_status())["armed"] is False
        with pytest.raises(ArmRefused) as exc:
            await safety.arm("1000.01", "op")
        assert names(exc.value.failures) == ["arm_cap"]
        kinds = [e["kind"] for e in await store.events(limit=10)]
        assert kinds[:3] == ["disarmed", "armed", "arm_consumed"]
    finally:
        await store.close()


async def test_disarm_burns_env_arm(tmp_path):
    clock = ManualClock(NOW)
    settings = make_settings(tmp_path, live_arm_ack=ACK_TEXT, live_arm_at=str(int(NOW) - 10),
                             live_max_notional_usd="50")
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        safety = LiveSafety(settings, store, clock)
        assert (await safety.arm_status())["armed"] is True
        await safety.disarm("op")
        view = await safety.arm_view()
        assert names(view.failures) == ["arm_consumed"]
        assert "disarmed by op" in view.failures[0].message
    finally:
        await store.close()


async def test_consume_uses_up_env_arm_too_and_refuses_invalid(tmp_path):
    clock = ManualClock(NOW)
    settings = make_settings(tmp_path, live_arm_ack=ACK_TEXT, live_arm_at=str(int(NOW) - 5),
                             live_max_notional_usd="50")
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        safety = LiveSafety(settings, store, clock)
        await safety.arm("100", "op")  # the command ARM wins over the env vars
        assert (await safety.arm_status())["arm_cap_usd"] == 100.0
        await safety.consume_arm("run-1")
        assert names((await safety.arm_view()).failures) == ["arm_consumed"]  # env burned
        await safety.arm("100", "op")
        clock.advance(601)
        with pytest.raises(ArmRefused) as exc:  # expired between the gate and the start
            await safety.consume_arm("run-2")
        assert "arm_age" in names(exc.value.failures)
    finally:
        await store.close()
