"""What is running: the package version, the source commit when known, Python."""
from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path

_SOURCE = Path(__file__).resolve().parent.parent


@functools.cache
def version_info() -> dict[str, str]:
    """{"version", "commit", "python"}; the commit is "unknown" outside a git checkout."""
    try:
        version = metadata.version("arbops")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        out = subprocess.run(["git", "-C", str(_SOURCE), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=2, check=False)
        commit = out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"version": version, "commit": commit, "python": platform.python_version()}


def version_line() -> str:
    v = version_info()
    return f"arbops {v['version']} (commit {v['commit']}, Python {v['python']})"
