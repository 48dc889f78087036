"""The plain-text views both surfaces show: table tests of the number and time
formats, a property test that money reads as a person writes it, and the guard,
ladder, gate and config views with their units, zones and masks."""
from __future__ import annotations

import math
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.views import (
    age,
    balance_lines,
    config_lines,
    gate_lines,
    guard_lines,
    kpi_lines,
    ladder_lines,
    num,
    positions_lines,
    streams_line,
    table,
    usd,
    when,
)
from core.config.settings import Settings
from core.monitoring.config_view import config_view

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(("value", "signed", "want"), [
    (6.64, True, "+$6.64"), (-6.64, True, "-$6.64"), (6.64, False, "$6.64"),
    (-1234.5, False, "-$1,234.50"), (0.0, True, "$0.00"), (-0.001, True, "$0.00"),
    (None, True, "-"), ("x", True, "-"), (math.inf, True, "-"), (math.nan, True, "-")])
def test_usd(value: object, signed: bool, want: str) -> None:
    assert usd(value, signed=signed) == want


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12))
def test_money_reads_as_written(v: float) -> None:
    out = usd(v)
    assert re.fullmatch(r"[+-]?\$\d{1,3}(,\d{3})*\.\d\d", out), out
    assert "$-" not in out and "$+" not in out


@pytest.mark.parametrize(("value", "want"), [
    (0.010662419443, "0.010662419"), (20000.0, "20,000"), (2591.0812, "2,591.08"),
    (7.0, "7"), ("7.0", "7"), (None, "-"), (0, "0")])
def test_num(value: object, want: str) -> None:
    assert num(value) == want


def test_times_carry_the_zone_and_ages_are_short() -> None:
    assert when(0, SEOUL) == "1970-01-01 09:00:00 KST"
    assert when(None, SEOUL) == "-"
    assert [age(5), age(300), age(9000), age(None)] == ["5s", "5m", "2.5h", "-"]


def test_table_aligns_numbers_right() -> None:
    lines = table(("sym", "PnL"), [("BTC", "+$1.00"), ("DOGE", "-$12.50")])
    assert lines == ["sym       PnL", "BTC    +$1.00", "DOGE  -$12.50"]


def test_gate_lines_name_every_check_with_observed_and_needed() -> None:
    gate = {"phase": 1, "result": "FAIL", "checks": [
        {"name": "cpu", "passed": True, "reason": "avg CPU 10.0 % (needs < 50.0)"},
        {"name": "telegram_test_alert", "passed": False,
         "reason": "a Telegram test alert delivered: no"}], "reasons": ["x"]}
    assert gate_lines(gate) == [
        "phase 1 gate FAIL (1 of 2 checks failed)",
        "  ✓ cpu: avg CPU 10.0 % (needs < 50.0)",
        "  ✗ telegram_test_alert: a Telegram test alert delivered: no"]
    assert gate_lines(None) == []


def test_kpi_lines_say_no_rather_than_false() -> None:
    lines = kpi_lines({"run_id": "r1", "exit_code": 0, "kpi": {
        "summary": {"round_trips_completed": 3, "total_pnl_usd": -1.5, "win_rate": 0.5,
                    "max_drawdown_usd": 6.64, "failed_fills_count": 0,
                    "kill_switch_triggered": False, "stop_reason": "duration_elapsed"},
        "run": {"mode": "paper", "phase": 1, "universe": "top10", "duration_seconds": 300}}})
    text = "\n".join(lines)
    assert "kill switch no" in text and "False" not in text
    assert "PnL -$1.50" in text and "max drawdown (strategy) $6.64" in text and "$+" not in text
    assert "PAPER phase 1 top10 · 5m" in text


