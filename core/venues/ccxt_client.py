"""ccxt clients that spend the process's venue budget on every request.

A thin subclass of the venue's ccxt class hooks three of ccxt's own seams:
`fetch2` (every request, before it is signed: wait for the budget, or refuse
without sending), `on_rest_response` (every answer: the venue's usage headers
and rate-limit blocks feed the budget) and `handle_errors` (a 429 or 418 is a
rate limit whatever its body says; ccxt would read an Upbit JSON-bodied 429 as
a generic error). ccxt's own per-instance throttle is off: one budget per venue
replaces it, shared by every client of the process.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core.venues.rate_budget import Role, Units, VenueBudget, retry_after_s

_UNITS: contextvars.ContextVar[Units] = contextvars.ContextVar("arbops_request_units",
                                                               default=())
# When this context's last request left (budget monotonic clock): a book is no
# older than the request that fetched it, so that is its conservative stamp.
_SENT: contextvars.ContextVar[float | None] = contextvars.ContextVar("arbops_request_sent",
                                                                     default=None)


_PATIENCE: contextvars.ContextVar[float | None] = contextvars.ContextVar("arbops_patience",
                                                                         default=None)


def last_sent_mono() -> float | None:
    """The monotonic time the last request made in this context was sent."""
    return _SENT.get()


@contextlib.contextmanager
def patience(max_wait_s: float) -> Iterator[None]:
    """Let the requests made inside wait up to max_wait_s for budget (a batch
    cancel may go once per two seconds at Upbit: a kill waits for its turn)."""
    token = _PATIENCE.set(max_wait_s)
    try:
        yield
    finally:
        _PATIENCE.reset(token)
_CLASSES: dict[tuple[str, bool, bool], type] = {}  # per venue and kind, built once


@dataclass(slots=True)
class Gate:
    budget: VenueBudget
    role: Role
    max_wait_s: float  # longest a request may wait for budget before RateLimited


def make_client(ccxt_id: str, config: dict[str, Any], gate: Gate, *,
                streams: bool = False, whole_books: bool = False) -> Any:
    """A budgeted ccxt client; `streams` makes it ccxt.pro's (websockets too),
    whose REST requests (a book snapshot for a resync) spend the same budget.
    `whole_books`: the venue's book messages are whole books (Upbit), kept as
    they arrive instead of re-sorted level by level."""
    key = (ccxt_id, streams, whole_books)
    cls = _CLASSES.get(key)
    if cls is None:
        cls = _CLASSES[key] = _budgeted(ccxt_id, streams, whole_books)
    client = cls(config)
    client.enableRateLimit = False  # the shared budget paces instead
    client.arbops_gate = gate
    return client


def _budgeted(ccxt_id: str, streams: bool = False, whole_books: bool = False) -> type:
    import ccxt
    import ccxt.async_support as ccxt_async

    if streams:
        import ccxt.pro as ccxt_pro

        base = getattr(ccxt_pro, ccxt_id)
    else:
        base = getattr(ccxt_async, ccxt_id)

    class VenueRateLimit(ccxt.RateLimitExceeded):
        """A 429 (or 418: `banned`) with the venue's Retry-After in seconds."""

        def __init__(self, message: str, retry_after_s: float, banned: bool) -> None:
            super().__init__(message)
            self.retry_after_s = retry_after_s
            self.banned = banned

    class Budgeted(base):  # type: ignore[misc, valid-type]
        arbops_gate: Gate

        async def fetch2(self, path: Any, api: Any = "public", method: str = "GET",
                         params: Any = None, config: Any = None) -> Any:
            params = {} if params is None else params
            config = {} if config is None else config
            api_name = api[0] if isinstance(api, list | tuple) else str(api)
            cost = self.calculate_rate_limiter_cost(api, method, path, params, config)
            gate = self.arbops_gate
            units = gate.budget.units(api_name, method, str(path), float(cost))
            await gate.budget.acquire(gate.role, units, _PATIENCE.get() or gate.max_wait_s)
            _SENT.set(gate.budget.now())
            token = _UNITS.set(units)
            try:
                return await super().fetch2(path, api, method, params, config)
            finally:
                _UNITS.reset(token)

        def on_rest_response(self, code: Any, reason: Any, url: Any, method: Any,
                             response_headers: Any, response_body: Any, request_headers: Any,
                             request_body: Any) -> Any:
            self.arbops_gate.budget.observe(int(code or 0), response_headers or {},
                                            str(response_body or ""), _UNITS.get())
            return super().on_rest_response(code, reason, url, method, response_headers,
                                             response_body, request_headers, request_body)

        def handle_errors(self, code: Any, reason: Any, url: Any, method: Any, headers: Any,
                          body: Any, response: Any, request_headers: Any,
                          request_body: Any) -> Any:
            if code in (429, 418):
                wait = retry_after_s(headers or {}, 1.0)
                raise VenueRateLimit(f"{self.id} {code} {method} {url}: {str(body)[:200]}",
                                     wait, banned=code == 418)
            return super().handle_errors(code, reason, url, method, headers, body, response,
                                         request_headers, request_body)

    if streams and hasattr(base, "handle_deltas"):
        # Imported here, with ccxt: this module is imported by paper runs too (its
        # `patience`), and ccxt costs ~70 MB of RSS that a paper run never uses.
        from core.venues.book_levels import store_levels

        def handle_deltas(self: Any, bookside: Any, deltas: list[Any]) -> None:
            # ccxt.pro's own loop reads each level through two safe_float calls and
            # two store calls; a diff-depth event of a busy book carries dozens of
            # levels, many times a second per symbol: the same rule, inline.
            store_levels(bookside, deltas)

        Budgeted.handle_deltas = handle_deltas
    if streams and hasattr(base, "handle_order"):
        def handle_order(self: Any, client: Any, message: Any) -> None:
            # ccxt.pro wakes a watch_orders caller only if it is waiting at that
            # moment: an update that lands while the last one is being handled (an
            # Upbit fill's `trade` then `done`, in one burst) would sit in its cache
            # until the venue says something else. Every update is handed over here.
            base.handle_order(self, client, message)
            sink = getattr(self, "arbops_order_sink", None)
            if sink is not None and self.orders:
                sink(dict(self.orders[-1]))  # a copy: ccxt updates its entry in place

        Budgeted.handle_order = handle_order
    if streams and whole_books:
        def handle_order_book(self: Any, client: Any, message: dict[str, Any]) -> None:
            # A whole book per message, best level first: kept as a plain book
            # (ccxt.pro re-stores and re-sorts every level of every message, about
            # 2 ms each; fifty books several times a second is a core's worth).
            symbol = self.safe_symbol(message.get("code"), None, "-")
            units = message.get("orderbook_units") or []
            book = {
                "symbol": symbol, "timestamp": message.get("timestamp"), "nonce": None,
                "bids": [[float(u["bid_price"]), float(u["bid_size"])] for u in units
                         if u.get("bid_price") is not None],
                "asks": [[float(u["ask_price"]), float(u["ask_size"])] for u in units
                         if u.get("ask_price") is not None],
            }
            self.orderbooks[symbol] = book
            client.resolve(book, "orderbook:" + symbol)

        Budgeted.handle_order_book = handle_order_book
    Budgeted.__name__ = f"Budgeted{base.__name__}"
    return Budgeted
