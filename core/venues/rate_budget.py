"""Request budgets per venue, shared by every client of the process.

A venue publishes limits (Binance: request weight per minute per IP, orders
per 10 s and per day per account; Upbit: requests per second per group). One
VenueBudget per venue counts every request this process sends against each
limit in a sliding window - stricter than a fixed window, so a count that
passes here passes at the venue - and folds in what the venue reports in its
own headers, so usage by another process on the same IP counts too.

Each client has a role. Market data may use at most half of every limit (the
headroom a poller keeps); trading may fill the process up to 90 %. However
busy the poller is, an order therefore finds at least 40 % of every limit free
and never waits behind book requests.

A 429 or 418 blocks what it names until its Retry-After has passed: every
request to the venue for an IP-wide limit or a ban, one group for a group
limit. Nothing is sent inside the window; a caller that cannot wait that long
gets RateLimited at once, without a request.
"""
from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import RateLimited

ALL = "*"  # a block on every limit of the venue (an IP ban, an IP-wide weight limit)
Units = tuple[tuple[str, float], ...]  # (limit name, units) one request spends


class Role(StrEnum):
    MARKET_DATA = "market_data"
    TRADING = "trading"


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    limit: float  # units per window, as the venue publishes it
    window_s: float


@dataclass(frozen=True, slots=True)
class Block:
    """What a rate-limit answer blocks, and for how long."""

    scopes: tuple[str, ...]  # limit names, or (ALL,)
    seconds: float


@dataclass(frozen=True, slots=True)
class RateModel:
    """A venue's published limits as data, with how its requests and answers read."""

    limits: tuple[Limit, ...]
    # (ccxt api, HTTP method, ccxt path, ccxt cost) -> what the request spends
    classify: Callable[[str, str, str, float], Units]
    # response headers -> (limit name, units the venue says are used now)
    usage: Callable[[Mapping[str, str]], list[tuple[str, float]]]
    # (status, headers, body, the request's units) of a rate-limit answer -> what it blocks
    block: Callable[[int, Mapping[str, str], str, Units], Block]
    shares: Mapping[Role, float] = field(
        default_factory=lambda: {Role.MARKET_DATA: 0.5, Role.TRADING: 0.9})
    total_share: float = 0.9
    # Our count of a request ends this much after the venue's: the venue counts it
    # when it arrives, later than we sent it, so our window must outlast its.
    margin_s: float = 0.25
    # Market data's share is also enforced over each 1/pace_slices of the window.
    pace_slices: int = 1


class _Window:
    """Units spent per role in a sliding window, plus usage only the venue saw."""

    __slots__ = ("events", "foreign", "foreign_until", "limit", "window_s")

    def __init__(self, limit: Limit, margin_s: float) -> None:
        self.limit = limit
        self.window_s = limit.window_s + margin_s
        self.events: deque[tuple[float, float, Role]] = deque()  # (t, units, role)
        self.foreign = 0.0
        self.foreign_until = -math.inf

    def expire(self, now: float) -> None:
        cutoff = now - self.window_s
        while self.events and self.events[0][0] <= cutoff:
            self.events.popleft()
        if now >= self.foreign_until:
            self.foreign = 0.0

    def used(self, role: Role | None = None, since: float = -math.inf) -> float:
        return sum(u for t, u, r in self.events
                   if t > since and (role is None or r is role))

    def wait_for(self, now: float, units: float, cap: float, role: Role | None,
                 horizon: float | None = None) -> float:
        """Seconds until `units` more fit under `cap` within `horizon` seconds (the
        whole window by default); 0: now. Foreign usage counts (for the whole
        window) until its report is a window old."""
        horizon = self.window_s if horizon is None else horizon
        since = now - horizon
        cap = max(cap, units) + 1e-9  # a request alone in the window always fits
        foreign = self.foreign if role is None else 0.0
        used = self.used(role, since)
        if used + foreign + units <= cap:
            return 0.0
        # Walk the expiries in time order; the foreign share drops at foreign_until.
        freed = 0.0
        foreign_checked = foreign == 0.0
        for t, u, r in self.events:
            if t <= since or (role is not None and r is not role):
                continue
            tau = t + horizon
            if not foreign_checked and tau > self.foreign_until:
                foreign_checked = True
                if used - freed + units <= cap:
                    return max(self.foreign_until - now, 0.0)
            freed += u
            f = foreign if tau < self.foreign_until else 0.0
            if used - freed + f + units <= cap:
                return max(tau - now, 0.0)
        return max(self.foreign_until - now, 0.0)

    def report(self, now: float, used: float) -> None:
        """The venue's own count: what exceeds ours was spent by someone else."""
        mine = self.used()
        if used > mine:
            # The venue counted these when they reached it, before now: they leave
            # its window within one window from now (no margin needed).
            self.foreign = used - mine
            self.foreign_until = now + self.limit.window_s


@dataclass(slots=True)
class BudgetStats:
    spent: dict[Role, dict[str, float]] = field(default_factory=lambda: {r: {} for r in Role})
    sent: int = 0
    refused: int = 0  # RateLimited raised without a request
    slept: dict[Role, int] = field(default_factory=lambda: dict.fromkeys(Role, 0))
    waiting: dict[Role, int] = field(default_factory=lambda: dict.fromkeys(Role, 0))  # now
    waits_s: dict[Role, deque[float]] = field(default_factory=lambda: {
        r: deque(maxlen=10_000) for r in Role})
    rate_limited: int = 0  # 429/418 answers seen
    blocks: list[tuple[float, Block]] = field(default_factory=list)


