"""`arbops backtest --data PATH [PATH ...] [--param NAME=VALUE ...]
[--sweep NAME=V1,V2,...] [--json] [--png FILE]` (R-M10).

Runs in this process, on the data dir's journal (the runs are kept as mode
`backtest`), never on the engine: a backtest neither needs nor touches a running
service or its trading state.
"""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from core.commands import BacktestArgs
from core.config.settings import Settings
from core.errors import BadInput, ExitCode


def cmd_backtest(settings: Settings, args: BacktestArgs) -> int:
    from core.trading.backtest import grid, parse_params, parse_sweep, rank, recordings, with_params

    paths = recordings(list(args.data))
    params = parse_params(args.param)
    sweep = parse_sweep(args.sweep)
    if set(params) & set(sweep):
        raise BadInput(f"{', '.join(sorted(set(params) & set(sweep)))}: both --param and --sweep")
    combos = grid(sweep) if sweep else [{}]
    for combo in combos:  # every grid point checked before the first replay
        with_params(settings, {**params, **combo})
    if args.png is not None and len(combos) > 1:
        raise BadInput("--png draws one backtest; leave out --sweep")
    results = asyncio.run(_run_all(settings, args, paths, params, combos))
    reports = [r.report for r in results]
    if sweep:
        ranked = rank(reports)
        if args.json_output:
            print(json.dumps({"ranked_by": "strategy_pnl_usd", "results": ranked}, default=str))
        else:
            print(sweep_table(ranked, list(sweep)))
        return ExitCode.OK
    out = results[0]
    rep = out.report
    code: int = ExitCode.OK
    if args.png is not None:
        code = _png(rep, out, Path(args.png))
    if args.json_output:
        print(json.dumps(rep, default=str))
    else:
        print(report_text(rep))
    return code


async def _run_all(settings: Settings, args: BacktestArgs, paths: list[Path],
                   params: dict[str, str], combos: list[dict[str, str]]) -> list[Any]:
    from bot.app import DB_NAME
    from core.journal.sqlite_store import SqliteStore
    from core.trading.backtest import run_backtest

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = await SqliteStore.open(settings.data_dir / DB_NAME)
    try:
        out = []
        for i, combo in enumerate(combos):
            if len(combos) > 1:
                print(f"backtest {i + 1}/{len(combos)}: "
                      + " ".join(f"{k}={v}" for k, v in combo.items()), file=sys.stderr)
            out.append(await run_backtest(settings, store, paths, phase=args.phase,
                                          notional_usd=args.max_notional_usd,
                                          params={**params, **combo}))
        return out
    finally:
        await store.close()


def _png(rep: dict[str, Any], out: Any, path: Path) -> int:
    from core.errors import ArbopsError
    from core.monitoring.charts.render import render_chart
    from core.monitoring.reports.backtest_series import backtest_chart

    samples = [(s.ts, s.strategy_usd, s.inventory_usd, s.premium_bps, s.baseline_bps)
               for s in out.trace.samples]
    try:
        image = render_chart("backtest", dict(backtest_chart(rep, samples, out.positions)), "png")
    except ArbopsError as exc:
        print(f"arbops backtest: no chart written: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image)
    rep["png"] = str(path)
    return ExitCode.OK


def _usd(v: Any) -> str:
    return f"${float(v):+,.2f}"


def report_text(r: dict[str, Any]) -> str:
    hours = r["data_span_s"] / 3600.0
    gate = r.get("gate") or {}
    lines = [
        f"backtest {r['run_id']}: {len(r['data'])} recording(s), {r['snapshots']} snapshots, "
        f"{hours:.1f} h of data",
        f"params: {' '.join(f'{k}={v}' for k, v in r['params'].items()) or 'the settings as they are'}",
        f"strategy PnL (net of fees): {_usd(r['strategy_pnl_usd'])}",
        f"inventory revaluation:      {_usd(r['inventory_pnl_usd'])}",
        f"total equity change:        {_usd(r['total_pnl_usd'])}",
        f"fees: ${r['fees_usd']:,.2f}  turnover: ${r['turnover_usd']:,.2f}",
        f"entries {r['entries']}  round trips {r['round_trips']}  win rate "
        f"{r['win_rate']:.1%}  max drawdown (strategy) ${r['max_drawdown_usd']:,.2f}",
        f"exposure: {r['exposure_s'] / 3600.0:.1f} h ({r['exposure_share']:.1%} of the data's time)",
        "exit reasons: " + (", ".join(f"{k} {v}" for k, v in r["exit_reasons"].items()) or "-"),
        f"gate (phase {gate.get('phase', '?')}): {gate.get('result', 'not evaluated')}"
        + (f" - {'; '.join(gate.get('reasons') or [])}" if gate.get("reasons") else ""),
        f"verdict: {r['verdict']}",
        "per day (UTC):",
    ]
    lines += [f"  {d['date']}  {_usd(d['strategy_pnl_usd'])}  {d['round_trips']} RT"
              for d in r["days"]]
    if r.get("png"):
        lines.append(f"chart: {r['png']}")
    return "\n".join(lines)


def sweep_table(ranked: list[dict[str, Any]], names: list[str]) -> str:
    head = "  ".join(f"{n:>22}" for n in names)
    lines = [f"rank  {head}  {'strategy':>10}  {'total':>10}  {'fees':>8}  {'RT':>4}  "
             f"{'win':>5}  {'max DD':>8}  run"]
    for i, r in enumerate(ranked, 1):
        vals = "  ".join(f"{r['params'].get(n, ''):>22}" for n in names)
        lines.append(f"{i:>4}  {vals}  {r['strategy_pnl_usd']:>+10.2f}  "
                     f"{r['total_pnl_usd']:>+10.2f}  {r['fees_usd']:>8.2f}  "
                     f"{r['round_trips']:>4}  {r['win_rate']:>5.0%}  "
                     f"{r['max_drawdown_usd']:>8.2f}  {r['run_id']}")
    return "\n".join(lines)