def test_guard_lines_show_now_limit_headroom_with_units() -> None:
    g = {"watchdog": True, "samples": 12, "tripped": [], "levels": {
        "cpu": {"observed": 40.0, "threshold": 80.0, "state": "OK"},
        "daily_loss": {"observed": 2.5, "threshold": 500.0, "state": "OK"},
        "loop_latency": {"observed": 1.25, "threshold": 100.0, "state": "OK"}}}
    lines = guard_lines(g)
    assert lines[0] == "guards · 12 samples"
    cpu = next(x for x in lines if x.startswith("cpu"))
    assert "40 %" in cpu and "80 %" in cpu and "OK" in cpu
    assert lines[2].startswith("cpu")  # the nearest its limit (by share) first
    loss = next(x for x in lines if x.startswith("daily_loss"))
    assert "$2.50" in loss and "$500.00" in loss and "$497.50" in loss
    assert guard_lines({"watchdog": False})[0].startswith("guards: the watchdog is not")


def test_ladder_lines_use_the_zone_not_unix_stamps() -> None:
    lines = ladder_lines({"next_phase": 1, "reset_at": None, "reset_reason": None,
                          "passed": {"paper1": 1764720000.0},
                          "phases": {"1": {"allowed": True, "reason": "ok",
                                           "via_override": False}}}, SEOUL)
    text = "\n".join(lines)
    assert "paper1: 2025-12-03 09:00:00 KST" in text and "1764720000" not in text


def test_balance_lines_never_say_none() -> None:
    assert balance_lines({"source": "paper", "run_id": None, "balances_at_start": None}) == [
        "balances (paper)", "no run recorded yet"]


def test_positions_lines() -> None:
    rows = [{"base": "BTC", "direction": "sell_upbit_buy_binance", "state": "open",
             "entry_premium_bps": 212.4, "current_premium_bps": 180.0, "pnl_usd": 0.21,
             "opened_at": 1000.0}]
    lines = positions_lines(rows, 1090.0)
    assert lines[0] == "1 open position(s)"
    assert re.search(r"BTC\s+sell Upbit/buy Binance\s+\+212bp\s+\+180bp\s+\+\$0\.21\s+90s",
                     lines[2]), lines


def test_show_config_masks_secrets_and_names_sources(tmp_path, monkeypatch) -> None:
    token = "123456:AAverySecretTokenValue0123456789abcdefgh"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ARBITRAGE_ENV", raising=False)
    (tmp_path / ".env").write_text("ARBOPS_MAX_CONCURRENT=3\n")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    monkeypatch.setenv("ARBOPS_REPORT_TIME", "08:30")
    settings = Settings(_env_file=tmp_path / ".env", data_dir=tmp_path)
    from core.monitoring.logging_setup import register_secrets

    register_secrets(settings.secret_values())
    view = config_view(settings, tmp_path)
    rows = {r["name"]: r for r in view["settings"]}
    assert rows["TELEGRAM_BOT_TOKEN"]["value"] == "set"
    assert rows["TELEGRAM_BOT_TOKEN"]["source"] == "environment"
    assert rows["ARBOPS_MAX_CONCURRENT"] == {
        "name": "ARBOPS_MAX_CONCURRENT", "value": "3", "secret": False,
        "source": str(tmp_path / ".env"), "default": False}
    assert rows["ARBOPS_REPORT_TIME"]["source"] == "environment"
    assert rows["UPBIT_ACCESS_KEY"]["value"] == "not set"
    text = "\n".join(config_lines(view))
    assert token not in text and token[-20:] not in text
    assert "ARBOPS_MAX_CONCURRENT=3" in text and "TELEGRAM_BOT_TOKEN=set" in text


@pytest.mark.parametrize("streams, want", [
    (None, None),
    ({}, None),
    ({"upbit": {"books": True, "orders": True}, "binance": {"books": True, "orders": True}},
     "streams: binance books up, orders up · upbit books up, orders up"),
    ({"binance": {"orders": False, "books": True}},
     "streams: binance books up, orders DOWN (REST)"),
    ({"upbit": {"books": False}}, "streams: upbit books DOWN (REST)"),
])
def test_streams_line_names_a_stream_that_is_down_and_what_replaces_it(
        streams: dict[str, Any] | None, want: str | None) -> None:
    assert streams_line(streams) == want
