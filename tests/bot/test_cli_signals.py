"""R-K1 stop paths of a real `arbops run` subprocess, driven by real signals.

A first SIGTERM/SIGINT is a graceful stop (no new entries, close positions, final KPI
JSON with kill_switch_triggered false, exit 0, no lasting HALT); a second signal is an
emergency halt (cancel, skip flattening, list what is open, HALTED, exit 1). Within 10 s
of a signal at least a provisional KPI JSON naming the stop is on disk.

The runs use real time (not ARBOPS_SIM_FAST) and paper orders that fill 30 % per market
step (ARBOPS_PAPER_FILL_RATIO=0.3), so the signal lands while an order is partly filled.
The last two tests are deterministic fast-mode reproductions of engine bugs found here.
"""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.procs import (
    ArbopsProc,
    arbops_env,
    query,
    query_one,
    read_json,
    run_cli,
    short_data_dir,
    wait_until,
)

pytestmark = [pytest.mark.slow]

TRADING_ENV = {
    "ARBOPS_PAPER_FILL_RATIO": "0.3",
    # The default (2 s). With 5 s an exit order that the market moves away from rests
    # through most of the fixed 8 s close window (RunSpec.close_timeout_s), so the
    # graceful close times out before its one re-price: see the report.
    "ARBOPS_ORDER_TIMEOUT_S": "2",
    "ARBOPS_SIM_JUMP_RATE_PER_MIN": "6",
}
STOP_DEADLINE_S = 10.0
# Venue minimums in the sim: 5 USDT on Binance, 5000 KRW (~3.6 USD) on Upbit.
DUST_USD = 6.0


@pytest.fixture
def data_dir():
    with short_data_dir("aosig") as d:
        yield d


def start_trading_run(data_dir: Path, kpi: Path, seconds: int = 120) -> ArbopsProc:
    return ArbopsProc(
        ["run", "--phase", "1", "--duration-seconds", str(seconds), "--kpi-output-path", str(kpi)],
        data_dir, arbops_env(data_dir, TRADING_ENV), name="run",
    )


def _alive_or_fail(proc: ArbopsProc) -> None:
    if not proc.alive():
        raise AssertionError(f"run exited early ({proc.returncode})\n{proc.output()}")


def open_position_and_partial_order(data_dir: Path, proc: ArbopsProc) -> dict[str, Any] | None:
    """Journal rows proving an open position and a partly filled working order, or None."""
    _alive_or_fail(proc)
    pos = query_one(
        data_dir,
        "SELECT p.position_id, p.state FROM positions p WHERE p.state = 'open' OR "
        "(p.state = 'entering' AND EXISTS (SELECT 1 FROM fills f "
        " WHERE f.position_id = p.position_id)) LIMIT 1",
    )
    if not pos:
        return None
    intents = query(
        data_dir, "SELECT client_order_id, amount, filled FROM order_intents WHERE state = 'OPEN'"
    ) or []
    partial = [i for i in intents
               if i["amount"] is not None and 0 < float(i["filled"]) < float(i["amount"])]
    if not partial:
        return None
    return {"position": pos, "partial": partial[0]}


def open_position(data_dir: Path, proc: ArbopsProc) -> dict[str, Any] | None:
    _alive_or_fail(proc)
    return query_one(data_dir, "SELECT position_id FROM positions WHERE state = 'open' LIMIT 1")


def kpi_naming(kpi: Path, needle: str) -> dict[str, Any] | None:
    data = read_json(kpi)
    if data and needle in (data["summary"].get("stop_reason") or ""):
        return data
    return None


def _dust_legs(data: dict[str, Any]) -> list[str]:
    """Legs of still-open positions worth less than a venue's minimum order."""
    fx = data["trading"]["marks"]["fx_usdt_krw"]
    marks = data["trading"]["marks"]["base_usdt"]
    out = []
    for p in data["trading"]["open_positions"]:
        for venue, qty in p["open_qty"].items():
            usd = qty * marks.get(p["base"], 0.0)
            if 0 < usd < DUST_USD:
                out.append(f"{p['base']} {venue} {qty!r} (${usd:.4f}, fx {fx:.0f})")
    return out


def _net_base(data: dict[str, Any]) -> dict[str, float]:
    """Net change of each base across both venues, in USD at the marks."""
    inv = data["trading"]["inventory_change"]
    marks = data["trading"]["marks"]["base_usdt"]
    net: dict[str, float] = {}
    for venue_inv in inv.values():
        for asset, qty in venue_inv.items():
            if asset in ("KRW", "USDT"):
                continue
            net[asset] = net.get(asset, 0.0) + qty
    return {a: q * marks.get(a, 0.0) for a, q in net.items()}


def _named_dust_usd(data: dict[str, Any]) -> dict[str, float]:
    """Per base, the USD the named dust leaves over across both venues (signed: long
    when flattening it means selling)."""
    marks = data["trading"]["marks"]["base_usdt"]
    out: dict[str, float] = {}
    for d in data["trading"]["dust"]:
        sign = 1.0 if d["side_to_flatten"] == "sell" else -1.0
        out[d["base"]] = out.get(d["base"], 0.0) + sign * d["qty"] * marks.get(d["base"], 0.0)
    return out


