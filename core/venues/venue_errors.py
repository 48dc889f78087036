"""What a ccxt exception means for the engine, from the venue's profile.

The question that matters on a send is: did the venue refuse the order (never
executed: a rejection, never retried) or may it have executed (UNKNOWN,
resolved by client id)? Answers that name a problem on our side - a clock out
of the venue's window, a key problem, a closed market - are refusals: the
venue checks them before it looks at the order. Everything that may have
reached the matching engine (a timeout, a 5xx, an unknown error) stays UNKNOWN.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.errors import ExchangeError, OrderNotFound, OrderRejected, RateLimited, VenueUnavailable
from core.venues.profiles import VenueProfile


class Problem(StrEnum):
    NONE = ""
    RATE_LIMIT = "rate_limit"
    TIME_SYNC = "time_sync"  # re-sync the clock and alert
    MARKET_INACTIVE = "market_inactive"  # mark the market inactive
    AUTH = "auth"  # the key: alert, name the problem


@dataclass(frozen=True, slots=True)
class Classified:
    error: ExchangeError
    problem: Problem = Problem.NONE
    detail: str = ""  # the key problem or the marker, for the alert


def _marker(text: str, markers: tuple[str, ...] | list[str]) -> str | None:
    return next((m for m in markers if m in text), None)


def classify(profile: VenueProfile, exc: BaseException, sending: bool) -> Classified:
    import ccxt

    text = f"{profile.venue}: {type(exc).__name__}: {exc}"
    body = str(exc)
    refusal: type[ExchangeError] = OrderRejected if sending else ExchangeError
    if isinstance(exc, RateLimited):  # refused by our own budget: nothing was sent
        return Classified(exc, Problem.RATE_LIMIT)
    if hasattr(exc, "banned"):  # a 429/418 by status (core.venues.ccxt_client)
        return Classified(RateLimited(text, float(getattr(exc, "retry_after_s", 1.0))),
                          Problem.RATE_LIMIT)
    if isinstance(exc, ccxt.OrderNotFound):
        return Classified(OrderNotFound(text))
    marker = _marker(body, profile.time_sync_markers)
    if marker is not None or (profile.time_sync_markers and isinstance(exc, ccxt.InvalidNonce)):
        return Classified(refusal(f"{text} (our clock is outside the venue's window: "
                                  "re-syncing)"), Problem.TIME_SYNC, marker or "InvalidNonce")
    marker = _marker(body, profile.inactive_markers)
    if marker is not None or isinstance(exc, ccxt.MarketClosed):
        return Classified(refusal(f"{text} (market closed: marked inactive)"),
                          Problem.MARKET_INACTIVE, marker or "MarketClosed")
    marker = _marker(body, list(profile.auth_problems))
    if marker is not None:
        problem = profile.auth_problems[marker]
        return Classified(refusal(f"{text} (API key problem: {problem})"), Problem.AUTH,
                          problem)
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return Classified(RateLimited(text, float(getattr(exc, "retry_after_s", 1.0))),
                          Problem.RATE_LIMIT)
    if isinstance(exc, ccxt.AuthenticationError):
        return Classified(refusal(f"{text} (API key problem)"), Problem.AUTH,
                          "authentication failed")
    if isinstance(exc, ccxt.NetworkError):
        return Classified(VenueUnavailable(text))
    if isinstance(exc, (ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadRequest,
                        ccxt.BadSymbol)):
        return Classified(refusal(text))
    if isinstance(exc, ccxt.ExchangeError) and _marker(body, profile.rejection_markers):
        return Classified(refusal(text))
    # Anything else on a send (a 5xx with a body, a parse error) may have
    # executed: the outcome is unknown and is resolved by client id.
    return Classified(VenueUnavailable(text) if sending else ExchangeError(text))
