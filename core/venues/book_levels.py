"""Applying a diff-depth event's levels to a ccxt.pro order-book side, cheaply.

A Binance diff-depth event of a busy book carries dozens of levels, many times a
second per symbol, and the stream parses them on the event loop, between ticks.
ccxt.pro stores each level through two method calls and a fresh list
(`store` -> `storeArray`); in a profile of a live top50 phase that was the
largest CPU cost of the process. This applies the same rule inline: a level with
a size replaces or inserts its price, a size of zero removes it, the side kept
sorted (bids descending, asks ascending) by the side's parallel key index.

Only ccxt's plain sides (`Asks`, `Bids`) are done inline; any other side class
(counted, indexed) goes through its own `storeArray`.
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from typing import Any

from ccxt.async_support.base.ws.order_book_side import OrderBookSide

_PLAIN_STORE = OrderBookSide.storeArray


def store_levels(side: Any, levels: Sequence[Sequence[Any]]) -> None:
    """Apply [price, size] levels (strings or numbers) to `side`, in order."""
    if getattr(type(side), "storeArray", None) is not _PLAIN_STORE:
        for level in levels:
            side.storeArray([float(level[0]), float(level[1]), *level[2:]])
        return
    keys: list[float] = side._index
    descending = bool(side.side)
    insert = list.insert
    for level in levels:
        price = float(level[0])
        size = float(level[1])
        key = -price if descending else price
        i = bisect_left(keys, key)
        found = i < len(keys) and keys[i] == key
        if size:
            if found:
                side[i][1] = size
            else:
                keys.insert(i, key)
                insert(side, i, [price, size])
        elif found:
            del keys[i]
            del side[i]
