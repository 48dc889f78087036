"""One redaction for every place arbops writes text: logs, journal rows, KPI and
state files, incident reports, notifications, command replies.

Masked: (a) every registered secret value (the settings' secrets, registered when
settings are loaded), (b) anything shaped like a credential: a Telegram bot token,
a bearer token or JWT, a password in a URL (DSN), and the value of a credential-named
key written as ``key=value`` or ``"key": "value"``. A setting's *name* is never
masked, and neither is a plain word after ``NAME:`` ("no TELEGRAM_BOT_TOKEN:
headless" stays readable): only values that look like credentials are.

Free text an operator types (a kill reason, an incident title) goes through
:func:`clean_text`: masked, control characters flattened, cut to a length.

Stdlib only: the CLI's fast paths import it.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASK", "MIN_SECRET_LEN", "clean_text", "redact", "redact_data",
           "register_secrets", "registered_secrets"]

MASK = "***"
MIN_SECRET_LEN = 4  # shorter "secrets" would shred every line
TEXT_LIMIT = 200

_KEY = r"[\w-]*(?:api[_-]?key|secret|token|passw(?:or)?d|signature|access[_-]?key)[\w-]*"
_KEY_WORDS = ("key", "secret", "token", "passw", "signature")
# (pattern, replacement, a lower-case substring the text must hold for the pattern
# to apply): most text holds none, and a substring test costs far less than a search.
_GENERIC: list[tuple[re.Pattern[str], str, tuple[str, ...]]] = [
    # Telegram bot URL / bare bot token: keep the bot id, mask the secret part.
    (re.compile(r"(\bbot\d+:)[A-Za-z0-9_-]+"), r"\1" + MASK, ("bot",)),
    (re.compile(r"\b(\d{6,12}:)[A-Za-z0-9_-]{30,}"), r"\1" + MASK, (":",)),
    # Authorization: Bearer <jwt> (Upbit), and bare JWTs.
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + MASK, ("bearer",)),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), MASK, ("eyj",)),
    # scheme://user:password@host (Redis, Postgres DSNs): the password.
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(@)"), r"\1" + MASK + r"\2",
     ("://",)),
    # key=value and "key": "value" (JSON, query strings): always a value. A value
    # stops at a backslash, so a JSON escape (\" inside a string) is never cut in half.
    (re.compile(rf"(?i)(\b{_KEY})(\s*=\s*|[\"']\s*:\s*[\"'])([^\s\"'&,;}}\]\\]+)"), r"\1\2" + MASK,
     _KEY_WORDS),
]
# `key: value` in prose: masked only when the value looks like a credential (long, or
# mixing letters and digits), so "TOKEN: headless" or "KEY: Field required" stay.
_PROSE = re.compile(rf"(?i)(\b{_KEY}\s*:\s+)([^\s\"'&,;}}\]\\]+)")


def _credential_like(value: str) -> bool:
    if value == MASK or value.endswith(MASK):
        return False
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return len(value) >= 24 or (len(value) >= 8 and has_digit and has_alpha)


_secrets_re: re.Pattern[str] | None = None
_secrets: tuple[str, ...] = ()


def register_secrets(secrets: Iterable[str | None]) -> None:
    """Replace the set of literal secret values that :func:`redact` masks."""
    global _secrets_re, _secrets
    vals = sorted(
        {s for s in secrets if isinstance(s, str) and len(s.strip()) >= MIN_SECRET_LEN},
        key=len,
        reverse=True,
    )
    _secrets = tuple(vals)
    _secrets_re = re.compile("|".join(re.escape(v) for v in vals)) if vals else None


def registered_secrets() -> tuple[str, ...]:
    return _secrets


def redact(text: str) -> str:
    """``text`` with registered secrets and credential-shaped values masked."""
    if not text:
        return text
    if _secrets_re is not None:
        text = _secrets_re.sub(MASK, text)
    lower = text.lower()
    for pat, repl, needles in _GENERIC:
        if any(n in lower for n in needles):
            text = pat.sub(repl, text)
    if not any(n in lower for n in _KEY_WORDS):
        return text
    return _PROSE.sub(lambda m: m.group(1) + (MASK if _credential_like(m.group(2))
                                              else m.group(2)), text)


def redact_data(value: Any) -> Any:
    """A JSON-like value with every string in it (keys included) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(k) if isinstance(k, str) else k: redact_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(v) for v in value]
    return value


# In text a person typed, a long unbroken run of token characters is a pasted key far
# more often than a word; ids in the journal are not typed, so only free text gets this.
_PASTED = re.compile(r"[A-Za-z0-9_\-:+/=]{32,}")


def clean_text(text: str, limit: int = TEXT_LIMIT, extra: Iterable[str] = ()) -> str:
    """Free text to store: redacted (also `extra` values and anything that looks
    pasted), one line, at most ``limit`` characters."""
    printable = "".join(c if c.isprintable() else " " for c in str(text))
    for value in extra:
        if value:
            printable = printable.replace(value, MASK)
    flat = " ".join(_PASTED.sub(MASK, redact(printable)).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
