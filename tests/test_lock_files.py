"""The lock files (requirements/*.txt, written by `make lock`) agree with
pyproject.toml: every requirement there, the test extra's too, is pinned at a
version its range allows, and the runtime pins are the ones the tests ran with.
A pyproject.toml edited without `make lock` fails here, not on an operator's box."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", re.M)


def _pins(name: str) -> dict[str, str]:
    text = (ROOT / "requirements" / name).read_text()
    return {canonicalize_name(n): v for n, v in PIN.findall(text)}


def _unmet(requirements: list[str], pins: dict[str, str]) -> list[str]:
    out = []
    for line in requirements:
        req = Requirement(line)
        version = pins.get(canonicalize_name(req.name))
        if version is None or not req.specifier.contains(version, prereleases=True):
            out.append(f"{line} (locked: {version})")
    return out


def test_every_requirement_is_locked_within_its_range() -> None:
    project = PYPROJECT["project"]
    build = PYPROJECT["build-system"]["requires"]
    base, test = _pins("base.txt"), _pins("test.txt")
    assert _unmet([*project["dependencies"], *build, "pip"], base) == [], "run `make lock`"
    runtime = [*project["dependencies"], *project["optional-dependencies"]["test"], *build]
    assert _unmet(runtime, test) == [], "run `make lock`"


def test_the_runtime_lock_is_what_the_tests_ran_with() -> None:
    base, test = _pins("base.txt"), _pins("test.txt")
    assert {n: (v, test.get(n)) for n, v in base.items() if test.get(n) != v} == {}


def test_every_pin_has_a_hash() -> None:
    for name in ("base.txt", "test.txt"):
        text = (ROOT / "requirements" / name).read_text()
        for entry in re.split(r"\n(?=\S)", text):  # a pin and its indented lines
            if PIN.match(entry):
                assert "--hash=sha256:" in entry, f"{name}: {entry.splitlines()[0]}"
