"""Guards at and around every boundary (R-K3, R-K4), pure and fast.

Every guard of `GuardBook.evaluate` is driven with hand-built `Snapshot`s; the
window states (`Sustained`, `CounterWindow`, `RollingMax`) are checked against
brute-force recomputations with Hypothesis. The watchdog's settings mapping
(`thresholds_from`) and the start-up memory headroom warnings close the file.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config.settings import Settings
from core.safety.watchdog import headroom_warnings, thresholds_from
from guards.book import GuardBook, worst
from guards.snapshot import Snapshot
from guards.thresholds import Thresholds
from guards.verdict import Action, Verdict
from guards.windows import CounterWindow, RollingMax, Sustained

OK, ALERT, KILL = Action.OK, Action.ALERT, Action.KILL
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z

# Every field, with calm values: no guard trips on snap() itself.
CALM: dict[str, Any] = {
    "now": START,
    "mono": 0.0,
    "run_started_mono": None,
    "phase": None,
    "loop_latency_ms": 5.0,
    "cpu_percent": 10.0,
    "rss_mb": 100.0,
    "rss_baseline_mb": 100.0,
    "heartbeat_age_s": 0.1,
    "pnl_usd": 0.0,
    "daily_pnl_usd": 0.0,
    "worst_trade_pnl_usd": 0.0,
    "open_positions": 0,
    "consecutive_errors": 0,
    "unhandled_errors": 0,
    "exchange_errors_total": 0,
    "rate_limit_hits_total": 0,
    "rate_limit_wait_s": 0.0,
    "failed_fills_total": 0,
    "last_entry_mono": None,
    "last_exit_mono": None,
}


def test_factory_covers_every_snapshot_field() -> None:
    assert set(CALM) == {f.name for f in dataclasses.fields(Snapshot)}


def snap(**kw: Any) -> Snapshot:
    unknown = set(kw) - set(CALM)
    assert not unknown, unknown
    return Snapshot(**{**CALM, **kw})


def book(**th: Any) -> GuardBook:
    return GuardBook(Thresholds(**th))


def by_name(verdicts: list[Verdict], name: str) -> Verdict | None:
    found = [v for v in verdicts if v.name == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def action_of(verdicts: list[Verdict], name: str) -> Action:
    v = by_name(verdicts, name)
    assert v is not None, f"no verdict named {name}: {[x.name for x in verdicts]}"
    return v.action


def one(name: str, **kw: Any) -> Verdict:
    """The named verdict of one evaluation on a fresh book."""
    v = by_name(book().evaluate(snap(**kw)), name)
    assert v is not None, name
    return v


def test_calm_snapshot_trips_nothing() -> None:
    verdicts = book().evaluate(snap())
    assert [v for v in verdicts if v.tripped] == []
    assert worst(verdicts) is None
    with_run = book().evaluate(snap(run_started_mono=0.0, phase=2, mono=10.0))
    assert [v for v in with_run if v.tripped] == []


# --- R-K3 code-level guards: table at and around each boundary ------------------------
SIMPLE = [
    # (verdict name, field, value, expected action)
    ("daily_loss", "daily_pnl_usd", -299.99, OK),
    ("daily_loss", "daily_pnl_usd", -300.0, OK),
    ("daily_loss", "daily_pnl_usd", -300.01, KILL),
    ("daily_loss", "daily_pnl_usd", -10_000.0, KILL),
    ("daily_loss", "daily_pnl_usd", 500.0, OK),
    ("single_trade_loss", "worst_trade_pnl_usd", -100.0, OK),
    ("single_trade_loss", "worst_trade_pnl_usd", -100.01, KILL),
    ("single_trade_loss", "worst_trade_pnl_usd", 0.0, OK),
    ("open_positions", "open_positions", 10, OK),
    ("open_positions", "open_positions", 11, KILL),
    ("max_concurrent", "open_positions", 5, OK),
    ("max_concurrent", "open_positions", 6, ALERT),
    ("max_concurrent", "open_positions", 11, ALERT),
    ("consecutive_errors", "consecutive_errors", 5, OK),
    ("consecutive_errors", "consecutive_errors", 6, KILL),
    ("heartbeat", "heartbeat_age_s", 5.0, OK),
    ("heartbeat", "heartbeat_age_s", 5.01, KILL),
    ("heartbeat", "heartbeat_age_s", 0.0, OK),
    ("rate_limit_wait", "rate_limit_wait_s", 0.999, OK),
    ("rate_limit_wait", "rate_limit_wait_s", 1.0, ALERT),
    ("rate_limit_wait", "rate_limit_wait_s", 7.5, ALERT),
]


@pytest.mark.parametrize(("name", "field", "value", "expected"), SIMPLE,
                         ids=[f"{n}-{v}" for n, _f, v, _e in SIMPLE])
def test_simple_threshold_boundaries(name: str, field: str, value: Any, expected: Action) -> None:
    v = one(name, **{field: value})
    assert v.action is expected, v
    if expected is not OK:
        assert v.reason, "a tripped verdict says why"


MEMORY = [
    # rss, baseline -> memory (anomaly, 300), memory_kill (500), rss_growth (150)
    (300.0, 300.0, OK, OK, OK),
    (300.01, 300.0, KILL, OK, OK),
    (500.0, 400.0, KILL, OK, OK),
    (500.01, 400.0, KILL, KILL, OK),
    (250.0, 100.0, OK, OK, OK),  # growth exactly 150
    (250.01, 100.0, OK, OK, KILL),  # growth 150.01
]


@pytest.mark.parametrize(("rss", "base", "anomaly", "kill", "growth"), MEMORY)
def test_memory_boundaries(rss: float, base: float, anomaly: Action, kill: Action,
                           growth: Action) -> None:
    verdicts = book().evaluate(snap(rss_mb=rss, rss_baseline_mb=base))
    assert action_of(verdicts, "memory") is anomaly
    assert action_of(verdicts, "memory_kill") is kill
    assert action_of(verdicts, "rss_growth") is growth


def test_worst_picks_a_kill_over_alerts() -> None:
    verdicts = book().evaluate(snap(open_positions=11, rate_limit_wait_s=2.0))
    top = worst(verdicts)
    assert top is not None and top.action is KILL and top.name == "open_positions"


# --- exchange errors: per-minute rise of a cumulative counter ---------------------------
def feed(b: GuardBook, samples: list[dict[str, Any]]) -> list[list[Verdict]]:
    return [b.evaluate(snap(**s)) for s in samples]


@pytest.mark.parametrize(("rise", "kill", "alert"), [
    (0, OK, OK), (4, OK, OK), (5, OK, ALERT), (10, OK, ALERT), (11, KILL, ALERT), (40, KILL, ALERT),
])
def test_exchange_errors_per_minute(rise: int, kill: Action, alert: Action) -> None:
    b = book()
    out = feed(b, [{"mono": 100.0, "exchange_errors_total": 7},
                   {"mono": 130.0, "exchange_errors_total": 7 + rise}])
    assert action_of(out[0], "exchange_errors") is OK  # the first sample is the base line
    assert action_of(out[1], "exchange_errors") is kill
    assert action_of(out[1], "exchange_errors_target") is alert
    assert by_name(out[1], "exchange_errors").observed == rise


def test_exchange_errors_old_burst_leaves_the_minute() -> None:
    b = book()
    out = feed(b, [{"mono": 0.0, "exchange_errors_total": 0},
                   {"mono": 1.0, "exchange_errors_total": 11},
                   {"mono": 60.5, "exchange_errors_total": 11},
                   {"mono": 61.0, "exchange_errors_total": 11},
                   {"mono": 62.0, "exchange_errors_total": 11}])
    assert action_of(out[1], "exchange_errors") is KILL
    assert action_of(out[2], "exchange_errors") is KILL  # still inside 60 s of the start
    assert action_of(out[3], "exchange_errors") is OK  # 60 s after the burst sample
    assert action_of(out[4], "exchange_errors_target") is OK


def test_exchange_errors_slow_rise_alerts_but_does_not_kill() -> None:
    b = book()
    samples = [{"mono": 10.0 * i, "exchange_errors_total": i} for i in range(20)]
    out = feed(b, samples)
    kills = [action_of(v, "exchange_errors") for v in out]
    alerts = [action_of(v, "exchange_errors_target") for v in out]
    assert KILL not in kills  # 6 per minute at most
    assert alerts[5] is ALERT and alerts[4] is OK
    assert by_name(out[-1], "exchange_errors").observed == 6


def test_exchange_errors_counter_already_high_at_first_sample_is_not_a_burst() -> None:
    out = feed(book(), [{"mono": 5.0, "exchange_errors_total": 500}])
    assert action_of(out[0], "exchange_errors") is OK


# --- rate-limit hits in 10 min -----------------------------------------------------------
@pytest.mark.parametrize(("hits", "expected"), [(5, OK), (6, KILL)])
def test_rate_limit_hits_in_ten_minutes(hits: int, expected: Action) -> None:
    out = feed(book(), [{"mono": 0.0, "rate_limit_hits_total": 0},
                        {"mono": 300.0, "rate_limit_hits_total": hits - 1},
                        {"mono": 599.0, "rate_limit_hits_total": hits}])
    assert action_of(out[2], "rate_limit_hits") is expected
    assert by_name(out[2], "rate_limit_hits").window_s == 600.0


def test_rate_limit_hits_older_than_ten_minutes_do_not_count() -> None:
    out = feed(book(), [{"mono": 0.0, "rate_limit_hits_total": 0},
                        {"mono": 1.0, "rate_limit_hits_total": 6},
                        {"mono": 600.0, "rate_limit_hits_total": 6},
                        {"mono": 601.0, "rate_limit_hits_total": 7}])
    assert action_of(out[1], "rate_limit_hits") is KILL
    assert action_of(out[2], "rate_limit_hits") is KILL  # window start 0: the base line
    assert action_of(out[3], "rate_limit_hits") is OK  # only 1 hit in (1, 601]


# --- failed fills: one ALERT per new failure ------------------------------------------------
def test_failed_fill_alerts_once_per_new_failure() -> None:
    out = feed(book(), [{"failed_fills_total": n, "mono": float(i)}
                        for i, n in enumerate([0, 1, 1, 1, 3, 3])])
    actions = [action_of(v, "failed_fill") for v in out]
    assert actions == [OK, ALERT, OK, OK, ALERT, OK]
    assert by_name(out[4], "failed_fill").observed == 2


# --- inactivity ---------------------------------------------------------------------------
@pytest.mark.parametrize(("mono", "no_entry", "no_exit"), [
    (299.99, OK, OK), (300.0, OK, OK), (300.01, ALERT, OK), (600.0, ALERT, OK),
    (600.01, ALERT, ALERT),
])
def test_no_entry_and_no_exit_alerts(mono: float, no_entry: Action, no_exit: Action) -> None:
    verdicts = book().evaluate(snap(run_started_mono=0.0, phase=2, mono=mono))
    assert action_of(verdicts, "no_entry") is no_entry
    assert action_of(verdicts, "no_exit") is no_exit
    assert by_name(verdicts, "phase1_no_entry") is None  # phase 2


def test_inactivity_counts_from_the_last_entry_and_exit() -> None:
    verdicts = book().evaluate(snap(run_started_mono=0.0, phase=1, mono=1000.0,
                                    last_entry_mono=700.0, last_exit_mono=399.99))
    assert action_of(verdicts, "no_entry") is OK  # 300 s since the entry
    assert action_of(verdicts, "no_exit") is ALERT  # 600.01 s since the exit
    assert by_name(verdicts, "phase1_no_entry") is None  # phase 1 had its entry


def test_no_run_no_inactivity_verdicts() -> None:
    verdicts = book().evaluate(snap(run_started_mono=None, mono=10_000.0))
    assert {"no_entry", "no_exit", "phase1_no_entry"}.isdisjoint(v.name for v in verdicts)


@pytest.mark.parametrize(("elapsed", "expected"), [(179.99, OK), (180.0, OK), (180.01, KILL)])
def test_phase1_no_entry_after_three_minutes_kills(elapsed: float, expected: Action) -> None:
    verdicts = book().evaluate(snap(run_started_mono=50.0, phase=1, mono=50.0 + elapsed))
    assert action_of(verdicts, "phase1_no_entry") is expected


@pytest.mark.parametrize(("phase", "errors", "present"), [
    (1, 0, False), (1, 1, True), (1, 3, True), (2, 1, False), (3, 5, False), (None, 1, False),
])
def test_phase1_unhandled_exception_kills(phase: int | None, errors: int, present: bool) -> None:
    verdicts = book().evaluate(snap(phase=phase, unhandled_errors=errors,
                                    run_started_mono=0.0 if phase else None, mono=1.0,
                                    last_entry_mono=0.5 if phase else None))
    v = by_name(verdicts, "phase1_exception")
    if present:
        assert v is not None and v.action is KILL and v.observed == errors
    else:
        assert v is None


# --- PnL fall from the rolling 30-minute peak -------------------------------------------------
def test_pnl_fall_boundary() -> None:
    out = feed(book(), [{"mono": 0.0, "pnl_usd": 100.0}, {"mono": 10.0, "pnl_usd": 50.0}])
    assert action_of(out[1], "pnl_fall") is OK  # a fall of exactly $50
    out = feed(book(), [{"mono": 0.0, "pnl_usd": 100.0}, {"mono": 10.0, "pnl_usd": 49.99}])
    assert action_of(out[1], "pnl_fall") is KILL
    assert by_name(out[1], "pnl_fall").observed == pytest.approx(50.01)


def test_pnl_fall_from_a_negative_start_and_the_latest_peak() -> None:
    out = feed(book(), [{"mono": 0.0, "pnl_usd": -20.0}, {"mono": 60.0, "pnl_usd": 10.0},
                        {"mono": 120.0, "pnl_usd": -39.0}, {"mono": 180.0, "pnl_usd": -40.01}])
    assert [action_of(v, "pnl_fall") for v in out] == [OK, OK, OK, KILL]


def test_pnl_peak_older_than_30_minutes_no_longer_counts() -> None:
    at_edge = feed(book(), [{"mono": 0.0, "pnl_usd": 100.0}, {"mono": 1800.0, "pnl_usd": 40.0}])
    assert action_of(at_edge[1], "pnl_fall") is KILL  # exactly 30 min: still the peak
    past = feed(book(), [{"mono": 0.0, "pnl_usd": 100.0}, {"mono": 1800.5, "pnl_usd": 40.0}])
    assert action_of(past[1], "pnl_fall") is OK
    # with a later, lower peak inside the window, that one counts
    mid = feed(book(), [{"mono": 0.0, "pnl_usd": 100.0}, {"mono": 900.0, "pnl_usd": 70.0},
                        {"mono": 1801.0, "pnl_usd": 20.01}, {"mono": 1802.0, "pnl_usd": 19.99}])
    assert [action_of(v, "pnl_fall") for v in mid] == [OK, OK, OK, KILL]


# --- sustained latency and CPU ------------------------------------------------------------
SUSTAINED = [("loop_latency", "loop_latency_ms", 100.0, 60.0),
             ("cpu", "cpu_percent", 80.0, 120.0)]


@pytest.mark.parametrize(("name", "field", "th", "window"), SUSTAINED)
def test_sustained_breach_kills_exactly_when_the_window_is_held(
    name: str, field: str, th: float, window: float
) -> None:
    b = book()
    out = feed(b, [{"mono": float(t), field: th + 0.01} for t in range(int(window) + 2)])
    actions = [action_of(v, name) for v in out]
    assert actions[: int(window)] == [OK] * int(window)
    assert actions[int(window)] is KILL and actions[int(window) + 1] is KILL


@pytest.mark.parametrize(("name", "field", "th", "window"), SUSTAINED)
def test_sustained_at_threshold_never_kills_and_a_dip_resets(
    name: str, field: str, th: float, window: float
) -> None:
    b = book()
    at = feed(b, [{"mono": float(t), field: th} for t in range(0, int(window) * 3, 5)])
    assert all(action_of(v, name) is OK for v in at)
    b = book()
    samples = [{"mono": float(t), field: th * 2} for t in range(int(window))]
    samples.append({"mono": window, field: th})  # one calm sample at the window's end
    samples += [{"mono": window + 1 + t, field: th * 2} for t in range(int(window))]
    out = feed(b, samples)
    assert all(action_of(v, name) is OK for v in out)
    more = b.evaluate(snap(mono=2 * window + 1, **{field: th * 2}))
    assert action_of(more, name) is KILL


# --- Hypothesis: the sustained windows -----------------------------------------------------
spacings = st.floats(min_value=0.001, max_value=90.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    which=st.sampled_from(SUSTAINED),
    seq=st.lists(st.tuples(spacings, st.floats(min_value=0.0, max_value=5000.0)),
                 min_size=1, max_size=80),
)
def test_breach_shorter_than_its_window_never_kills(
    which: tuple[str, str, float, float], seq: list[tuple[float, float]]
) -> None:
    name, field, th, window = which
    b = book()
    mono, run_start = 0.0, None
    for dt, value in seq:
        mono += dt
        if value > th:
            run_start = mono if run_start is None else run_start
            if mono - run_start >= window:  # keep every breach run shorter than the window
                value, run_start = th, None
        else:
            run_start = None
        assert action_of(b.evaluate(snap(mono=mono, **{field: value})), name) is OK


@settings(max_examples=150, deadline=None)
@given(
    which=st.sampled_from(SUSTAINED),
    calm=st.lists(st.tuples(spacings, st.floats(min_value=0.0, max_value=1.0)), max_size=10),
    # spacing as a share of the window (1/200 .. 1.5 windows), so an example stays small
    breach=st.lists(st.tuples(st.floats(min_value=0.005, max_value=1.5),
                              st.floats(min_value=1.0001, max_value=50.0)),
                    min_size=1, max_size=50),
)
def test_breach_held_for_the_window_kills_within_one_sample(
    which: tuple[str, str, float, float], calm: list[tuple[float, float]],
    breach: list[tuple[float, float]],
) -> None:
    name, field, th, window = which
    b = book()
    mono = 0.0
    for dt, frac in calm:  # calm samples first (at or under the threshold)
        mono += dt
        assert action_of(b.evaluate(snap(mono=mono, **{field: th * frac})), name) is OK
    first: float | None = None
    killed_at = None
    i = 0
    while killed_at is None:
        share, factor = breach[i % len(breach)]
        mono += share * window
        if first is None:
            first = mono
        action = action_of(b.evaluate(snap(mono=mono, **{field: th * factor})), name)
        if mono - first < window:
            assert action is OK, (mono, first)
        else:
            # the first sample at or after the window's end is a KILL
            assert action is KILL, (mono, first)
            killed_at = mono
        i += 1
    assert killed_at - first >= window


# --- Hypothesis: determinism --------------------------------------------------------------
def snapshots() -> st.SearchStrategy[list[Snapshot]]:
    money = st.floats(min_value=-1000.0, max_value=1000.0, allow_nan=False)
    fields = st.fixed_dictionaries({
        "dt": st.floats(min_value=0.0, max_value=120.0),
        "phase": st.sampled_from([None, 1, 2, 3]),
        "loop_latency_ms": st.floats(min_value=0.0, max_value=500.0),
        "cpu_percent": st.floats(min_value=0.0, max_value=200.0),
        "rss_mb": st.floats(min_value=10.0, max_value=800.0),
        "heartbeat_age_s": st.floats(min_value=0.0, max_value=20.0),
        "pnl_usd": money,
        "daily_pnl_usd": money,
        "worst_trade_pnl_usd": st.floats(min_value=-200.0, max_value=0.0),
        "open_positions": st.integers(0, 15),
        "consecutive_errors": st.integers(0, 10),
        "unhandled_errors": st.integers(0, 2),
        "d_errors": st.integers(0, 8),
        "d_hits": st.integers(0, 3),
        "rate_limit_wait_s": st.floats(min_value=0.0, max_value=3.0),
        "d_failed": st.integers(0, 2),
        "entry_ago": st.one_of(st.none(), st.floats(min_value=0.0, max_value=900.0)),
        "exit_ago": st.one_of(st.none(), st.floats(min_value=0.0, max_value=900.0)),
    })

    def build(rows: list[dict[str, Any]]) -> list[Snapshot]:
        out, mono, errs, hits, failed = [], 0.0, 0, 0, 0
        for r in rows:
            mono += r["dt"]
            errs += r["d_errors"]
            hits += r["d_hits"]
            failed += r["d_failed"]
            running = r["phase"] is not None
            out.append(snap(
                now=START + mono, mono=mono, run_started_mono=0.0 if running else None,
                phase=r["phase"], loop_latency_ms=r["loop_latency_ms"],
                cpu_percent=r["cpu_percent"], rss_mb=r["rss_mb"], rss_baseline_mb=100.0,
                heartbeat_age_s=r["heartbeat_age_s"], pnl_usd=r["pnl_usd"],
                daily_pnl_usd=r["daily_pnl_usd"], worst_trade_pnl_usd=r["worst_trade_pnl_usd"],
                open_positions=r["open_positions"], consecutive_errors=r["consecutive_errors"],
                unhandled_errors=r["unhandled_errors"], exchange_errors_total=errs,
                rate_limit_hits_total=hits, rate_limit_wait_s=r["rate_limit_wait_s"],
                failed_fills_total=failed,
                last_entry_mono=None if r["entry_ago"] is None or not running
                else max(mono - r["entry_ago"], 0.0),
                last_exit_mono=None if r["exit_ago"] is None or not running
                else max(mono - r["exit_ago"], 0.0),
            ))
        return out

    return st.lists(fields, min_size=1, max_size=60).map(build)


@settings(max_examples=100, deadline=None)
@given(seq=snapshots())
def test_same_inputs_same_verdicts(seq: list[Snapshot]) -> None:
    a, b = book(), book()
    first = [a.evaluate(s) for s in seq]
    second = [b.evaluate(s) for s in seq]
    assert first == second
    for verdicts in first:
        assert all(math.isfinite(v.observed) for v in verdicts)
        assert len({v.name for v in verdicts}) == len(verdicts)  # one verdict per guard


# --- Hypothesis: the window states against brute force --------------------------------------
# Times are multiples of 1/4 s so the window arithmetic is exact in binary floating point.
quarter_steps = st.integers(min_value=0, max_value=400).map(lambda n: n / 4)


@settings(max_examples=200, deadline=None)
@given(window=st.integers(min_value=1, max_value=120).map(float),
       seq=st.lists(st.tuples(quarter_steps, st.integers(0, 20)), min_size=1, max_size=120))
def test_counter_window_matches_brute_force(window: float, seq: list[tuple[float, int]]) -> None:
    w = CounterWindow(window)
    points: list[tuple[float, int]] = []
    mono, total = 0.0, 0
    for dt, rise in seq:
        mono += dt
        total += rise
        points.append((mono, total))
        at_start = [p for p in points if p[0] <= mono - window]
        base = at_start[-1][1] if at_start else points[0][1]
        assert w.update(total, mono) == total - base


@settings(max_examples=200, deadline=None)
@given(window=st.integers(min_value=1, max_value=120).map(float),
       seq=st.lists(st.tuples(quarter_steps, st.floats(min_value=-1e6, max_value=1e6)),
                    min_size=1, max_size=120))
def test_rolling_max_matches_brute_force(window: float, seq: list[tuple[float, float]]) -> None:
    r = RollingMax(window)
    points: list[tuple[float, float]] = []
    mono = 0.0
    for dt, value in seq:
        mono += dt
        points.append((mono, value))
        expected = max(v for m, v in points if mono - m <= window)
        assert r.update(value, mono) == expected


@settings(max_examples=200, deadline=None)
@given(seq=st.lists(st.tuples(quarter_steps, st.booleans()), min_size=1, max_size=100))
def test_sustained_matches_brute_force(seq: list[tuple[float, bool]]) -> None:
    s = Sustained(30.0)
    mono, since = 0.0, None
    for dt, breach in seq:
        mono += dt
        since = (since if since is not None else mono) if breach else None
        assert s.update(breach, mono) == (mono - since if since is not None else 0.0)


# --- the watchdog's settings mapping and memory headroom ---------------------------------------
def guard_settings() -> list[str]:
    return [n for n in Settings.model_fields if n.startswith("guard_")]


def test_thresholds_from_default_settings_are_the_runbook_defaults() -> None:
    s = Settings(data_dir="unused")
    th = thresholds_from(s)
    assert th == Thresholds()  # the settings' defaults are the runbook's, like Thresholds'
    for name in guard_settings():
        assert getattr(th, name.removeprefix("guard_")) == getattr(s, name), name
    assert th.max_concurrent == s.max_concurrent == 5


def test_thresholds_from_maps_every_guard_setting() -> None:
    th_fields = {f.name for f in dataclasses.fields(Thresholds)}
    mapped = {n.removeprefix("guard_") for n in guard_settings()}
    assert th_fields == mapped | {"max_concurrent"}, th_fields ^ (mapped | {"max_concurrent"})
    # every setting gets its own distinct, non-default value; each must arrive
    overrides: dict[str, Any] = {}
    for i, name in enumerate(guard_settings(), start=1):
        default = Settings.model_fields[name].default
        overrides[name] = type(default)(default * 3 + i)
    s = Settings(data_dir="unused", max_concurrent=7, **overrides)
    th = thresholds_from(s)
    for name, value in overrides.items():
        assert getattr(th, name.removeprefix("guard_")) == value, name
    assert th.max_concurrent == 7


def test_thresholds_from_settings_drive_the_book() -> None:
    th = thresholds_from(Settings(data_dir="unused", guard_daily_loss_usd=50.0,
                                  guard_max_open_positions=3, max_concurrent=2))
    verdicts = GuardBook(th).evaluate(snap(daily_pnl_usd=-50.01, open_positions=3))
    assert action_of(verdicts, "daily_loss") is KILL
    assert action_of(verdicts, "open_positions") is OK
    assert action_of(verdicts, "max_concurrent") is ALERT


@pytest.mark.parametrize(("rss", "names"), [
    (50.0, []),
    (240.0, []),  # exactly 20 % below 300: not under
    (241.0, ["ARBOPS_GUARD_MEMORY_ANOMALY_MB"]),
    (400.0, ["ARBOPS_GUARD_MEMORY_ANOMALY_MB"]),
    (401.0, ["ARBOPS_GUARD_MEMORY_ANOMALY_MB", "ARBOPS_GUARD_MEMORY_KILL_MB"]),
    (600.0, ["ARBOPS_GUARD_MEMORY_ANOMALY_MB", "ARBOPS_GUARD_MEMORY_KILL_MB"]),
])
def test_headroom_warnings(rss: float, names: list[str]) -> None:
    warnings = headroom_warnings(rss, Settings(data_dir="unused"))
    assert len(warnings) == len(names), warnings
    for text, name in zip(warnings, names, strict=True):
        assert name in text
        assert f"{rss:.0f} MB" in text


def test_headroom_warnings_follow_the_settings() -> None:
    s = Settings(data_dir="unused", guard_memory_anomaly_mb=1000.0, guard_memory_kill_mb=2000.0)
    assert headroom_warnings(400.0, s) == []
    s = Settings(data_dir="unused", memory_headroom_warn=0.5)
    warned = headroom_warnings(200.0, s)
    assert len(warned) == 1 and "ARBOPS_GUARD_MEMORY_ANOMALY_MB=300" in warned[0]