class VenueBudget:
    """The process-wide budget of one venue (see the module doc)."""

    def __init__(self, venue: str, model: RateModel, monotonic: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.venue = venue
        self.model = model
        self._now = monotonic
        self._sleep = sleep
        self._windows = {lim.name: _Window(lim, model.margin_s) for lim in model.limits}
        self._blocked: dict[str, float] = {}  # scope -> monotonic end
        self.stats = BudgetStats()

    def now(self) -> float:
        return self._now()

    # --- asking -----------------------------------------------------------------
    def units(self, api: str, method: str, path: str, ccxt_cost: float) -> Units:
        return self.model.classify(api, method.upper(), path, ccxt_cost)

    def blocked_for(self, units: Units) -> float:
        """Seconds left of a block covering this request (0: none)."""
        now = self._now()
        names = [ALL, *(n for n, _ in units)]
        ends = [self._blocked.get(n, -math.inf) for n in names]
        return max(0.0, max(ends) - now)

    def wait_for(self, role: Role, units: Units) -> float:
        """Seconds until this request fits every cap (0: it may go now)."""
        now = self._now()
        wait = 0.0
        share = self.model.shares[role]
        for name, u in units:
            w = self._windows.get(name)
            if w is None:
                continue
            w.expire(now)
            wait = max(wait,
                       w.wait_for(now, u, share * w.limit.limit, role),
                       w.wait_for(now, u, self.model.total_share * w.limit.limit, None))
            if role is Role.MARKET_DATA and self.model.pace_slices > 1:
                # Market data spends its share evenly, never in a burst that would
                # leave it (and the books) waiting for the rest of the window.
                n = self.model.pace_slices
                wait = max(wait, w.wait_for(now, u, share * w.limit.limit / n, role,
                                            w.window_s / n))
        return wait

    async def acquire(self, role: Role, units: Units, max_wait_s: float) -> float:
        """Wait until the request may be sent and count it; returns the time waited.
        Raises RateLimited, without waiting, when the wait would exceed max_wait_s."""
        start = self._now()
        while True:
            blocked = self.blocked_for(units)
            wait = blocked if blocked > 0 else self.wait_for(role, units)
            if wait <= 0:
                self._spend(role, units)
                waited = self._now() - start
                self.stats.waits_s[role].append(waited)
                return waited
            if self._now() - start + wait > max_wait_s:
                self.stats.refused += 1
                why = "blocked after a rate-limit answer" if blocked > 0 else "budget spent"
                raise RateLimited(f"{self.venue}: {why}; {wait:.2f} s to wait "
                                  f"(not sent)", wait)
            self.stats.slept[role] += 1
            self.stats.waiting[role] += 1
            try:
                await self._sleep(wait)
            finally:
                self.stats.waiting[role] -= 1

    def _spend(self, role: Role, units: Units) -> None:
        now = self._now()
        spent = self.stats.spent[role]
        for name, u in units:
            w = self._windows.get(name)
            if w is not None:
                w.events.append((now, u, role))
            spent[name] = spent.get(name, 0.0) + u
        self.stats.sent += 1

    def spent(self, role: Role) -> dict[str, float]:
        """Units this role has spent since start, per limit (a copy)."""
        return dict(self.stats.spent[role])

    def interval_for(self, role: Role, spent: dict[str, float]) -> float:
        """The shortest interval at which spending `spent` every time stays inside
        the role's share of every limit, evenly over each window."""
        share = self.model.shares[role]
        return max((u * w.limit.window_s / (share * w.limit.limit)
                    for name, u in spent.items() if u > 0
                    for w in (self._windows.get(name),) if w is not None), default=0.0)

    # --- what the venue said ------------------------------------------------------
    def observe(self, status: int, headers: Mapping[str, str], body: str,
                units: Units = ()) -> Block | None:
        """Every response: fold in the venue's usage headers; a 429/418 blocks."""
        now = self._now()
        for name, used in self.model.usage(headers):
            w = self._windows.get(name)
            if w is not None:
                w.expire(now)
                w.report(now, used)
        if status not in (429, 418):
            return None
        blk = self.model.block(status, headers, body, units)
        self.stats.rate_limited += 1
        self.stats.blocks.append((now, blk))
        for scope in blk.scopes:
            self._blocked[scope] = max(self._blocked.get(scope, -math.inf), now + blk.seconds)
        return blk

    def block(self, scopes: Iterable[str], seconds: float) -> None:
        now = self._now()
        for scope in scopes:
            self._blocked[scope] = max(self._blocked.get(scope, -math.inf), now + seconds)

    def used(self, name: str, role: Role | None = None) -> float:
        w = self._windows[name]
        w.expire(self._now())
        return w.used(role)


class VenueBudgets:
    """One budget per venue for the whole process (built once, in bot/app.py, and
    handed to every client: trading, market data, preflight, reconcile, kill)."""

    def __init__(self, models: Mapping[str, RateModel], monotonic: Callable[[], float],
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._budgets = {v: VenueBudget(v, m, monotonic, sleep) for v, m in models.items()}

    def __getitem__(self, venue: str) -> VenueBudget:
        return self._budgets[str(venue)]

    def items(self) -> list[tuple[str, VenueBudget]]:
        return list(self._budgets.items())


def retry_after_s(headers: Mapping[str, str], default: float) -> float:
    """The Retry-After header in seconds (HTTP allows only seconds here), else default."""
    for key, value in headers.items():
        if key.lower() == "retry-after":
            try:
                return max(float(value), 0.0)
            except ValueError:
                return default
    return default
