"""Reconciliation (runbook §5.2): the journal against the venues.

After every phase, on a schedule and on demand: open orders must be zero on
both venues, positions flat in the journal, and each asset's balance change
since the run started must equal what the journal's fills say (each fee in the
asset the venue charged it in), within a tolerance. A drift is reported (and
alerted by the caller), never hidden.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from core.domain.journal_kinds import EventKind
from core.domain.models import Venue
from core.errors import ExchangeError
from core.ports import ExchangePort, JournalStore
from core.venues.profiles import PROFILES

# A quote balance within this of the journal's is rounding, not drift (per venue profile).
QUOTE_TOLERANCE = {p.quote: Decimal(p.quote_tolerance) for p in PROFILES.values()}
BASE_TOLERANCE_REL = Decimal("1e-6")


def expected_changes(fills: list[dict[str, Any]]) -> dict[str, dict[str, Decimal]]:
    """Per venue and asset, what the journal's fills changed, each fee taken from
    the asset it was charged in (Binance: a buy's from the base, or BNB)."""
    out: dict[str, dict[str, Decimal]] = {}
    for f in fills:
        base, quote = f["symbol"].split("/")
        amount, cost, fee = Decimal(f["amount"]), Decimal(f["cost"]), Decimal(f["fee"])
        fee_asset = f.get("fee_currency") or quote
        venue = out.setdefault(f["venue"], {})
        sign = Decimal(1) if f["side"] == "buy" else Decimal(-1)
        venue[base] = venue.get(base, Decimal(0)) + sign * amount
        venue[quote] = venue.get(quote, Decimal(0)) - sign * cost
        venue[fee_asset] = venue.get(fee_asset, Decimal(0)) - fee
    return out


async def reconcile_run(store: JournalStore, venues: Mapping[Venue, ExchangePort],
                        run_id: str) -> dict[str, Any]:
    problems: list[str] = []
    open_orders: dict[str, int] = {}
    balances_now: dict[str, dict[str, float]] = {}
    for venue_id, ex in venues.items():
        try:
            open_orders[str(venue_id)] = len(await ex.fetch_open_orders())
            balances_now[str(venue_id)] = {a: b.total for a, b in (await ex.fetch_balance()).items()}
        except ExchangeError as exc:
            problems.append(f"{venue_id}: cannot read the venue: {exc}")
    for venue, n in open_orders.items():
        if n:
            problems.append(f"{venue}: {n} open order(s)")
    open_positions = await store.positions(run_id, ["entering", "open", "exiting"])
    if open_positions:
        problems.append(f"{len(open_positions)} position(s) not flat in the journal")
    start = next((e["payload"] for e in await store.events(run_id=run_id,
                                                           kind=EventKind.STARTING_BALANCES_RECORDED)), None)
    drift: list[dict[str, Any]] = []
    if start is None:
        problems.append("no start balances recorded for this run")
    else:
        expected = expected_changes(await store.fills(run_id))
        # Every asset either side knows of: a change without fills is drift too.
        for venue in sorted(set(start) | set(balances_now) | set(expected)):
            if venue not in balances_now or "error" in start.get(venue, {}):
                continue  # unreadable now or at the start: reported above, not guessed
            assets = set(start.get(venue, {})) | set(balances_now.get(venue, {})) | set(
                expected.get(venue, {}))
            for asset in sorted(assets):
                want = expected.get(venue, {}).get(asset, Decimal(0))
                before = Decimal(repr(float(start.get(venue, {}).get(asset, 0.0))))
                now = Decimal(repr(float(balances_now.get(venue, {}).get(asset, 0.0))))
                got = now - before
                tol = QUOTE_TOLERANCE.get(asset, max(abs(before) * BASE_TOLERANCE_REL,
                                                     Decimal("1e-8")))
                if abs(got - want) > tol:
                    drift.append({"venue": venue, "asset": asset, "journal": str(want),
                                  "venue_change": str(got), "difference": str(got - want)})
        if drift:
            problems.append(f"{len(drift)} balance drift(s) between journal and venues")
    return {"run_id": run_id, "ok": not problems, "problems": problems,
            "open_orders": open_orders, "open_positions": len(open_positions), "drift": drift}
