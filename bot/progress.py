"""Terminal progress line and summary table for `arbops demo` and `arbops run`."""
from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from bot.views import gate_lines, usd


class ProgressLine:
    """One line rewritten in place, at most every `every_s` seconds."""

    def __init__(self, stream: TextIO = sys.stderr, every_s: float = 0.5, width: int = 24) -> None:
        self.stream = stream
        self.every_s = every_s
        self.width = width
        self._last = 0.0
        self.tty = stream.isatty()

    def __call__(self, run: Any) -> None:
        now = time.monotonic()
        if now - self._last < self.every_s:
            return
        self._last = now
        st = run.engine.stats()
        elapsed = run.clock.time() - run.started_at
        total = max(run.spec.duration_s, 1e-9)
        done = min(elapsed / total, 1.0)
        bar = "#" * int(done * self.width) + "-" * (self.width - int(done * self.width))
        state = " closing" if run.closing else ""
        line = (
            f"[{bar}] {elapsed:5.0f}/{total:.0f}s  entries {st.entries}  exits {st.exits}  "
            f"round trips {st.round_trips}  strategy PnL {usd(st.pnl_usd)}  "
            f"inventory {usd(st.inventory_pnl_usd)}  "
            f"latency {st.last_latency_ms:.2f} ms{state}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(110))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def summary_table(kpi: dict[str, Any], kpi_path: str) -> str:
    s, r, p = kpi["summary"], kpi["run"], kpi["performance"]
    lat, cpu, mem = p["loop_latency_ms"], p["cpu_percent"], p["memory_mb"]
    rows = [
        ("run", f"{r['run_id']} ({r['mode']} phase {r['phase']}, {r['universe']}, {r['data_source']})"),
        ("duration", f"{r['duration_seconds']:.1f} s"),
        ("round trips", str(s["round_trips_completed"])),
        ("strategy PnL (USD, net of fees)", f"{s.get('strategy_pnl_usd', 0.0):+.4f}"),
        ("inventory revaluation (USD)", f"{s.get('inventory_pnl_usd', 0.0):+.4f}"),
        ("total equity change (USD)", f"{s['total_pnl_usd']:+.4f}"),
        ("win rate (every closed entry)", f"{s['win_rate']:.1%}"),
        ("max drawdown of strategy PnL (USD)", f"{s['max_drawdown_usd']:.4f}"),
        ("fees (USD)", f"{kpi['trading']['fees_usd']:.4f}"),
        ("failed fills", str(s["failed_fills_count"])),
        ("exit reasons", ", ".join(f"{k} {v}" for k, v in kpi["exit_reasons"].items()) or "-"),
        ("loop latency ms avg/p50/p99/max",
         f"{lat['avg']:.3f} / {lat['p50']:.3f} / {lat['p99']:.3f} / {lat['max']:.3f}"),
        ("CPU % avg/max", f"{cpu['avg']:.1f} / {cpu['max']:.1f}"),
        ("memory MB avg/max", f"{mem['avg']:.1f} / {mem['max']:.1f}"),
        ("stop reason", str(s["stop_reason"])),
        ("kill switch", "TRIGGERED" if s["kill_switch_triggered"] else "no"),
    ]
    gate = gate_lines(kpi.get("gate"))
    if gate:  # the verdict, then each failed check with observed value and threshold
        head, _, verdict = gate[0].partition(" gate ")
        rows.append((f"{head} gate", verdict))
        rows.extend(("", line.strip()) for line in gate[1:])
    dust = kpi.get("trading", {}).get("dust") or []
    if dust:  # leg remainders under a venue's minimum order: unhedged, so named
        rows.append(("dust left (USD)", f"{s.get('dust_usd', 0.0):.4f} in {len(dust)} leg(s)"))
        rows.extend(("", f"{d['base']} {d['venue']} {d['qty']:g} ({d['position_id']})")
                    for d in dust[:10])
    still = kpi.get("trading", {}).get("still_open_on_venues") or []
    if still:
        rows.append(("still open", f"{len(still)} item(s): clean up by hand (runbook 6.1)"))
        rows.extend(("", _open_item(x)) for x in still[:10])
    unresolved = kpi.get("trading", {}).get("unresolved_intents") or []
    if unresolved:
        rows.append(("unresolved orders", f"{len(unresolved)} intent(s): run `arbops reconcile`"))
        rows.extend(("", f"{x.get('client_order_id', '?')}: {x.get('why', '')}")
                    for x in unresolved[:10])
    incident = (kpi.get("kill") or {}).get("incident")
    if incident:
        rows.append(("incident report", str(incident)))
    rows.append(("exit code", str(s["exit_code"])))
    rows.append(("KPI JSON", kpi_path))
    w = max(len(k) for k, _ in rows)
    line = "-" * (w + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k.ljust(w)} | {v}" for k, v in rows), line])


def _open_item(item: dict[str, Any]) -> str:
    if "open_order" in item:
        return f"order {item['venue']} {item['symbol']} {item['side']} {item['open_order']}"
    if "error" in item:
        return f"{item['venue']}: {item['error']}"
    qty = ", ".join(f"{v} {q:g}" for v, q in (item.get("open_qty") or {}).items())
    return f"position {item.get('base')} {item.get('direction')} ({qty})"