# --- a first signal: graceful ----------------------------------------------------------
@pytest.mark.timeout(120)
def test_sigterm_with_open_position_and_partial_fill_closes_gracefully(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    with start_trading_run(data_dir, kpi) as proc:
        seen = wait_until(lambda: open_position_and_partial_order(data_dir, proc), 60,
                          interval=0.05, what="an open position and a partly filled order",
                          on_timeout=proc.output)
        sent = proc.signal(signal.SIGTERM)

        # within 10 s: a KPI naming the signal is on disk, and the process is gone
        provisional = wait_until(lambda: kpi_naming(kpi, "SIGTERM"), STOP_DEADLINE_S,
                                 interval=0.05, what="a KPI JSON naming SIGTERM",
                                 on_timeout=proc.output)
        assert time.monotonic() - sent <= STOP_DEADLINE_S
        code = proc.wait(max(0.1, STOP_DEADLINE_S - (time.monotonic() - sent)))
        elapsed = time.monotonic() - sent
        data = read_json(kpi)
        assert data is not None and data["final"] is True, proc.output()

        assert code == 0, (f"exit {code} after {elapsed:.1f} s; stop_reason "
                           f"{data['summary']['stop_reason']!r}; still open "
                           f"{data['trading']['open_positions']}\n{proc.output()}")
        assert elapsed <= STOP_DEADLINE_S
        assert "Traceback" not in proc.stdout() + proc.stderr()

    assert provisional["summary"]["kill_switch_triggered"] is False
    summary = data["summary"]
    assert summary["exit_code"] == 0
    assert summary["kill_switch_triggered"] is False
    assert "SIGTERM" in summary["stop_reason"]
    assert "emergency" not in summary["stop_reason"]
    assert data["trading"]["open_positions"] == []
    assert data["guards"]["trading_state"] != "HALTED"
    assert data["trading"]["entries"] >= 1, "the stop was meant to land on a live position"
    # Both legs flat, or the rest named: a leg left under a venue's minimum order is
    # listed as dust (KPI, summary, reconciliation) and is all the base left over.
    dust = _named_dust_usd(data)
    assert data["reconciliation"]["dust"] == data["trading"]["dust"]
    assert summary["dust_usd"] == pytest.approx(
        sum(d["usd"] for d in data["trading"]["dust"]), abs=1e-6)
    net = _net_base(data)
    assert all(abs(usd - dust.get(b, 0.0)) < 0.05 for b, usd in net.items()), (net, dust)

    # the journal: every position that traded is closed; no order is left working
    positions = query(data_dir, "SELECT position_id, state FROM positions") or []
    assert seen["position"]["position_id"] in {p["position_id"] for p in positions}
    live = [p for p in positions if p["state"] in ("open", "entering", "exiting")]
    assert live == []
    working = query(data_dir, "SELECT client_order_id, state FROM order_intents "
                              "WHERE state IN ('OPEN', 'PENDING')")
    assert working == []
    partial = query_one(data_dir, "SELECT state, filled, amount FROM order_intents "
                                  "WHERE client_order_id = ?",
                        (seen["partial"]["client_order_id"],))
    assert partial["state"] in ("FILLED", "CANCELED")
    run = query_one(data_dir, "SELECT status, exit_code, stop_reason FROM runs")
    assert run["status"] == "completed" and run["exit_code"] == 0
    assert "SIGTERM" in run["stop_reason"]
    # fills net out per base across both venues (same check as the KPI, from the journal)
    fills = query(data_dir, "SELECT symbol, side, amount FROM fills") or []
    per_base: dict[str, float] = {}
    for f in fills:
        base = f["symbol"].split("/")[0]
        sign = 1.0 if f["side"] == "buy" else -1.0
        per_base[base] = per_base.get(base, 0.0) + sign * float(f["amount"])
    marks = data["trading"]["marks"]["base_usdt"]
    assert all(abs(q * marks.get(b, 0.0) - dust.get(b, 0.0)) < 0.05
               for b, q in per_base.items()), (per_base, dust)

    # a graceful stop leaves no lasting HALT
    status = run_cli(["status", "--json"], data_dir)
    assert status.returncode == 0
    assert '"trading_state": "ACTIVE"' in status.stdout


@pytest.mark.timeout(60)
def test_sigterm_right_after_start_writes_kpi_within_10s_and_exits_0(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    with start_trading_run(data_dir, kpi) as proc:
        wait_until(lambda: (_alive_or_fail(proc), query_one(data_dir, "SELECT run_id FROM runs"))[1],
                   20, interval=0.05, what="the run row", on_timeout=proc.output)
        sent = proc.signal(signal.SIGTERM)
        wait_until(lambda: kpi_naming(kpi, "SIGTERM"), STOP_DEADLINE_S, interval=0.05,
                   what="a KPI JSON naming SIGTERM", on_timeout=proc.output)
        code = proc.wait(STOP_DEADLINE_S)
        assert time.monotonic() - sent <= STOP_DEADLINE_S
        assert code == 0, proc.output()
    data = read_json(kpi)
    assert data["final"] is True
    assert data["summary"]["exit_code"] == 0
    assert data["summary"]["kill_switch_triggered"] is False
    assert data["summary"]["stop_reason"] == "signal SIGTERM"
    assert data["trading"]["open_positions"] == []


# --- a second signal: emergency halt -----------------------------------------------------
@pytest.mark.timeout(120)
def test_double_sigint_is_an_emergency_halt_until_reset(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    with start_trading_run(data_dir, kpi) as proc:
        wait_until(lambda: open_position(data_dir, proc), 60, interval=0.05,
                   what="an open position", on_timeout=proc.output)
        sent = proc.signal(signal.SIGINT)
        time.sleep(0.2)
        proc.signal(signal.SIGINT)
        wait_until(lambda: kpi_naming(kpi, "emergency"), STOP_DEADLINE_S, interval=0.05,
                   what="a KPI JSON naming the emergency", on_timeout=proc.output)
        code = proc.wait(max(0.1, STOP_DEADLINE_S - (time.monotonic() - sent)))
        assert time.monotonic() - sent <= STOP_DEADLINE_S
        assert code == 1, proc.output()
        assert "Traceback" not in proc.stdout() + proc.stderr()
        # The first Ctrl+C said what a second one would do (issue: it did not).
        assert "again halts at once" in proc.stderr(), proc.stderr()
        printed = proc.stdout()

    data = read_json(kpi)
    assert data["final"] is True
    summary = data["summary"]
    assert summary["exit_code"] == 1
    # An emergency halt is the kill switch (R-K1): said in the KPI and the summary, with
    # what was left open and an incident report.
    assert summary["kill_switch_triggered"] is True
    assert "TRIGGERED" in printed and "still open" in printed, printed
    assert Path(data["kill"]["incident"]).is_file()
    assert "SIGINT" in summary["stop_reason"]
    assert "emergency" in summary["stop_reason"]
    assert data["trading"]["open_positions"] != [], "what is still open must be listed"
    assert data["guards"]["trading_state"] == "HALTED"
    run = query_one(data_dir, "SELECT status, exit_code FROM runs")
    assert run["exit_code"] == 1 and run["status"] in ("stopped", "failed")
    flag = query_one(data_dir, "SELECT value FROM flags WHERE key = 'trading_state'")
    assert flag and flag["value"].startswith("HALTED")

    status = run_cli(["status", "--json"], data_dir)
    assert status.returncode == 0, status.stderr
    assert '"trading_state": "HALTED"' in status.stdout
    assert '"engine_running": false' in status.stdout

    refused = run_cli(["run", "--duration-seconds", "5"], data_dir)
    assert refused.returncode == 2 and "HALTED" in refused.stderr

    # reset's preview and reconcile agree on what is open (they did not: 0 vs drift)
    rec = json.loads(run_cli(["reconcile", "--json"], data_dir).stdout)
    reset = run_cli(["reset", "--confirm", "RESET"], data_dir)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "still open per journal" in reset.stdout
    n_positions = int(reset.stdout.split(" orders, ", 1)[1].split(" positions", 1)[0])
    assert n_positions == rec["open_positions"] > 0, (reset.stdout, rec)
    status = run_cli(["status", "--json"], data_dir)
    assert '"trading_state": "ACTIVE"' in status.stdout


# --- deterministic reproductions (fast mode: manual clock, seeded market) ---------------
def _fast_run(data_dir: Path, kpi: Path, seconds: int, env: dict[str, str]) -> int:
    res = run_cli(
        ["run", "--phase", "1", "--duration-seconds", str(seconds), "--seed", "7",
         "--kpi-output-path", str(kpi)],
        data_dir, arbops_env(data_dir, {"ARBOPS_SIM_FAST": "1", **env}), timeout=60,
    )
    assert "Traceback" not in res.stdout + res.stderr, res.stdout + res.stderr
    return res.returncode


@pytest.mark.timeout(60)
def test_duration_end_closes_every_position_with_partial_fills(data_dir):
    kpi = data_dir / "out" / "kpi.json"
    _fast_run(data_dir, kpi, 30, TRADING_ENV)
    data = read_json(kpi)
    assert data is not None and data["final"] is True
    assert "close_timeout" not in data["summary"]["stop_reason"]
    assert data["trading"]["open_positions"] == []
    assert data["guards"]["trading_state"] != "HALTED"


@pytest.mark.timeout(60)
def test_completed_run_leaves_no_live_position_rows(data_dir):
    """Regression: refused entries used to leave 'entering' rows behind forever (an
    entry whose Upbit leg the notional cap refuses was reset without updating its row)."""
    kpi = data_dir / "out" / "kpi.json"
    _fast_run(data_dir, kpi, 60, {})
    data = read_json(kpi)
    assert data is not None and data["final"] is True
    assert data["trading"]["open_positions"] == []  # the engine itself is flat
    live = query(data_dir, "SELECT position_id, state FROM positions "
                           "WHERE state IN ('entering', 'open', 'exiting')")
    assert live == [], f"{len(live)} live rows, e.g. {live[:3]}"
