"""Which environment files a process reads, and why: one rule for every command.

1. The mode (ARBITRAGE_ENV) comes from the process environment; if it is not set
   there, from `.env`; if not there either, from the one `.env.<mode>` file that
   names its own mode (runbook §1.3 writes ARBITRAGE_ENV=live into `.env.live`);
   otherwise it is paper.
2. The files read are `.env`, then `.env.<mode>`; a later file wins over an earlier
   one and the process environment wins over both.
3. Refused, naming the files: an `.env.<mode>` that sets a different ARBITRAGE_ENV,
   and two `.env.<mode>` files that each name their own mode with nothing choosing
   between them. A LIVE process never silently reads the paper file or the reverse.

Stdlib and python-dotenv only (already a dependency of the settings).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

MODES = ("paper", "live")
MODE_NAME = "ARBITRAGE_ENV"


@dataclass(frozen=True, slots=True)
class EnvFiles:
    mode: str
    source: str  # where the mode came from, said by `arbops config check`
    files: tuple[Path, ...]
    problems: tuple[str, ...] = field(default=())

    def describe(self) -> list[str]:
        """The lines `arbops config check` prints: the mode's source, the files in order."""
        lines = [f"ARBITRAGE_ENV={self.mode} (from {self.source})"]
        if self.files:
            lines += [f"  loaded {i}. {p}" for i, p in enumerate(self.files, 1)]
        else:
            lines.append("  no .env files loaded (process environment only)")
        return lines


def read_env_file(path: Path) -> dict[str, str]:
    """Names and values of one dotenv file (values may be empty; never None)."""
    return {k: v or "" for k, v in dotenv_values(path).items()}


def _declared(path: Path) -> str | None:
    if not path.is_file():
        return None
    value = read_env_file(path).get(MODE_NAME)
    return value.strip() if value is not None else None


def resolve_env_files(base: Path, environ: Mapping[str, str] | None = None) -> EnvFiles:
    env = os.environ if environ is None else environ
    dot_env = base / ".env"
    problems: list[str] = []
    from_process = (env.get(MODE_NAME) or "").strip()
    from_dot_env = _declared(dot_env)
    if from_process:
        mode, source = from_process, "the process environment"
    elif from_dot_env:
        mode, source = from_dot_env, str(dot_env)
    else:
        naming = [m for m in MODES if _declared(base / f".env.{m}") == m]
        if len(naming) == 1:
            mode, source = naming[0], str(base / f".env.{naming[0]}")
        else:
            mode, source = "paper", "the default"
            if len(naming) > 1:
                problems.append(
                    f"{MODE_NAME} is set in none of the process environment and {dot_env}, "
                    f"and both {', '.join(f'.env.{m}' for m in naming)} name their own mode: "
                    f"set {MODE_NAME}=live or =paper in the service's environment or in .env")
    files = [p for p in (dot_env, base / f".env.{mode}") if p.is_file()]
    specific = base / f".env.{mode}"
    declared = _declared(specific)
    if declared and declared != mode:
        problems.append(f"{specific} sets {MODE_NAME}={declared}, but it is read because "
                        f"{MODE_NAME}={mode} (from {source}): make them agree")
    return EnvFiles(mode, source, tuple(files), tuple(problems))
