"""TELEGRAM_ALLOWED_USERS = "id:role,..." -> {user id: Role}. Fail-closed parsing,
the same as `arbops config check` (core.config.check.parse_allowlist)."""
from __future__ import annotations

from loguru import logger

from core.commands import Role
from core.config.check import parse_allowlist

_ROLES = {"viewer": Role.VIEWER, "operator": Role.OPERATOR, "admin": Role.ADMIN}


def parse_allowed_users(text: str | None) -> dict[int, Role]:
    """Bad entries are skipped with an error in the log (never granted anything);
    an id listed twice keeps its lower role."""
    users, problems = parse_allowlist(text)
    for problem in problems:
        logger.error("TELEGRAM_ALLOWED_USERS: ignoring {} (`arbops config check` lists them)",
                     problem)
    return {uid: _ROLES[role] for uid, role in users.items()}
