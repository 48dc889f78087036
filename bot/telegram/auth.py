"""TELEGRAM_ALLOWED_USERS = "id:role,..." -> {user id: Role}. Fail-closed parsing."""
from __future__ import annotations

from loguru import logger

from core.commands import Role

_ROLES = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}


def parse_allowed_users(text: str | None) -> dict[int, Role]:
    """Bad entries are skipped with an error in the log (never granted anything);
    an id listed twice keeps its lower role."""
    users: dict[int, Role] = {}
    for raw in (text or "").replace(";", ",").split(","):
        entry = raw.strip()
        if not entry:
            continue
        uid_text, sep, role_text = entry.partition(":")
        role = _ROLES.get(role_text.strip().lower()) if sep else None
        try:
            uid = int(uid_text.strip())
        except ValueError:
            uid = 0
        if uid <= 0 or role is None:
            logger.error("TELEGRAM_ALLOWED_USERS: ignoring bad entry {!r} (want id:viewer|"
                         "operator|admin)", entry[:40])
            continue
        users[uid] = min(users.get(uid, role), role)
    return users
