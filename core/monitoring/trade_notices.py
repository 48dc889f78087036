"""Per-trade messages (entry, exit, failed or unwound leg) through the notifier.

The engine calls `push()` from its tick: it appends to a deque and returns, so a
trade message never slows a tick. One task sends them in order through the
notifier's own queue (which merges a flood into fewer messages). Modes:
`every` (one message per event), `digest` (one summary every N minutes), `off`.
"""
from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from loguru import logger

from core.domain.journal_kinds import Severity
from core.domain.money import usd
from core.domain.trade_events import TradeEvent, TradeEventKind

Mode = Literal["off", "every", "digest"]
TITLE = "trade"
_DIGEST_LINES = 20


def resolve_mode(setting: str, run_mode: str) -> Mode:
    """`auto` is every trade on a live run and off on paper (a sim run trades often)."""
    if setting == "auto":
        return "every" if run_mode == "live" else "off"
    if setting in ("off", "every", "digest"):
        return setting  # type: ignore[return-value]
    raise ValueError(f"unknown trade notification mode {setting!r}")


def _held(s: float | None) -> str:
    if s is None:
        return "-"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _prices(ev: TradeEvent) -> str:
    out = []
    for venue, px in sorted(ev.prices.items()):
        quote = "KRW" if venue == "upbit" else "USDT"
        out.append(f"{venue} {px:,.0f} {quote}" if quote == "KRW" and px >= 100
                   else f"{venue} {px:,.6g} {quote}")
    return ", ".join(out) or "-"


def _direction(d: str) -> str:
    return {"sell_upbit_buy_binance": "sell Upbit / buy Binance",
            "buy_upbit_sell_binance": "buy Upbit / sell Binance"}.get(d, d)


def describe(ev: TradeEvent) -> str:
    """One event in a line or two, for a phone."""
    if ev.kind is TradeEventKind.ENTRY:
        return (f"ENTRY {ev.base} {_direction(ev.direction)} qty {ev.qty:g}\n"
                f"fills (incl. fees) {_prices(ev)}; premium {ev.premium_bps:+.1f} bp, expected edge "
                f"{(ev.expected_edge_bps or 0):+.1f} bp")
    if ev.kind is TradeEventKind.EXIT:
        return (f"EXIT {ev.base} ({ev.detail or 'exit'}) strategy PnL {usd(ev.pnl_usd)}, "
                f"fees {usd(ev.fees_usd, signed=False)}, held {_held(ev.held_s)}\n"
                f"mids at exit {_prices(ev)}"
                + (f"; premium {ev.premium_bps:+.1f} bp" if ev.premium_bps is not None else ""))
    if ev.kind is TradeEventKind.UNWIND:
        return f"UNWIND {ev.base}: {ev.detail} (qty {ev.qty:g})"
    return f"FAILED LEG {ev.base}: {ev.detail}"


def digest(events: list[TradeEvent], minutes: float) -> str:
    entries = sum(1 for e in events if e.kind is TradeEventKind.ENTRY)
    exits = [e for e in events if e.kind is TradeEventKind.EXIT]
    failed = sum(1 for e in events if e.kind is TradeEventKind.FAILED_LEG)
    unwound = sum(1 for e in events if e.kind is TradeEventKind.UNWIND)
    pnl = sum(e.pnl_usd or 0.0 for e in exits)
    head = (f"last {minutes:g} min: {entries} entries, {len(exits)} exits, strategy PnL "
            f"{usd(pnl)}" + (f", {failed} failed legs" if failed else "")
            + (f", {unwound} unwinds" if unwound else ""))
    lines = [describe(e).split("\n")[0] for e in events[-_DIGEST_LINES:]]
    more = len(events) - len(lines)
    return "\n".join([head, *([f"(the last {len(lines)} of {len(events)})"] if more else []),
                      *lines])


class TradeNotices:
    def __init__(self, notifier: Callable[[], Any], mode: Mode, digest_s: float = 900.0) -> None:
        # `notifier` is read at send time: Telegram may replace the service's notifier
        self._notifier = notifier
        self.mode = mode
        self.digest_s = digest_s
        self._events: deque[TradeEvent] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0

    def push(self, ev: TradeEvent) -> None:
        """From the engine's tick: O(1), never awaits."""
        if self.mode == "off":
            return
        self._events.append(ev)
        if self.mode == "every":
            self._wake.set()

    def start(self) -> None:
        if self.mode != "off" and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="trade-notices")

    async def stop(self) -> None:
        """Send what is pending (a last digest), then end."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._flush()

    async def _loop(self) -> None:
        while True:
            if self.mode == "digest":
                await asyncio.sleep(self.digest_s)
            else:
                await self._wake.wait()
                self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        if not self._events:
            return
        notifier = self._notifier()
        try:
            if self.mode == "digest":
                batch = list(self._events)
                await notifier.notify(Severity.INFO, TITLE, digest(batch, self.digest_s / 60))
                for _ in batch:
                    self._events.popleft()
                self.sent += 1
                return
            while self._events:
                # Taken off only once handed over: a stop mid-send sends it again.
                await notifier.notify(Severity.INFO, TITLE, describe(self._events[0]))
                self._events.popleft()
                self.sent += 1
        except Exception:  # noqa: BLE001 - a trade message never hurts the run
            logger.exception("trade notification failed")
