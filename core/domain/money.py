"""Money for people: the sign before the dollar ("-$6.64", "+$1,234.50"), cents."""
from __future__ import annotations

import math
from typing import Any


def usd(value: Any, signed: bool = True) -> str:
    """'+$1,234.50', '-$6.64' ('$6.64' unsigned; '$0.00' for zero); '-' when not a
    finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "-"
    if not math.isfinite(v):
        return "-"
    body = f"${abs(v):,.2f}"
    if body == "$0.00":
        return body
    if not signed:
        return body if v >= 0 else "-" + body
    return ("-" if v < 0 else "+") + body
