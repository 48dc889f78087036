"""/show_config: the effective settings and where each came from, secrets masked.

A secret (a SecretStr field) shows only "set" or "not set"; every other value goes
through the log redactor, so a secret pasted into the wrong variable is masked too.
The source is the environment, one of the env files `load_settings` reads (.env,
.env.<mode> in the working directory; the later one wins), or the default.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr

from core.config.settings import Settings
from core.monitoring.logging_setup import redact


def _names(field: str) -> list[str]:
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(a) for a in alias.choices]
    return [f"ARBOPS_{field.upper()}"]


def _file_values(files: list[Path]) -> dict[str, tuple[str, Path]]:
    from dotenv import dotenv_values

    out: dict[str, tuple[str, Path]] = {}
    for path in files:
        for key, value in dotenv_values(path).items():
            if value is not None:
                out[key.upper()] = (value, path)
    return out


def config_view(settings: Settings, env_dir: Path | None = None) -> dict[str, Any]:
    base = env_dir or Path.cwd()
    mode = os.environ.get("ARBITRAGE_ENV", "paper").strip() or "paper"
    files = [p for p in (base / ".env", base / f".env.{mode}") if p.is_file()]
    in_files = _file_values(files)
    environ = {k.upper() for k in os.environ}
    rows = []
    for field, info in Settings.model_fields.items():
        names = _names(field)
        value = getattr(settings, field)
        if isinstance(value, SecretStr) or (value is None and "secret" in str(
                info.annotation).lower()):
            shown = "set" if value is not None else "not set"
            secret = True
        else:
            shown = redact(str(value)) if value is not None else "-"
            secret = False
        env = next((n for n in names if n.upper() in environ), None)
        file_hit = next((in_files[n.upper()][1] for n in reversed(names)
                         if n.upper() in in_files), None)
        source = "environment" if env else str(file_hit) if file_hit else "default"
        rows.append({"name": names[0], "value": shown, "secret": secret, "source": source,
                     "default": source == "default"})
    return {"files": [str(p) for p in files], "settings": rows}
