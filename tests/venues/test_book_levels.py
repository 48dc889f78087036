"""store_levels applies diff-depth levels exactly as ccxt.pro's own store does.

Property test: any sequence of events (prices from a small grid so levels are hit
again, sizes including zero = remove, as strings as Binance sends them) leaves
both sides, and their key indexes, equal to ccxt's `store` path.
"""
from __future__ import annotations

from typing import Any

from ccxt.async_support.base.ws.order_book_side import Asks, Bids, CountedAsks
from hypothesis import given
from hypothesis import strategies as st

from core.venues.book_levels import store_levels

PRICES = st.sampled_from(["99.5", "99.9", "100.0", "100.1", "100.25", "101", "0.0001"])
SIZES = st.sampled_from(["0", "0.00000000", "1.5", "2", "0.001", "30"])
EVENTS = st.lists(st.lists(st.tuples(PRICES, SIZES).map(list), max_size=12), max_size=20)


def by_ccxt(side: Any, events: list[list[list[str]]]) -> Any:
    for levels in events:
        for price, size in levels:
            side.store(float(price), float(size))
    return side


@given(EVENTS)
def test_same_book_as_ccxt_on_both_sides(events: list[list[list[str]]]) -> None:
    for cls in (Asks, Bids):
        ours = cls()
        for levels in events:
            store_levels(ours, levels)
        theirs = by_ccxt(cls(), events)
        assert list(ours) == list(theirs)
        assert ours._index == theirs._index
        prices = [p for p, _ in ours]
        assert prices == sorted(prices, reverse=cls is Bids)
        assert all(size > 0 for _, size in ours)


def test_a_side_of_another_kind_goes_through_its_own_store_array() -> None:
    side = CountedAsks()
    store_levels(side, [["100", "2", 3], ["101", "1", 1]])
    assert list(side) == [[100.0, 2.0, 3], [101.0, 1.0, 1]]
