"""`arbops backtest`: a real recording replayed on its own clock through the engine,
the paper exchange and the journal; every figure it prints recomputed here in
Decimal from the journal's fill rows, the recording and the final marks."""
from __future__ import annotations

import gzip
import json
import sqlite3
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from tests.helpers.procs import arbops_env, run_cli, short_data_dir

REAL = Path(__file__).resolve().parents[2] / "data" / "real"
# 200 five-minute books (16.7 h); with the default strategy it trades twice.
BLOCK = REAL / "real_btc_5m_block02_20250604T1650.jsonl.gz"
TOL = D("1e-5")


def dec(x: Any) -> D:
    return D(repr(x)) if isinstance(x, float) else D(str(x))


def rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(sql, params).fetchall()]
    finally:
        con.close()


def first_marks(path: Path) -> tuple[D, dict[str, D], dict[str, D]]:
    """FX mid and each venue's coin in USD at the recording's first snapshot."""
    with gzip.open(path, "rt") as fh:
        fh.readline()
        snap = json.loads(fh.readline())

    def mid(book: dict[str, Any]) -> D:
        return (dec(book["b"][0][0]) + dec(book["a"][0][0])) / 2

    fx = mid(snap["fx"])
    return (fx, {b: mid(v) / fx for b, v in snap["u"].items()},
            {b: mid(v) for b, v in snap["n"].items()})


