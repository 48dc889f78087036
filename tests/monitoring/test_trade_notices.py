"""Per-trade messages (R-O6): ordered, merged by the notifier under a flood, never blocking a
tick; the modes; and a real fast paper run that sends an ENTRY and an EXIT message per
round trip through the service's notifier."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_service
from core.commands import RunArgs
from core.config.settings import Settings
from core.domain.trade_events import TradeEvent, TradeEventKind
from core.monitoring.trade_notices import TradeNotices, describe, digest, resolve_mode

pytestmark = [pytest.mark.timeout(60)]


class Recorder:
    """A notifier that keeps what it is given; `gate` makes it stall like a slow API."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def notify(self, severity: str, title: str, body: str) -> None:
        await self.gate.wait()
        self.items.append((str(severity), title, body))


def ev(i: int, kind: TradeEventKind = TradeEventKind.ENTRY, **kw: Any) -> TradeEvent:
    base = {"premium_bps": 12.5, "expected_edge_bps": 4.0} if kind is TradeEventKind.ENTRY \
        else {}
    return TradeEvent(kind=kind, base=f"C{i}", position_id=f"p{i}",
                      direction="sell_upbit_buy_binance", at=1_700_000_000.0 + i, qty=0.5,
                      prices={"upbit": 145_000_000.0, "binance": 100_000.0}, **{**base, **kw})


@pytest.mark.parametrize(("setting", "run_mode", "want"), [
    ("auto", "live", "every"), ("auto", "paper", "off"), ("off", "live", "off"),
    ("every", "paper", "every"), ("digest", "live", "digest")])
def test_modes(setting: str, run_mode: str, want: str) -> None:
    assert resolve_mode(setting, run_mode) == want


def test_bad_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="loud"):
        resolve_mode("loud", "live")


def test_wording_carries_the_facts() -> None:
    entry = describe(ev(1))
    assert entry.startswith("ENTRY C1 sell Upbit / buy Binance")
    assert "145,000,000 KRW" in entry and "100,000 USDT" in entry
    assert "+12.5 bp" in entry and "+4.0 bp" in entry
    out = describe(ev(2, TradeEventKind.EXIT, pnl_usd=-1.234, fees_usd=0.5, held_s=42,
                      detail="take_profit"))
    assert "strategy PnL -$1.23" in out and "fees $0.50" in out and "held 42 s" in out
    assert "take_profit" in out
    assert describe(ev(3, TradeEventKind.FAILED_LEG, detail="entry leg on binance rejected")
                    ).startswith("FAILED LEG C3: entry leg on binance rejected")
    d = digest([ev(1), ev(2, TradeEventKind.EXIT, pnl_usd=2.0),
                ev(3, TradeEventKind.EXIT, pnl_usd=-0.5)], 15)
    assert d.startswith("last 15 min: 1 entries, 2 exits, strategy PnL +$1.50")


async def test_a_flood_stays_ordered_and_push_never_waits() -> None:
    rec = Recorder()
    rec.gate.clear()  # the notifier stalls: nothing may wait for it
    notices = TradeNotices(lambda: rec, "every")
    notices.start()
    t0 = time.perf_counter()
    for i in range(2000):
        notices.push(ev(i))
    pushed_ms = (time.perf_counter() - t0) * 1000
    # 2000 pushes while the notifier is stuck: bounded by the append, not the network
    assert pushed_ms < 200, pushed_ms
    await asyncio.sleep(0.05)
    assert rec.items == []
    rec.gate.set()
    await notices.stop()
    bodies = [b for _s, _t, b in rec.items]
    assert len(bodies) == 2000
    assert [b.split()[1] for b in bodies] == [f"C{i}" for i in range(2000)]


async def test_off_sends_nothing_and_digest_sends_one_summary() -> None:
    rec = Recorder()
    off = TradeNotices(lambda: rec, "off")
    off.start()
    off.push(ev(1))
    await off.stop()
    assert rec.items == []
    dig = TradeNotices(lambda: rec, "digest", digest_s=3600)
    dig.start()
    for i in range(30):
        dig.push(ev(i, TradeEventKind.EXIT, pnl_usd=0.1))
    await dig.stop()  # the run's end sends what is pending
    assert len(rec.items) == 1
    assert "30 exits" in rec.items[0][2] and "(the last 20 of 30)" in rec.items[0][2]


async def test_a_paper_run_sends_an_entry_and_an_exit_per_round_trip(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, sim_fast=True, trade_notifications="every",
                        log_level="WARNING")
    service = await build_service(settings, fast=True)
    rec = Recorder()
    service.notifier = rec
    try:
        outcome = await service.run_phase(service.plan_run(
            RunArgs(phase=1, duration_seconds=20, seed=7, universe="top10")))
    finally:
        await service.store.close()
    trades = [b for _s, t, b in rec.items if t == "trade"]
    entries = [b for b in trades if b.startswith("ENTRY")]
    exits = [b for b in trades if b.startswith("EXIT")]
    rt = outcome.kpi["summary"]["round_trips_completed"]
    assert rt > 0
    assert len(exits) == rt
    assert len(entries) >= rt
    # an exit follows its own entry
    first_exit = exits[0].split()[1]
    assert trades.index(next(b for b in entries if b.split()[1] == first_exit)) < \
        trades.index(exits[0])
