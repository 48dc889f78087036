"""KPI JSON: one versioned schema for checkpoints and the final file (R-P3).

Checkpoints (`final: false`) and the final file share every key; values not
known yet (exit code, end time) are null. Files are written with
core.files.write_atomic, so a reader never sees half a file.
"""
from __future__ import annotations

from typing import Any

SCHEMA_VERSION = 1


def build_kpi(
    *,
    final: bool,
    run: dict[str, Any],
    engine: Any,
    exit_code: int | None,
    kill_switch_triggered: bool,
    stop_reason: str | None,
    trading_state: str,
    fx_mid: float,
    gate: dict[str, Any] | None = None,
    open_positions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    st = engine.stats()
    started = st.started_mono

    def since_start(mono: float | None) -> float | None:
        return None if mono is None else round(mono - started, 3)

    dust = [dict(d) for d in getattr(engine, "dust", [])]
    perf = {"loop_latency_ms": engine.latency.summary(),
            "book_to_legs_sent_ms": engine.book_to_send.summary(),
            "send_task_ms": engine.send_task.summary(),
            **engine.resources.summary()}
    return {
        "schema_version": SCHEMA_VERSION,
        "final": final,
        "summary": {
            "exit_code": exit_code,
            "round_trips_completed": st.round_trips,
            # Three PnL figures (docs/monitoring.md): strategy (what trading made, net
            # of fees, each venue at its own price), inventory revaluation (the
            # pre-funded holdings' price change) and total (= their sum, the account's
            # equity change). Drawdown and the gates use strategy PnL.
            "strategy_pnl_usd": round(st.pnl_usd, 6),
            "inventory_pnl_usd": round(st.inventory_pnl_usd, 6),
            "total_pnl_usd": round(st.total_pnl_usd, 6),
            "win_rate": round(st.win_rate, 6),
            "failed_fills_count": st.failed_fills,
            "kill_switch_triggered": kill_switch_triggered,
            "stop_reason": stop_reason,
            "max_drawdown_usd": round(engine.ledger.max_drawdown, 6),  # of strategy PnL
            "dust_usd": round(sum(d["usd"] for d in dust), 6),
        },
        "run": run,
        "performance": perf,
        "trading": {
            "ticks": len(engine.latency.samples),
            "entries": st.entries,
            "exits": st.exits,
            "wins": st.wins,
            "fees_usd": round(engine.ledger.fees_usd, 6),
            "exposure_usd": round(engine.exposure_usd(), 6),
            "first_entry_s": since_start(st.first_entry_mono),
            "first_exit_s": since_start(st.first_exit_mono),
            "open_positions": open_positions if open_positions is not None else engine.open_positions(),
            "marks": {"fx_usdt_krw": fx_mid, "base_usdt": engine.marks(),
                      "upbit_base_usd": engine.upbit_marks()},
            "inventory_change": engine.ledger.inventory_change(),
            # leg remainders closed positions left (under a venue's minimum order)
            "dust": dust,
        },
        "fills": {
            "orders_sent": sum(getattr(ex, "orders_sent", 0) for ex in engine.ex.values()),
            "failed_fills": st.failed_fills,
        },
        "exit_reasons": dict(engine.exit_reasons),
        "guards": {
            "trading_state": trading_state,
            "unhandled_errors": st.errors,
            "exchange_errors": st.exchange_errors,
            "rate_limit_hits": st.rate_limit_hits,
            "consecutive_errors": st.consecutive_errors,
            "gateway_refusals": dict(engine.gateway.refusals),
        },
        "gate": gate,
    }
