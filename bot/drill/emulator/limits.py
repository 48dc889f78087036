"""The venues' request limits, enforced the way the venues enforce them - or stricter.

Binance: REQUEST_WEIGHT per minute per IP (6,000), ORDERS per 10 s (100) and
per day (200,000). Every response carries X-MBX-USED-WEIGHT-1M, order answers
X-MBX-ORDER-COUNT-10S/-1D. A request over the weight limit is answered 429
(-1003) with Retry-After; an order over the order limit 429 (-1015).
Upbit: requests per second per group (quotation 10, `default` 30, `order` 8,
batch cancel one per two seconds); every answer carries
`Remaining-Req: group=...; min=...; sec=...`; over the limit, 429 (plain text).

Both venues ban an IP that keeps sending after a 429 (418 with Retry-After,
"2 minutes to 3 days" at Binance). Here the first request sent inside any
429's window is enough for a ban, and every request during a ban is answered
418: a client that honours Retry-After never sees one. Only requests already
in flight when the answer left (arriving within `inflight_grace_s` of it) are
answered like it without a ban; no client can recall those. Windows slide
(the venues' are at least this lenient), and a refused request still counts.

`stats` counts what a test or benchmark must see: requests per venue, 429s,
418s, bans, and requests received inside a Retry-After window or a ban
(`in_window`, in flight ones apart).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

from bot.drill.emulator.errors import ApiError, binance_error, plain_error

BINANCE_WEIGHT_MSG = (
    "Too many requests; current limit of IP(127.0.0.1) request weight is {limit} per 1 MINUTE. "
    "Please use WebSocket Streams for live updates to avoid bans."
)
UPBIT_GROUPS: dict[str, tuple[int, float]] = {  # group -> (requests, window seconds)
    "market": (10, 1.0), "candle": (10, 1.0), "trade": (10, 1.0), "ticker": (10, 1.0),
    "orderbook": (10, 1.0), "default": (30, 1.0), "order": (8, 1.0),
    "order-cancel-all": (1, 2.0),
}


@dataclasses.dataclass
class LimitConfig:
    enforce: bool = True
    binance_weight_per_min: int = 6000
    binance_weight_window_s: float = 60.0  # tests shorten it to see a storm in seconds
    binance_orders_per_10s: int = 100
    binance_orders_per_day: int = 200_000
    binance_ban_s: float = 120.0  # the shortest real ban
    upbit_groups: dict[str, tuple[int, float]] = dataclasses.field(
        default_factory=lambda: dict(UPBIT_GROUPS))
    upbit_ban_s: float = 60.0
    inflight_grace_s: float = 0.25

    def update(self, spec: dict[str, Any]) -> None:
        for key, value in spec.items():
            if key == "upbit_groups":
                self.upbit_groups.update({g: (int(n), float(w)) for g, (n, w) in value.items()})
            elif hasattr(self, key):
                setattr(self, key, type(getattr(self, key))(value))
            else:
                raise ValueError(f"unknown limit {key!r}")


@dataclasses.dataclass
class LimitStats:
    requests: int = 0
    http_429: int = 0
    http_418: int = 0
    bans: int = 0  # bans imposed (earned, or injected)
    in_flight: int = 0  # arrivals just after a 429/418, already on their way: tolerated
    in_window: int = 0  # requests received inside a Retry-After window or a ban
    max_weight_1m: float = 0.0
    times: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=200_000))

    def per_minute(self, now: float) -> int:
        return sum(1 for t in self.times if now - t <= 60.0)

    def to_json(self, now: float) -> dict[str, Any]:
        return {"requests": self.requests, "http_429": self.http_429, "http_418": self.http_418,
                "bans": self.bans, "in_flight": self.in_flight, "in_window": self.in_window,
                "max_weight_1m": self.max_weight_1m,
                "requests_last_minute": self.per_minute(now)}


class _Sliding:
    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.events: collections.deque[tuple[float, float]] = collections.deque()

    def used(self, now: float) -> float:
        while self.events and now - self.events[0][0] >= self.window_s:
            self.events.popleft()
        return sum(u for _, u in self.events)

    def add(self, now: float, units: float) -> None:
        self.events.append((now, units))

    def free_in(self, now: float, units: float, limit: float) -> float:
        """Seconds until `units` more would fit."""
        over = self.used(now) + units - limit
        freed = 0.0
        for t, u in self.events:
            freed += u
            if freed >= over:
                return max(t + self.window_s - now, 0.0)
        return self.window_s


class VenueLimits:
    """One venue's limiter: `check` before the handler, `headers` on every answer."""

    def __init__(self, venue: str, config: LimitConfig,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.venue = venue
        self.config = config
        self._now = monotonic
        self.windows: dict[str, _Sliding] = {}
        self.retry_until: dict[str, float] = {}  # scope ("*" or a group) -> end
        self.opened_at: dict[str, float] = {}  # scope -> when its window opened
        self.banned_until = -math.inf
        self.ban_started = -math.inf
        self.stats = LimitStats()

    def _window(self, name: str, window_s: float) -> _Sliding:
        w = self.windows.get(name)
        if w is None or w.window_s != window_s:
            w = self.windows[name] = _Sliding(window_s)
        return w

    def reset(self) -> None:
        self.windows.clear()
        self.retry_until.clear()
        self.opened_at.clear()
        self.banned_until = -math.inf
        self.ban_started = -math.inf

    # --- what the client did wrong ----------------------------------------------------
    def _ban(self, now: float) -> ApiError:
        ban_s = self.config.binance_ban_s if self.venue == "binance" else self.config.upbit_ban_s
        self.banned_until = max(self.banned_until, now + ban_s)
        self.ban_started = now
        self.stats.bans += 1
        return self._banned(now)

    def _banned(self, now: float) -> ApiError:
        left = str(max(1, math.ceil(self.banned_until - now)))
        self.stats.http_418 += 1
        if self.venue == "binance":
            until = int((time.time() + self.banned_until - now) * 1000)
            return binance_error(418, -1003, f"Way too much request weight used; IP banned "
                                 f"until {until}. Please use WebSocket Streams for live "
                                 "updates to avoid bans.", {"Retry-After": left})
        return plain_error(418, f"IP blocked for {left} seconds.", {"Retry-After": left})

    def _again(self, now: float, scope: str, group: str) -> ApiError:
        """The same 429 for a request that was on its way when the first one left."""
        self.stats.http_429 += 1
        left = str(max(1, math.ceil(self.retry_until[scope] - now)))
        if self.venue == "binance":
            return binance_error(429, -1003, BINANCE_WEIGHT_MSG.format(
                limit=self.config.binance_weight_per_min), {"Retry-After": left})
        return plain_error(429, "Too many API requests.",
                           {"Remaining-Req": f"group={group}; min=0; sec=0"})

    def ban_for(self, seconds: float) -> None:
        """An injected 418: a ban the client must sit out."""
        now = self._now()
        self.banned_until = max(self.banned_until, now + seconds)
        self.ban_started = now
        self.stats.bans += 1
        self.stats.http_418 += 1

    def open_window(self, scope: str, seconds: float) -> None:
        """A 429 was answered (by the limits or an injected fault): the client must
        not send on `scope` for `seconds`."""
        now = self._now()
        self.retry_until[scope] = max(self.retry_until.get(scope, -math.inf), now + seconds)
        self.opened_at[scope] = now
        self.stats.http_429 += 1

    def check(self, method: str, path: str, weight: int, group: str, is_order: bool) -> None:
        """Count the request; raise the venue's answer when it must be refused."""
        now = self._now()
        self.stats.requests += 1
        self.stats.times.append(now)
        if not self.config.enforce:
            self._count(now, weight, group, is_order)
            return
        grace = self.config.inflight_grace_s
        if now < self.banned_until:
            if now - self.ban_started <= grace:
                self.stats.in_flight += 1
            else:
                self.stats.in_window += 1
            raise self._banned(now)
        scopes = [s for s in ("*", group, "orders" if is_order else "")
                  if s and now < self.retry_until.get(s, -math.inf)]
        if scopes:
            if all(now - self.opened_at.get(s, -math.inf) <= grace for s in scopes):
                self.stats.in_flight += 1
                raise self._again(now, scopes[0], group)
            self.stats.in_window += 1
            raise self._ban(now)
        refusal = self._over(now, weight, group, is_order)
        self._count(now, weight, group, is_order)  # a refused request counts too
        if refusal is not None:
            raise refusal

    def _over(self, now: float, weight: int, group: str, is_order: bool) -> ApiError | None:
        cfg = self.config
        if self.venue == "binance":
            w = self._window("weight", cfg.binance_weight_window_s)
            if w.used(now) + weight > cfg.binance_weight_per_min:
                wait = max(1, math.ceil(w.free_in(now, weight, cfg.binance_weight_per_min)))
                self.open_window("*", wait)
                return binance_error(429, -1003, BINANCE_WEIGHT_MSG.format(
                    limit=cfg.binance_weight_per_min), {"Retry-After": str(wait)})
            if is_order:
                for name, window, limit in (("orders_10s", 10.0, cfg.binance_orders_per_10s),
                                            ("orders_1d", 86_400.0, cfg.binance_orders_per_day)):
                    ow = self._window(name, window)
                    if ow.used(now) + 1 > limit:
                        wait = max(1, math.ceil(ow.free_in(now, 1, limit)))
                        self.open_window("orders", wait)
                        unit = "10 SECOND" if window == 10.0 else "1 DAY"
                        return binance_error(429, -1015, f"Too many new orders; current limit "
                                             f"is {limit} orders per {unit}.",
                                             {"Retry-After": str(wait)})
            return None
        limit, window = cfg.upbit_groups.get(group, (30, 1.0))
        gw = self._window(group, window)
        if gw.used(now) + 1 > limit:
            self.open_window(group, max(gw.free_in(now, 1, limit), 0.001))
            return plain_error(429, "Too many API requests.",
                               {"Remaining-Req": f"group={group}; min=0; sec=0"})
        return None

    def _count(self, now: float, weight: int, group: str, is_order: bool) -> None:
        if self.venue == "binance":
            w = self._window("weight", self.config.binance_weight_window_s)
            w.add(now, weight)
            self.stats.max_weight_1m = max(self.stats.max_weight_1m, w.used(now))
            if is_order:
                self._window("orders_10s", 10.0).add(now, 1)
                self._window("orders_1d", 86_400.0).add(now, 1)
            return
        _, window = self.config.upbit_groups.get(group, (30, 1.0))
        self._window(group, window).add(now, 1)

    # --- what every answer carries ----------------------------------------------------
    def headers(self, group: str, is_order: bool) -> dict[str, str]:
        now = self._now()
        if self.venue == "binance":
            weight = self._window("weight", self.config.binance_weight_window_s)
            out = {"X-MBX-USED-WEIGHT-1M": str(int(weight.used(now)))}
            if is_order:
                out["X-MBX-ORDER-COUNT-10S"] = str(int(self._window("orders_10s", 10.0).used(now)))
                out["X-MBX-ORDER-COUNT-1D"] = str(int(self._window("orders_1d", 86_400.0)
                                                      .used(now)))
            return out
        limit, window = self.config.upbit_groups.get(group, (30, 1.0))
        left = max(0, limit - int(self._window(group, window).used(now)))
        return {"Remaining-Req": f"group={group}; min=1800; sec={left}"}