def backtest(d: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    env = arbops_env(d, {"ARBOPS_SIM_PROFILE": "calibrated"})
    out = run_cli(["backtest", "--data", str(BLOCK), *args, "--json"], d, env, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_backtest_figures_equal_a_decimal_recomputation_from_the_journal() -> None:
    with short_data_dir("abt") as d:
        png = d / "bt.png"
        r = backtest(d, "--png", str(png))
        db = d / "arbops.sqlite3"
        run_id = r["run_id"]
        assert rows(db, "SELECT mode FROM runs WHERE run_id=?", (run_id,))[0]["mode"] == "backtest"
        fills = rows(db, "SELECT * FROM fills WHERE run_id=? ORDER BY ts, rowid", (run_id,))
        positions = rows(db, "SELECT * FROM positions WHERE run_id=?", (run_id,))
        closed = [p for p in positions if p["state"] == "closed"]
        assert closed and fills, "the slice traded nothing: the check would be empty"
        # On the data's own clock: fills stamped inside the recording's span (June 2025).
        assert all(1_748_900_000 < f["ts"] < 1_749_200_000 for f in fills)
        kpi = json.loads(Path(r["kpi_path"]).read_text())
        marks = kpi["trading"]["marks"]
        fx = dec(marks["fx_usdt_krw"])
        unit = {"upbit": {b: dec(v) for b, v in marks["upbit_base_usd"].items()},
                "binance": {b: dec(v) for b, v in marks["base_usdt"].items()}}

        def usd(venue: str, asset: str, amount: D) -> D:
            if asset == "KRW":
                return amount / fx
            if asset == "USDT":
                return amount
            return amount * unit[venue][asset]

        held: dict[tuple[str, str], D] = defaultdict(D)
        fees = turnover = D(0)
        for f in fills:
            base, quote = f["symbol"].split("/")
            amount, cost, fee = dec(f["amount"]), dec(f["cost"]), dec(f["fee"])
            assert f["fee_currency"] == quote
            sign = 1 if f["side"] == "buy" else -1
            held[(f["venue"], base)] += sign * amount
            held[(f["venue"], quote)] += -sign * cost - fee
            to_usd = 1 / dec(f["fx"]) if quote == "KRW" else D(1)
            fees += fee * to_usd
            turnover += cost * to_usd
        strategy = sum((usd(v, a, x) for (v, a), x in held.items()), D(0))
        assert abs(strategy - dec(r["strategy_pnl_usd"])) < TOL
        assert abs(fees - dec(r["fees_usd"])) < TOL
        assert abs(turnover - dec(r["turnover_usd"])) < TOL

        # Inventory revaluation: the funding journaled at the start, valued at the final
        # marks minus at the recording's first snapshot.
        start = json.loads(rows(db, "SELECT payload FROM events WHERE run_id=? AND kind="
                                    "'starting_balances_recorded'", (run_id,))[0]["payload"])
        fx0, upbit0, binance0 = first_marks(BLOCK)
        unit0 = {"upbit": upbit0, "binance": binance0}
        inventory = D(0)
        for venue, balances in start.items():
            for asset, qty in balances.items():
                q = dec(qty)
                then = (1 / fx0 if asset == "KRW" else D(1) if asset == "USDT"
                        else unit0[venue][asset])
                inventory += q * (usd(venue, asset, D(1)) - then)
        assert abs(inventory - dec(r["inventory_pnl_usd"])) < TOL
        assert abs(strategy + inventory - dec(r["total_pnl_usd"])) < TOL

        wins = sum(1 for p in closed if dec(p["pnl_usd"]) > 0)
        assert r["round_trips"] == len(closed)
        assert abs(dec(r["win_rate"]) - D(wins) / D(len(closed))) < D("1e-6")
        # A replay that ran out of data still evaluates its gate and says so.
        assert r["stop_reason"] == "replay recording ended"
        assert r["gate"]["result"] in ("PASS", "FAIL") and r["gate"]["checks"]
        assert r["snapshots"] >= 200 and r["data_span_s"] >= 199 * 300
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_ranks_the_grid_by_strategy_pnl() -> None:
    with short_data_dir("abs") as d:
        out = backtest(d, "--sweep", "entry_buffer_bps=0,40")
        results = out["results"]
        assert out["ranked_by"] == "strategy_pnl_usd"
        assert sorted(r["params"]["entry_buffer_bps"] for r in results) == ["0", "40"]
        pnl = [r["strategy_pnl_usd"] for r in results]
        assert pnl == sorted(pnl, reverse=True)
        # A 40-bps buffer on top of ~31 bps of costs asks for a deviation this slice
        # never reaches: it trades less than no buffer at all.
        by = {r["params"]["entry_buffer_bps"]: r for r in results}
        assert by["40"]["round_trips"] < by["0"]["round_trips"]


def test_bad_parameters_are_refused_before_any_replay() -> None:
    with short_data_dir("abp") as d:
        env = arbops_env(d)
        for args, says in ((["--param", "nonsense=1"], "not a setting"),
                           (["--param", "baseline_halflife_s=-5"], "baseline_halflife_s"),
                           (["--param", "data_dir=/"], "not a setting"),
                           (["--sweep", "max_hold_s="], "NAME=V1,V2")):
            out = run_cli(["backtest", "--data", str(BLOCK), *args], d, env, timeout=60)
            assert out.returncode == 2, (args, out.stderr)
            assert says in out.stderr, (args, out.stderr)
        out = run_cli(["backtest", "--data", str(d / "missing.jsonl.gz")], d, env, timeout=60)
        assert out.returncode == 2 and "no such file" in out.stderr
        assert not (d / "arbops.sqlite3").exists()  # nothing ran, nothing was written


def test_the_printed_report_labels_the_three_figures_and_says_who_lost() -> None:
    with short_data_dir("abx") as d:
        env = arbops_env(d, {"ARBOPS_SIM_PROFILE": "calibrated"})
        # A 1-bps stop-loss on 16 h of real data: the strategy loses, and says so.
        out = run_cli(["backtest", "--data", str(BLOCK), "--param", "stop_loss_bps=1",
                       "--param", "take_profit_bps=500"], d, env, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        text = out.stdout
        for label in ("strategy PnL (net of fees):", "inventory revaluation:",
                      "total equity change:", "turnover:", "max drawdown (strategy)",
                      "exposure:", "gate (phase 2):", "per day (UTC):", "2025-06-05"):
            assert label in text, (label, text)
        strategy = float(text.split("strategy PnL (net of fees):")[1].split()[0]
                         .replace("$", "").replace(",", ""))
        assert strategy < 0 and "verdict: the strategy LOST money on this data" in text
