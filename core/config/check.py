"""What `arbops config check` finds that the settings' types cannot: entries the
service would ignore (a bad TELEGRAM_ALLOWED_USERS entry, a misspelled setting name)
or refuse at start (webhook mode without its secret, contradicting env files).

The Telegram allowlist is parsed here, once: the bot and the check read the same
entries the same way, so "settings OK" means the bot will answer those users.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import AliasChoices

from core.config.env_files import EnvFiles, read_env_file
from core.config.settings import RUNBOOK_NAMES, Settings

ROLE_NAMES = ("viewer", "operator", "admin")
# Accounts Telegram itself posts as: a group's anonymous admins, channel posts, the
# service account. An allowlist entry for one would let anyone behind it command.
KNOWN_BOT_IDS = {1087968824: "GroupAnonymousBot", 136817688: "Channel_Bot",
                 777000: "Telegram's service account"}
# Names the process reads outside the settings (debugging and test hooks).
# .env.example lists them after the settings (scripts/gen_config_docs.py).
OTHER_NAMES = {
    "ARBOPS_DEBUG": "not a setting: any value makes a CLI error print its traceback",
    "ARBOPS_CHART_TEST_HANG": ("not a setting, tests only: the chart worker sleeps instead "
                               "of drawing, so the report's chart timeout can be tested"),
}
_ID = re.compile(r"[1-9][0-9]{0,19}")  # ASCII digits only: no sign, "_", or other scripts


def parse_allowlist(text: str | None) -> tuple[dict[int, str], list[str]]:
    """({user id: role name}, problems). Entries with a problem grant nothing; an id
    listed twice keeps its lower role."""
    users: dict[int, str] = {}
    problems: list[str] = []
    for raw in (text or "").replace(";", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        uid_text, sep, role_text = (s.strip() for s in entry.partition(":"))
        role = role_text.lower()
        shown = entry[:40]
        if not _ID.fullmatch(uid_text):
            problems.append(f"{shown!r}: the user id must be a positive number in ASCII digits")
        elif int(uid_text) in KNOWN_BOT_IDS:
            problems.append(f"{shown!r}: {uid_text} is {KNOWN_BOT_IDS[int(uid_text)]}, not a "
                            "person; anyone posting through it would be allowed")
        elif not sep or role not in ROLE_NAMES:
            near = difflib.get_close_matches(role, ROLE_NAMES, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near and sep else ""
            problems.append(f"{shown!r}: the role must be viewer, operator or admin{hint}")
        else:
            uid = int(uid_text)
            prior = users.get(uid)
            users[uid] = role if prior is None else min(prior, role, key=ROLE_NAMES.index)
    return users, problems


_CHAT = re.compile(r"-?[1-9][0-9]{0,19}")


def parse_chat_list(text: str | None) -> tuple[set[int], list[str]]:
    """ARBOPS_TELEGRAM_ALLOWED_CHATS = "id,...": (chat ids, problems). An entry with a
    problem allows nothing."""
    chats: set[int] = set()
    problems: list[str] = []
    for raw in (text or "").replace(";", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        if _CHAT.fullmatch(entry):
            chats.add(int(entry))
        else:
            problems.append(f"{entry[:40]!r}: a chat id is a number in ASCII digits "
                            "(a group's is negative)")
    return chats, problems


def bot_token_problem(token: str) -> str | None:
    """Why Telegram would not take this token (the bot then stays off), or None.
    Never quotes the token."""
    left, sep, right = token.partition(":")
    if any(c.isspace() for c in token) or not sep or not right or not (
            left.isascii() and left.isdigit()):
        return ("TELEGRAM_BOT_TOKEN is malformed (BotFather's form is <bot id>:<secret>, no "
                "spaces): the service would start with the Telegram surface off")
    return None


def known_names() -> set[str]:
    """Every environment name a setting is read from (upper case)."""
    names = set(RUNBOOK_NAMES) | set(OTHER_NAMES)
    for fname, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(c).upper() for c in alias.choices}
        else:
            names.add(f"ARBOPS_{fname.upper()}")
    return names


def unknown_names(names: Iterable[str], *, only_prefixed: bool) -> list[str]:
    """A line per name no setting reads, with the closest known name. With
    `only_prefixed` (the process environment, shared with everything else) only
    ARBOPS_* names count; in a .env file every name does."""
    known = known_names()
    out = []
    for name in sorted({n.upper() for n in names}):
        if name in known:
            continue
        near = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
        if not name.startswith("ARBOPS_") and (only_prefixed or not near):
            continue  # not ours and not like ours: some other program's variable
        hint = f" (did you mean {near[0]}?)" if near else ""
        out.append(f"{name} is not a setting and is ignored{hint}")
    return out


@dataclass
class CheckReport:
    loaded: list[str]
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_settings(settings: Settings, found: EnvFiles,
                   environ: Mapping[str, str]) -> CheckReport:
    report = CheckReport(loaded=found.describe())
    report.errors += found.problems
    _, problems = parse_allowlist(settings.telegram_allowed_users)
    report.errors += [f"TELEGRAM_ALLOWED_USERS: {p}; the bot would ignore it" for p in problems]
    _, problems = parse_chat_list(settings.telegram_allowed_chats)
    report.errors += [f"ARBOPS_TELEGRAM_ALLOWED_CHATS: {p}; the bot would not answer there"
                      for p in problems]
    report.errors += settings.telegram_webhook_problems()
    if settings.telegram_bot_token is not None:
        problem = bot_token_problem(settings.telegram_bot_token.get_secret_value())
        report.errors += [problem] if problem else []
        if settings.telegram_chat_id is None:
            report.notes.append("TELEGRAM_CHAT_ID is not set: alerts go to the log only")
    report.errors += unknown_names(environ, only_prefixed=True)
    for path in found.files:
        report.errors += [f"{path.name}: {line}" for line in
                          unknown_names(read_env_file(Path(path)), only_prefixed=False)]
    if settings.postgres_dsn is not None:
        report.notes.append("POSTGRES_DSN is set but not used: arbops keeps its journal in "
                            "SQLite")
    return report
