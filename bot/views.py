"""What people read: plain-text lines for results both surfaces show.

The CLI prints these lines; Telegram escapes them (and puts tables in <pre>). Numbers
are rounded for people, times are in the report zone with its name, money carries
its sign before the dollar ("-$6.64"), and nothing here ever prints a Python repr:
a missing value is "-", a flag "yes"/"no".
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from core.config.settings import Settings
from core.domain.money import usd

# Units of the guards' observed values and thresholds, keyed by guard name.
GUARD_UNITS: dict[str, str] = {
    "daily_loss": "$", "single_trade_loss": "$", "pnl_fall": "$",
    "open_positions": "positions", "max_concurrent": "positions",
    "memory_kill": "MB", "memory": "MB", "rss_growth": "MB",
    "consecutive_errors": "errors", "phase1_exception": "errors",
    "heartbeat": "s", "no_entry": "s", "no_exit": "s", "phase1_no_entry": "s",
    "rate_limit_wait": "s", "loop_latency": "ms", "cpu": "%",
    "exchange_errors": "errors/min", "exchange_errors_target": "errors/min",
    "rate_limit_hits": "hits", "failed_fill": "fills",
}


def zone(settings: Settings) -> ZoneInfo:
    return ZoneInfo(settings.report_timezone)


def when(epoch: float | None, tz: ZoneInfo) -> str:
    """'2026-12-03 15:04:05 KST' (the report zone's abbreviation), '-' when unknown."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(float(epoch), tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def num(value: Any, digits: int = 8) -> str:
    """A quantity for people: up to `digits` significant digits, thousands separated."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    return f"{v:.{digits}g}"


def text(value: Any) -> str:
    """Any scalar for people: None is '-', booleans 'yes'/'no'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return num(value)
    return str(value)


def age(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell; a column whose cells are all numbers
    (or '-') is right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    numeric = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if right else c.ljust(w)
                         for c, w, right in zip(r, widths, numeric, strict=True)).rstrip()

    return [line(header), *(line(r) for r in rows)]


def _numeric(cell: str) -> bool:
    return cell == "-" or bool(re.match(r"^[+-]?\$?[0-9]", cell))


# --- the gate --------------------------------------------------------------------------
def gate_lines(gate: dict[str, Any] | None) -> list[str]:
    """'phase 1 gate FAIL (2 of 8 checks failed)' and one line per check, ✓ or ✗, with
    what was observed and what it needed."""
    if not isinstance(gate, dict) or not gate.get("result"):
        return []
    checks = gate.get("checks") or []
    failed = [c for c in checks if not c.get("passed")]
    head = f"phase {text(gate.get('phase'))} gate {gate['result']}"
    if failed:
        head += f" ({len(failed)} of {len(checks)} checks failed)"
    elif checks:
        head += f" (all {len(checks)} checks passed)"
    out = [head]
    for c in checks:  # each check says what was observed and what it needed
        out.append(f"  {'✓' if c.get('passed') else '✗'} {c.get('name')}: {c.get('reason')}")
    if not checks:  # an older KPI file: reasons only
        out.extend(f"  ✗ {r}" for r in gate.get("reasons") or [])
    return out


# --- the KPI ---------------------------------------------------------------------------
def kpi_lines(result: dict[str, Any] | None) -> list[str]:
    if not result:
        return ["no finished run yet"]
    kpi = result.get("kpi") or {}
    s = kpi.get("summary") or {}
    run = kpi.get("run") or {}
    dur = run.get("duration_seconds")
    lines = [
        f"run {text(result.get('run_id'))} · exit {text(result.get('exit_code'))}",
        f"{str(run.get('mode') or '?').upper()} phase {text(run.get('phase'))} "
        f"{text(run.get('universe'))} · {age(float(dur)) if dur is not None else '-'}",
        f"strategy PnL {usd(s.get('strategy_pnl_usd', s.get('total_pnl_usd')))} · inventory "
        f"{usd(s.get('inventory_pnl_usd'))} · total {usd(s.get('total_pnl_usd'))}",
        f"round trips {text(s.get('round_trips_completed'))}"
        f" · win {float(s.get('win_rate') or 0) * 100:.0f}% · max drawdown (strategy) "
        f"{usd(s.get('max_drawdown_usd'), signed=False)}",
        f"failed fills {text(s.get('failed_fills_count'))} · kill switch "
        f"{'TRIGGERED' if s.get('kill_switch_triggered') else 'no'} · stop "
        f"{text(s.get('stop_reason'))}",
    ]
    lines.extend(gate_lines(kpi.get("gate")))
    incident = (kpi.get("kill") or {}).get("incident")
    if incident:
        lines.append(f"incident report: {incident}")
    return lines


# --- ladder, balances, preflight, guards, positions ----------------------------------------
def ladder_lines(r: dict[str, Any], tz: ZoneInfo) -> list[str]:
    nxt = r.get("next_phase")
    out = [f"next live phase allowed: {nxt if nxt is not None else 'none'}"]
    for phase, d in sorted((r.get("phases") or {}).items(), key=lambda kv: int(kv[0])):
        mark = "allowed" if d.get("allowed") else "refused"
        via = " (override)" if d.get("via_override") else ""
        out.append(f"  live phase {phase}: {mark}{via} - {text(d.get('reason'))}")
    passed = r.get("passed") or {}
    if passed:
        out.append("passed:")
        out.extend(f"  {rung}: {when(ts, tz)}" for rung, ts in
                   sorted(passed.items(), key=lambda kv: float(kv[1])))
    if r.get("reset_at") is not None:
        out.append(f"ladder reset {when(r['reset_at'], tz)}: {text(r.get('reset_reason'))}")
    return out


def balance_lines(r: dict[str, Any]) -> list[str]:
    out = [f"balances ({text(r.get('source'))})"]
    rows = [(venue, asset, num(b.get("free")), num(b.get("used")))
            for venue in ("upbit", "binance")
            for asset, b in sorted((r.get(venue) or {}).items())]
    if rows:
        out.extend("  " + line for line in table(("venue", "asset", "free", "used"), rows))
    if "balances_at_start" in r:
        run_id = r.get("run_id")
        start = r.get("balances_at_start")
        if run_id is None:
            out.append("no run recorded yet")
        elif not start:
            out.append(f"last run {run_id}: no starting balances recorded")
        else:
            out.append(f"last run {run_id}, balances at its start:")
            start_rows = [(str(venue), str(asset), num(q))
                          for venue, assets in sorted(start.items()) if isinstance(assets, dict)
                          for asset, q in sorted(assets.items())]
            out.extend("  " + line for line in table(("venue", "asset", "total"), start_rows))
    return out


def preflight_lines(report: dict[str, Any], *, all_checks: bool = True) -> list[str]:
    s = report.get("summary") or {}
    ready = s.get("ready_for_live")
    dry = " (dry run: network checks skipped)" if report.get("dry_run") else ""
    out = [f"preflight phase {text(report.get('phase'))}{dry}: ready for live "
           f"{'yes' if ready else 'NO'}",
           f"{text(s.get('passed'))} passed · {text(s.get('failed'))} failed · "
           f"{text(s.get('warnings'))} warnings · {text(s.get('skipped'))} skipped"]
    if report.get("blocking"):
        out.append("blocking: " + ", ".join(map(str, report["blocking"])))
    for c in report.get("checks") or []:
        if all_checks or c.get("status") != "PASS":
            msg = str(c.get("message") or "")
            out.append(f"  {c.get('status')!s:<4} {c.get('name')}: "
                       f"{msg if len(msg) <= 200 else msg[:200] + '…'}")
    return out


def guard_lines(g: dict[str, Any]) -> list[str]:
    if not g.get("watchdog"):
        return ["guards: the watchdog is not running (it runs during a phase)"]
    out = [f"guards · {text(g.get('samples'))} samples"]
    for t in g.get("tripped") or []:
        out.append(f"TRIPPED {t.get('action')} {t.get('name')}: {t.get('reason')}")
    levels = g.get("levels") or {}
    rows = []
    for name, lv in sorted(levels.items(), key=lambda kv: _room_share(kv[1])):
        unit = GUARD_UNITS.get(name, "")
        rows.append((name, _with_unit(lv.get("observed"), unit),
                     _with_unit(lv.get("threshold"), unit),
                     _with_unit(float(lv["threshold"]) - float(lv["observed"]), unit),
                     str(lv.get("state") or "-")))
    if rows:
        out.extend(table(("guard", "now", "limit", "headroom", "state"), rows))
    for w in g.get("memory_headroom_warnings") or []:
        out.append(f"warning: {w}")
    return out


def streams_line(streams: dict[str, Any] | None) -> str | None:
    """A live run's websocket streams, one line: a stream that is down is in
    capitals with what replaces it (REST reads, paced by the venue's budget)."""
    if not streams:
        return None
    parts = []
    for venue in sorted(streams):
        kinds = streams[venue] or {}
        parts.append(f"{venue} " + ", ".join(
            f"{kind} {'up' if up else 'DOWN (REST)'}" for kind, up in sorted(kinds.items())))
    return "streams: " + " · ".join(parts)


def tightest_guards(g: dict[str, Any], n: int = 3) -> list[str]:
    """'cpu 12 % of 50 %' for the `n` guards nearest their limits (by share of it)."""
    levels = g.get("levels") or {}
    out = []
    for name, lv in sorted(levels.items(), key=lambda kv: _room_share(kv[1]))[:n]:
        unit = GUARD_UNITS.get(name, "")
        out.append(f"{name} {_with_unit(lv.get('observed'), unit)} of "
                   f"{_with_unit(lv.get('threshold'), unit)}")
    return out


def _room_share(lv: dict[str, Any]) -> float:
    th = float(lv.get("threshold") or 0)
    room = th - float(lv.get("observed") or 0)
    return room / abs(th) if th else room


def _with_unit(v: Any, unit: str) -> str:
    if unit == "$":
        return usd(v, signed=False)
    return f"{num(v, 4)} {unit}".rstrip()


def positions_lines(rows: list[dict[str, Any]], now: float, limit: int = 25) -> list[str]:
    """The open positions as a table: symbol, direction, entry and current premium,
    strategy PnL, age."""
    if not rows:
        return ["no open positions"]
    body = []
    for p in rows[:limit]:
        opened = p.get("opened_at")
        body.append((
            str(p.get("base") or "-"), _direction(p.get("direction")),
            _bps(p.get("entry_premium_bps")), _bps(p.get("current_premium_bps")),
            usd(p.get("pnl_usd")) if p.get("pnl_usd") is not None else "-",
            age(now - float(opened)) if opened else "-", str(p.get("state") or "-")))
    out = [f"{len(rows)} open position(s)",
           *table(("symbol", "dir", "entry", "now", "PnL", "age", "state"), body)]
    if len(rows) > limit:
        out.append(f"… and {len(rows) - limit} more")
    return out


def _bps(v: Any) -> str:
    try:
        return f"{float(v):+.0f}bp"
    except (TypeError, ValueError):
        return "-"


def _direction(d: Any) -> str:
    s = str(d or "-").lower()
    return {"sell_upbit_buy_binance": "sell Upbit/buy Binance",
            "buy_upbit_sell_binance": "buy Upbit/sell Binance"}.get(s, s)


def reconcile_lines(r: dict[str, Any]) -> list[str]:
    out = [f"reconciliation of run {text(r.get('run_id'))} ({text(r.get('source'))}): "
           f"{'OK' if r.get('ok') else 'DRIFT'}",
           f"  open orders on the venues: {_counts(r.get('open_orders'))} · positions not "
           f"flat in the journal: {_count(r.get('open_positions'))}"]
    out.extend(f"  - {p}" for p in r.get("problems") or [])
    for d in r.get("drift") or []:
        out.append(f"  {d.get('venue')} {d.get('asset')}: journal {num(d.get('journal'))} vs "
                   f"venue {num(d.get('venue_change'))} (diff {num(d.get('difference'))})")
    return out


def _counts(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {text(n)}" for k, n in v.items()) or "none"
    return _count(v)


def _count(v: Any) -> str:
    return str(len(v)) if isinstance(v, list | tuple | dict) else text(v)


# --- trade history: /trades /profit /performance /daily /show_config ---------------------
def trades_lines(rows: list[dict[str, Any]], tz: ZoneInfo) -> list[str]:
    if not rows:
        return ["no closed round trips yet"]
    body = [(when(r.get("closed_at"), tz)[5:16], str(r.get("base") or "-"),
             str(r.get("mode") or "-"), _bps(r.get("entry_premium_bps")),
             usd(r.get("pnl_usd")), usd(r.get("fees_usd"), signed=False),
             age(r.get("held_s")), str(r.get("exit_reason") or "-")) for r in rows]
    zone_name = datetime.now(tz).strftime("%Z")
    return [f"the newest {len(rows)} round trip(s), times in {tz.key} ({zone_name})",
            *table(("closed", "symbol", "mode", "entry", "PnL", "fees", "held", "exit"), body)]


def profit_lines(r: dict[str, Any]) -> list[str]:
    periods = r.get("periods") or {}
    body = []
    for key, label in (("today", "today"), ("week", "this week"), ("all", "all time")):
        p = periods.get(key) or {}
        inv = p.get("inventory_pnl_usd")
        body.append((label, str(p.get("round_trips", 0)), usd(p.get("strategy_pnl_usd")),
                     usd(inv) if inv is not None else "-",
                     usd(p.get("total_pnl_usd")) if p.get("total_pnl_usd") is not None
                     else "-", usd(p.get("fees_usd"), signed=False)))
    out = [f"profit (days in {r.get('timezone')}, today {r.get('today')})",
           *table(("period", "trips", "strategy", "inventory", "total", "fees"), body)]
    if any((periods.get(k) or {}).get("inventory_pnl_usd") is None for k in periods):
        out.append("inventory '-': the runs' KPI snapshots do not carry it; total needs it")
    return out


def performance_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return ["no closed round trips yet"]
    body = [(str(r["symbol"]), str(r["round_trips"]),
             f"{100 * r['wins'] / r['round_trips']:.0f}%" if r["round_trips"] else "-",
             usd(r["strategy_pnl_usd"]), usd(r["fees_usd"], signed=False)) for r in rows]
    return ["performance per symbol, all time",
            *table(("symbol", "trips", "win", "strategy PnL", "fees"), body)]


def daily_lines(r: dict[str, Any]) -> list[str]:
    body = [(str(d["date"]), str(d["round_trips"]),
             f"{100 * d['wins'] / d['round_trips']:.0f}%" if d["round_trips"] else "-",
             usd(d["strategy_pnl_usd"]), usd(d["fees_usd"], signed=False))
            for d in r.get("days") or []]
    return [f"PnL per day in {r.get('timezone')}, today first",
            *table(("day", "trips", "win", "strategy PnL", "fees"), body)]


def config_lines(r: dict[str, Any], *, all_settings: bool = False) -> list[str]:
    files = r.get("files") or []
    rows = r.get("settings") or []
    shown = [s for s in rows if all_settings or not s.get("default")]
    out = [f"settings read from: environment{', ' + ', '.join(files) if files else ''}",
           f"{len(shown)} set (of {len(rows)}; the others are defaults)"]
    out.extend(f"  {s['name']}={s['value']}  ({s['source']})" for s in shown)
    return out


def audit_lines(rows: list[dict[str, Any]], tz: ZoneInfo) -> list[str]:
    if not rows:
        return ["no audit rows yet"]
    body = [(when(r.get("ts"), tz), str(r.get("surface") or "-"), str(r.get("user_id") or "-"),
             str(r.get("role") or "-"), str(r.get("command") or "-"), _args(r.get("args")),
             str(r.get("outcome") or "-")[:80]) for r in rows]
    return table(("when", "surface", "user", "role", "command", "args", "outcome"), body)


def _args(raw: Any) -> str:
    """Audited arguments as `key=value` pairs (they are kept as JSON or as text)."""
    import json

    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return raw or "-"
    if isinstance(value, dict):
        return " ".join(f"{k}={text(v)}" for k, v in value.items()) or "-"
    return text(value) if value not in ("", None) else "-"
