"""Choose the strategy's defaults on the real training data, reproducibly.

    .venv/bin/python scripts/tune_strategy.py [--data-dir DIR] [--json OUT]

Procedure (docs/strategy.md):
1. Split the real BTC recordings by time: blocks 00-06 (2025-05-28 .. 06-19) train,
   blocks 07-09 (2025-06-22 .. 07-02) validation. The 1-minute file lies inside the
   training period and is not used. Nothing here reads the simulated market.
2. Replay the training blocks through `arbops backtest` (same engine, gateway, paper
   exchange and journal) for every point of the grid below.
3. Keep the grid points with at least MIN_ROUND_TRIPS round trips on the training
   data (a rule that never trades proves nothing) and pick the best training strategy
   PnL; ties go to fewer round trips.
4. Replay the validation blocks once with the chosen point and report both, whatever
   the validation says. The validation result does not feed back into the choice.
5. For comparison only, replay a recording of the calibrated sim (BTC, 5-minute
   books, as many as the training blocks) with the chosen point.

Execution on 5-minute data: an order fills against the next book, 5 minutes later,
so its limit needs room for that move (limit_slack_bps=30, inside the 50-bps
collar); this is an execution setting, fixed, not tuned.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = ROOT / "data" / "real"  # the real recordings, kept with the code
TRAIN = [f"real_btc_5m_block0{i}_*.jsonl.gz" for i in range(7)]
VALIDATION = [f"real_btc_5m_block0{i}_*.jsonl.gz" for i in range(7, 10)]
MIN_ROUND_TRIPS = 5
FIXED = {"limit_slack_bps": "30", "reversal_bps": "1000", "entry_cooldown_s": "1800"}
GRID: dict[str, list[str]] = {
    "baseline_halflife_s": ["3600", "10800", "21600"],
    "entry_buffer_bps": ["0", "5", "10"],
    "take_profit_bps": ["2", "10"],
    "stop_loss_bps": ["60", "150"],
    "max_hold_s": ["21600", "86400"],
}


def files(real: Path, patterns: list[str]) -> list[Path]:
    out = []
    for pat in patterns:
        found = sorted(real.glob(pat))
        if len(found) != 1:
            raise SystemExit(f"{real}/{pat}: expected one recording, found {len(found)}")
        out.append(found[0])
    return out


def sim_recording(path: Path, snapshots: int, seed: int = 7) -> Path:
    """BTC on the calibrated sim, one book every 5 minutes, as a replay recording."""
    from core.clock import ManualClock
    from core.config.settings import Settings
    from core.venues.replay_market import Recorder
    from core.venues.sim_market import SimMarket

    s = Settings(sim_profile="calibrated")
    clock = ManualClock(start=1_748_455_800.0)  # the training data's first day
    market = SimMarket(seed, n_symbols=1, interval_s=300.0, clock=clock,
                       mean_reversion=s.sim_mean_reversion,
                       premium_vol_bps=s.sim_premium_vol_bps,
                       jump_rate_per_min=s.sim_jump_rate_per_min, jump_bps=s.sim_jump_bps,
                       level_vol_bps=s.sim_level_vol_bps,
                       level_halflife_s=s.sim_level_halflife_s, fx_krw=s.sim_fx_krw)
    market.subscribe(["BTC"])
    rec = Recorder(path, "sim:calibrated", market.symbol_stats()[:1], 300.0)
    market.add_listener(rec)
    for _ in range(snapshots):
        clock.advance(300.0)
        market.step()
    rec.close()
    return path


async def one(settings: Any, store: Any, paths: list[Path], params: dict[str, str]
              ) -> dict[str, Any]:
    from core.trading.backtest import run_backtest

    return (await run_backtest(settings, store, paths, params=params)).report


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", type=Path, default=REAL, help="the real recordings' folder")
    ap.add_argument("--data-dir", type=Path, default=None, help="journal (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write every result here")
    a = ap.parse_args()

    from loguru import logger

    from core.config.settings import Settings
    from core.journal.sqlite_store import SqliteStore

    logger.remove()
    data_dir = a.data_dir or Path(tempfile.mkdtemp(prefix="arbops-tune-"))
    settings = Settings(data_dir=data_dir, sim_profile="calibrated")
    train, validation = files(a.real, TRAIN), files(a.real, VALIDATION)
    store = await SqliteStore.open(data_dir / "journal.sqlite3")
    t0 = time.perf_counter()
    results = []
    try:
        names = list(GRID)
        for combo in itertools.product(*(GRID[n] for n in names)):
            params = {**FIXED, **dict(zip(names, combo, strict=True))}
            params["baseline_warmup_s"] = params["baseline_halflife_s"]
            r = await one(settings, store, train, params)
            results.append(r)
            print(f"train {' '.join(f'{n}={params[n]}' for n in names)}: strategy "
                  f"{r['strategy_pnl_usd']:+.2f} RT {r['round_trips']} win {r['win_rate']:.0%}",
                  file=sys.stderr)
        eligible = [r for r in results if r["round_trips"] >= MIN_ROUND_TRIPS]
        if not eligible:
            print("no grid point trades on the training data", file=sys.stderr)
            return 1
        best = sorted(eligible, key=lambda r: (-r["strategy_pnl_usd"], r["round_trips"]))[0]
        check = await one(settings, store, validation, best["params"])
        sim = await one(settings, store, [sim_recording(data_dir / "sim.jsonl.gz", 7 * 200)],
                        best["params"])
    finally:
        await store.close()
    keys = ("strategy_pnl_usd", "inventory_pnl_usd", "total_pnl_usd", "fees_usd",
            "round_trips", "win_rate", "max_drawdown_usd", "exposure_share", "run_id")
    summary = {
        "procedure": "grid on train (blocks 00-06), best strategy PnL with >= "
                     f"{MIN_ROUND_TRIPS} round trips, checked once on validation (blocks 07-09)",
        "grid": GRID, "fixed": FIXED, "grid_points": len(results),
        "profitable_on_train": sum(1 for r in results if r["strategy_pnl_usd"] > 0),
        "chosen": best["params"],
        "train": {k: best[k] for k in keys},
        "validation": {k: check[k] for k in keys},
        "calibrated_sim": {k: sim[k] for k in keys},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary, indent=2))
    if a.json is not None:
        a.json.write_text(json.dumps({**summary, "all_train": [
            {"params": r["params"], **{k: r[k] for k in keys}} for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
