"""Incident reports (R-K5, runbook §7.1): `incidents/YYYY-MM-DD_<run_id>.md`.

Written by the kill procedure with the metrics at the trigger, the trigger,
every action and its result, and the log lines of the minute before; the
cause and prevention sections are left for the operator.
"""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.files import write_private_text
from core.monitoring.log_extract import iter_records, log_files
from core.redaction import redact


def incident_path(data_dir: Path, run_id: str, when: datetime) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", run_id)[:80]
    base = data_dir / "incidents" / f"{when:%Y-%m-%d}_{safe}.md"
    n = 2
    path = base
    while path.exists():
        path = base.with_name(f"{base.stem}-{n}.md")
        n += 1
    return path


def recent_log_lines(log_dir: Path, until: datetime, seconds: float = 60.0) -> list[str]:
    """Log records of the minute before the trigger (empty when there are no logs)."""
    start = until - timedelta(seconds=seconds)
    out: list[str] = []
    for path in log_files(log_dir):
        for ts, _level, _text, lines in iter_records(path):
            if ts is not None and start <= ts <= until:
                out.extend(lines)
    return out[-200:]


def write_incident(
    data_dir: Path,
    *,
    run_id: str,
    title: str,
    trigger: str,
    metrics: dict[str, Any],
    actions: list[dict[str, Any]],
    when: datetime | None = None,
    log_lines: list[str] | None = None,
) -> Path:
    when = when or datetime.now(UTC)
    path = incident_path(data_dir, run_id, when)
    path.parent.mkdir(parents=True, exist_ok=True)
    if log_lines is None:
        log_lines = recent_log_lines(data_dir / "logs", when)
    lines = [
        f"# Incident: {title}",
        "",
        f"- Time (UTC): {when.isoformat().replace('+00:00', 'Z')}",
        f"- Run: {run_id}",
        f"- Trigger: {trigger}",
        "",
        "## Symptom (metrics at the trigger)",
        "",
        "```json",
        json.dumps(metrics, indent=2, default=str),
        "```",
        "",
        "## Actions and results",
        "",
    ]
    if actions:
        lines += ["| time (UTC) | step | result | detail |", "|---|---|---|---|"]
        for a in actions:
            detail = str(a.get("detail", "")).replace("|", "/").replace("\n", " ")
            lines.append(f"| {a.get('at', '')} | {a['step']} | {'ok' if a['ok'] else 'FAILED'} "
                         f"| {detail} |")
    else:
        lines.append("(none recorded)")
    lines += ["", "## Log lines of the minute before", "", "```"]
    lines += log_lines or ["(no log lines)"]
    lines += ["```", "", "## Cause", "", "", "## Prevention", "", ""]
    write_private_text(path, redact("\n".join(lines)))
    return path


def open_by_hand(data_dir: Path, title: str, actor: str, status: dict[str, Any]) -> Path:
    """Runbook §7.1: a blank report opened by an operator (CLI or Telegram), with the
    status at that moment and empty Cause and Prevention sections."""
    return write_incident(data_dir, run_id="manual", title=title,
                          trigger=f"opened by hand ({actor})", metrics=status,
                          actions=[{"step": "opened", "ok": True, "detail": actor}])
