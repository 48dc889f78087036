"""Command argument parsing: text in, a validated core Args model out, or UsageError.

Never raises anything else, whatever the text (tested with hypothesis).
"""
from __future__ import annotations

import math
import re
from typing import Any

from pydantic import ValidationError

from core.commands import Args, ReasonArgs, RunArgs
from core.errors import UsageError

RUN_USAGE = ("usage: /run <phase 1|2|3> [paper|live] [seconds] [topN] [continuous] "
             "[seed=N] [minutes=M] [cap=USD] [source=sim|replay|real; live: real]")
_KEYS = {
    "phase": "phase", "mode": "mode", "universe": "universe", "u": "universe",
    "seconds": "duration_seconds", "duration_seconds": "duration_seconds", "s": "duration_seconds",
    "minutes": "duration_minutes", "duration_minutes": "duration_minutes", "m": "duration_minutes",
    "seed": "seed", "cap": "max_notional_usd", "max_notional_usd": "max_notional_usd",
    "data_source": "data_source", "source": "data_source",
}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(s|m|min|h)?$", re.IGNORECASE | re.ASCII)
_MAX_ARGS_LEN = 500


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "arguments"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def _tokens(text: str | None) -> list[str]:
    if not text:
        return []
    if len(text) > _MAX_ARGS_LEN:
        raise UsageError("arguments too long")
    return text.split()


def parse_run_args(text: str | None) -> RunArgs:
    """`/run <phase> [paper|live] [duration_seconds]`, plus topN and key=value extras."""
    tokens = _tokens(text)
    if not tokens:
        raise UsageError(RUN_USAGE)
    fields: dict[str, Any] = {}

    def put(key: str, value: Any, token: str) -> None:
        if key in fields:
            raise UsageError(f"{token!r}: {key} given twice. {RUN_USAGE}")
        fields[key] = value

    for tok in tokens:
        low = tok.lower()
        if "=" in tok:
            key, _, value = tok.partition("=")
            name = _KEYS.get(key.lower())
            if name is None or not value:
                raise UsageError(f"unknown argument {tok!r}. {RUN_USAGE}")
            put(name, value, tok)
        elif low in ("paper", "live"):
            put("mode", low, tok)
        elif low == "continuous":  # phase 3, Day 4+: until stopped, gated hourly
            put("continuous", True, tok)
        elif low.startswith("top"):
            put("universe", low, tok)
        elif "phase" not in fields and low.isascii() and low.isdigit() and len(low) <= 2:
            put("phase", int(low), tok)
        elif m := _DURATION.match(low):
            unit = (m.group(2) or "s").lower()
            amount = float(m.group(1))
            if unit == "s":
                put("duration_seconds", amount, tok)
            else:
                put("duration_minutes", amount * (60 if unit == "h" else 1), tok)
        else:
            raise UsageError(f"unexpected {tok!r}. {RUN_USAGE}")
    if "phase" not in fields:
        raise UsageError(f"which phase? {RUN_USAGE}")
    try:
        args = RunArgs.model_validate(fields)
    except ValidationError as exc:
        raise UsageError(f"bad arguments: {_errors(exc)}") from None
    except (ValueError, TypeError) as exc:  # a validator's own error
        raise UsageError(f"bad arguments: {exc}") from None
    for name in ("duration_seconds", "duration_minutes", "max_notional_usd"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            raise UsageError(f"bad arguments: {name} must be finite")
    return args


def parse_reason(text: str | None, default: str) -> str:
    """Free text reason for one-step commands; never refuses (a kill must always go)."""
    limit = next((m.max_length for m in ReasonArgs.model_fields["reason"].metadata
                  if getattr(m, "max_length", None)), 200)
    reason = " ".join((text or "").split())[:limit]
    return reason or default


def parse_model_args(model: type[Args], text: str | None) -> Args:
    """Generic: bare tokens fill the model's fields in order; key=value by name."""
    tokens = _tokens(text)
    names = list(model.model_fields)
    fields: dict[str, Any] = {}
    bare = iter(names)
    for tok in tokens:
        if "=" in tok:
            key, _, value = tok.partition("=")
            if key not in model.model_fields:
                raise UsageError(f"unknown argument {tok!r}")
            fields[key] = value
            continue
        name = next((n for n in bare if n not in fields), None)
        if name is None:
            raise UsageError(f"unexpected {tok!r}")
        fields[name] = tok
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise UsageError(f"bad arguments: {_errors(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"bad arguments: {exc}") from None
