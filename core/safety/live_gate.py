"""The LIVE start gate (R-S1): every condition, each named, none skipped.

`check_live_start` evaluates ALL conditions even after one fails, so the operator sees
the whole list at once; any exception while checking a condition is that condition's
failure carrying the exception text. An empty list is the only "yes".
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from core.domain.journal_kinds import EventKind
from core.domain.models import Venue
from core.ports import JournalStore
from core.safety.failure import Failure
from core.safety.ladder import LadderDecision

PREFLIGHT_FLAG = "preflight_last"  # flags row: the last preflight's summary (JSON)
PREFLIGHT_MAX_AGE_S = 30 * 60.0
CLEAN_STATUSES = ("completed",)
RECONCILE_EVENT = EventKind.RECONCILED  # written by PhaseRun and OperatorService.reconcile


@dataclass(frozen=True, slots=True)
class ArmView:
    """What the gate needs from the ARM: its failures and its cap."""

    failures: list[Failure]
    cap_usd: float | None


@dataclass(slots=True)
class LiveStartContext:
    settings: Any
    store: JournalStore
    clock: Any
    phase: int
    notional_usd: float
    venues: Mapping[Any, Any] | None
    arm: Callable[[], Awaitable[ArmView]]
    ladder: Callable[[int], Awaitable[LadderDecision]]
    halted: Callable[[], Awaitable[str | None]]  # SQLite flag, in-memory state, Redis mirror
    lock: Any  # EngineLock: .held, await .fence_ok()
    preflight_max_age_s: float = PREFLIGHT_MAX_AGE_S
    real_venue_types: tuple[type, ...] | None = None  # default: (CcxtExchange,)


async def _env(ctx: LiveStartContext) -> list[Failure]:
    env = ctx.settings.arbitrage_env
    return [] if env == "live" else [Failure("env", f"ARBITRAGE_ENV={env}, live needs live")]


async def _arm(ctx: LiveStartContext) -> list[Failure]:
    return list((await ctx.arm()).failures)


async def _cap(ctx: LiveStartContext) -> list[Failure]:
    cap = (await ctx.arm()).cap_usd
    n = float(ctx.notional_usd)
    if cap is None:
        return [Failure("notional_cap", "no valid armed cap to compare the phase notional with")]
    if not n > 0 or n > cap:  # `not n > 0` also refuses NaN
        return [Failure("notional_cap", f"phase notional ${n:g} exceeds the armed cap "
                                        f"${cap:g} (or is not positive)")]
    return []


async def _preflight(ctx: LiveStartContext) -> list[Failure]:
    raw = await ctx.store.get_flag(PREFLIGHT_FLAG)
    if raw is None:
        return [Failure("preflight", "no preflight on record: run `arbops preflight`")]
    rec = json.loads(raw)
    age = ctx.clock.time() - float(rec["ts"])
    out = []
    if rec.get("dry_run"):
        out.append(Failure("preflight", "the last preflight was a dry run"))
    elif rec.get("ready_for_live") is not True:
        out.append(Failure("preflight", "the last preflight was not ready for live: "
                                        f"{', '.join(rec.get('blocking') or []) or '?'}"))
    if age < 0 or age > ctx.preflight_max_age_s:
        out.append(Failure("preflight", f"the last preflight is {age:.0f} s old (at most "
                                        f"{ctx.preflight_max_age_s:.0f} s)"))
    return out


async def _halted(ctx: LiveStartContext) -> list[Failure]:
    reason = await ctx.halted()
    return [Failure("halted", f"kill flag set / HALTED: {reason}")] if reason else []


async def _last_run(ctx: LiveStartContext) -> list[Failure]:
    last = await ctx.store.last_run()
    if last is None:
        return []
    status = last.get("status")
    clean = last.get("ended_at") is not None and (
        status in CLEAN_STATUSES or (status == "failed" and bool(last.get("gate_json"))))
    if clean:
        return []
    # Only a reconciliation that came out ok (journal == venues) clears an unclean end.
    for e in await ctx.store.events(run_id=last["run_id"], kind=RECONCILE_EVENT, limit=20):
        if isinstance(e.get("payload"), dict) and e["payload"].get("ok") is True:
            return []
    return [Failure("last_run", f"last run {last['run_id']} ended {status!r} and no ok "
                                "reconciliation is recorded: run `arbops reconcile`")]


async def _ladder(ctx: LiveStartContext) -> list[Failure]:
    d = await ctx.ladder(ctx.phase)
    return [] if d.allowed else [Failure("ladder", d.reason)]


async def _lock(ctx: LiveStartContext) -> list[Failure]:
    lock = ctx.lock
    lost = getattr(lock, "lost_reason", None)
    if lost:
        return [Failure("instance_lock", f"the single-instance lock was lost: {lost}")]
    if lock is None or not lock.held:
        return [Failure("instance_lock", "the single-instance lock is not held by this engine")]
    if not await lock.fence_ok():
        return [Failure("instance_lock", "the lock's fencing token is no longer valid "
                                         f"({getattr(lock, 'lost_reason', None) or 'lost'})")]
    return []


async def _venues(ctx: LiveStartContext) -> list[Failure]:
    types = ctx.real_venue_types
    if types is None:
        from core.venues.ccxt_exchange import CcxtExchange  # lazy: ccxt is heavy

        types = (CcxtExchange,)
    from core.venues.paper_exchange import PaperExchange

    venues = ctx.venues or {}
    out = []
    for v in (Venue.UPBIT, Venue.BINANCE):
        ex = venues.get(v)
        if ex is None:
            out.append(Failure("venues", f"{v}: no exchange adapter"))
        elif isinstance(ex, PaperExchange) or not isinstance(ex, types):
            out.append(Failure("venues", f"{v}: {type(ex).__name__} is not a real venue adapter"))
    return out


CONDITIONS: tuple[tuple[str, Callable[[LiveStartContext], Awaitable[list[Failure]]]], ...] = (
    ("env", _env),
    ("arm", _arm),
    ("preflight", _preflight),
    ("notional_cap", _cap),
    ("halted", _halted),
    ("last_run", _last_run),
    ("ladder", _ladder),
    ("instance_lock", _lock),
    ("venues", _venues),
)


async def check_live_start(ctx: LiveStartContext) -> list[Failure]:
    failures: list[Failure] = []
    for name, cond in CONDITIONS:
        try:
            failures += await cond(ctx)
        except Exception as exc:  # noqa: BLE001 - fail closed, naming the condition
            failures.append(Failure(name, f"error while checking: {type(exc).__name__}: {exc}"))
    return failures
