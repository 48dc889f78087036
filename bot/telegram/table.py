"""The Telegram view of the one command table (core.commands.COMMANDS).

Handler flags, the command menu and /help are all generated from it; nothing
here lists a command's role, risk or help text by hand.
"""
from __future__ import annotations

from typing import Any

from core.commands import BY_NAME, COMMANDS, Command, Role

ROLE_NAMES = {Role.VIEWER: "viewer", Role.OPERATOR: "operator", Role.ADMIN: "admin"}


def telegram_commands() -> tuple[Command, ...]:
    out = []
    for c in COMMANDS:
        if c.telegram:
            out.append(c)
    return tuple(out)


TELEGRAM: dict[str, Command] = {c.name: c for c in telegram_commands()}


def command(name: str) -> Command:
    return TELEGRAM.get(name) or BY_NAME[name]


def flags_for(name: str) -> dict[str, Any]:
    """aiogram handler flags: the table entry rides along to the middleware."""
    c = command(name)
    return {"table_entry": c, "adds_risk": c.adds_risk, "min_role": c.min_role}


def menu() -> list[tuple[str, str]]:
    """(command, description) for setMyCommands: 1-32 chars [a-z0-9_], 1-256 chars."""
    out = []
    for c in TELEGRAM.values():
        out.append((c.name[:32], c.help[:256]))
    return out


def help_text(role: Role) -> str:
    """/help: every Telegram command, what it needs, generated from the table."""
    from bot.telegram.format import h

    lines = [f"<b>arbops</b> · your role: {ROLE_NAMES[role]}"]
    for c in TELEGRAM.values():
        marks = []
        if c.adds_risk:
            marks.append("confirm")
        if c.min_role > Role.VIEWER:
            marks.append(ROLE_NAMES[c.min_role] + "+")
        if c.min_role > role:
            marks.append("not for you")
        tail = f" <i>[{h(', '.join(marks))}]</i>" if marks else ""
        lines.append(f"/{c.name} — {h(c.help)}{tail}")
    lines.append("/run &lt;phase&gt; [paper|live] [seconds] [topN] · /trades [n] · "
                 "/daily [days] · /report daily|weekly|run &lt;id&gt;")
    return "\n".join(lines)
