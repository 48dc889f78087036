"""Decimal strings for the wire: exact, never in exponent notation."""

from __future__ import annotations

import math
from decimal import Decimal


def dec_str(x: float | None, places: int | None = None) -> str:
    """Plain decimal string of x ('0.00000001', '95000'); `places` pads/rounds to that many."""
    if x is None:
        return "0"
    d = Decimal(repr(float(x))) if not isinstance(x, int) else Decimal(x)
    if places is not None:
        d = d.quantize(Decimal(1).scaleb(-places))
        return format(d, "f")
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def parse_num(text: str | None) -> float | None:
    """A positive finite number from a request parameter, else None."""
    if text is None or text == "" or text == "None":
        return None
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v):
        return None
    return v
