"""Layer rules (docs/architecture.md, "Layers"): imports point downwards only.

- `guards` imports nothing from `core` or `bot` (and, being pure decisions, no asyncio
  and no I/O libraries);
- `core` never imports `bot`, aiogram or a CLI library (typer, click);
- `bot` never imports ccxt, aiosqlite or redis;
- inside `core`, packages import only packages below them (docs/architecture.md):
  domain < kernel < venues / journal / monitoring < trading < safety < service,
  where the kernel and the service are the modules at core/'s top level and the three
  packages of one level do not import each other;
- `bot` imports no private name (`_x`) from `core`;
- `arbops --help`, `arbops status` and `arbops kill` do not import aiogram or ccxt.

Every import statement counts, including ones inside functions (lazy imports) and
under `if TYPE_CHECKING:`.
"""
from __future__ import annotations

import ast
import json
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers.procs import arbops_env, run_python, short_data_dir

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN: dict[str, set[str]] = {
    "guards": {"core", "bot", "asyncio", "aiosqlite", "aiohttp", "ccxt", "redis", "aiogram",
               "sqlite3", "socket"},
    "core": {"bot", "aiogram", "typer", "click"},
    "bot": {"ccxt", "aiosqlite", "redis"},
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    pkg = _module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            # `from . import x` / `from core import bot_thing`: the names may be modules too
            out.extend((node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*")
    return out


def _files(layer: str) -> list[Path]:
    return sorted(p for p in (ROOT / layer).rglob("*.py") if ".venv" not in p.parts)


def _violations(layer: str) -> list[str]:
    bad = []
    for path in _files(layer):
        for line, mod in _imports(path):
            top = mod.split(".")[0]
            if top in FORBIDDEN[layer]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    return sorted(set(bad))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    assert _files(layer), f"no python files under {layer}/"
    assert _violations(layer) == []


def test_the_walker_sees_lazy_and_relative_imports():
    """The checker itself: a lazy import inside a function and a relative import count."""
    pkg = ROOT / "core"
    src = textwrap.dedent(
        """
        from __future__ import annotations
        from . import settings
        def f():
            import aiogram
            from bot.cli import main
        """
    )
    fake = pkg / "venues" / "_layer_probe_does_not_exist.py"
    mods = [m for _, m in _imports(fake, src)]
    assert "core.venues.settings" in mods
    assert "aiogram" in mods
    assert "bot.cli" in mods


def test_the_bot_api_stand_in_needs_only_aiohttp():
    """The Telegram Bot API stand-in serves the tests, `arbops drill` and the benchmark:
    it must not need aiogram (the bot under test brings its own) nor any of core but
    its HTTP listener."""
    path = ROOT / "bot" / "drill" / "emulator" / "telegram_api.py"
    allowed = set(sys.stdlib_module_names) | {"aiohttp"}
    bad = [f"line {line}: {mod}" for line, mod in _imports(path)
           if mod.split(".")[0] not in allowed and mod.split(".")[:2] != ["core", "http_listener"]]
    assert bad == []


# core's top-level modules: the kernel (depends on domain only) and the service level
# (the application API and the table and channel that reach it).
# The settings package (core/config/) is part of the kernel.
KERNEL = {"clock", "config", "crash_points", "errors", "files", "http_listener", "ports",
          "redaction", "version"}
SERVICE = {"service", "commands", "control_channel"}
PACKAGE_LEVEL = {"domain": 0, "venues": 2, "journal": 2, "monitoring": 2, "trading": 3,
                 "safety": 4}


def _core_unit(mod: str) -> tuple[int, str] | None:
    """(level, unit) of a core module: the unit is its package, or kernel/service."""
    parts = mod.split(".")
    if parts[0] != "core" or len(parts) < 2:
        return None
    name = parts[1]
    if name in PACKAGE_LEVEL:
        return PACKAGE_LEVEL[name], name
    if name in KERNEL:
        return 1, "kernel"
    if name in SERVICE:
        return 5, "service"
    raise AssertionError(f"{mod}: core/{name} belongs to no layer; add it to the layer map")


def _order_violations(imports=_imports) -> list[str]:
    bad = []
    for path in _files("core"):
        me = _core_unit(_module_name(path))
        if me is None:
            continue
        for line, mod in imports(path):
            other = _core_unit(mod) if mod.startswith("core.") else None
            if other is None or other[1] == me[1]:
                continue
            if other[0] >= me[0]:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({me[1]}) imports {mod} "
                           f"({other[1]})")
    return sorted(set(bad))


def test_core_packages_import_downwards_only():
    assert _order_violations() == []


def test_every_core_module_has_a_layer():
    for path in _files("core"):
        _core_unit(_module_name(path))  # raises for an unplaced module


def test_core_top_level_stays_small():
    """The kernel and the service level only; everything else lives in a package."""
    top = {p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__"}
    assert top <= KERNEL | SERVICE, top - (KERNEL | SERVICE)
    packages = {p.name for p in (ROOT / "core").iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(PACKAGE_LEVEL) | KERNEL, packages - (set(PACKAGE_LEVEL) | KERNEL)


def test_the_order_checker_sees_an_upward_import():
    """The checker itself: trading importing safety, and venues importing journal, fail."""

    def with_upward(path: Path) -> list[tuple[int, str]]:
        extra = {"engine.py": [(1, "core.safety.ladder")],
                 "reconcile.py": [(1, "core.journal.sqlite_store")]}.get(path.name, [])
        return _imports(path) + extra

    found = _order_violations(with_upward)
    assert any("core/trading/engine.py" in v and "core.safety.ladder" in v for v in found)
    assert any("core/venues/reconcile.py" in v and "core.journal" in v for v in found)


def test_bot_uses_no_private_core_names():
    bad = []
    for path in _files("bot"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("core"):
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} {node.module}.{a.name}"
                        for a in node.names if a.name.startswith("_")]
    assert bad == []


PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    import bot.cli
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = bot.cli.main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        code = exc.code
    heavy = sorted(m for m in ("aiogram", "ccxt") if m in sys.modules)
    print(json.dumps({"code": code, "heavy": heavy, "stdout": out.getvalue()[-400:],
                      "stderr": err.getvalue()[-400:]}))
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "argv",
    [["--help"], ["status", "--help"], ["status", "--json"], ["status"],
     ["kill", "--reason", "layer-test"]],
    ids=["help", "status-help", "status-json", "status", "kill"],
)
def test_light_commands_do_not_import_aiogram_or_ccxt(argv):
    with short_data_dir("aolay") as d:
        code = PROBE.replace("sys.argv[1]", repr(json.dumps(argv)))
        res = run_python(code, arbops_env(d), d, timeout=50)
        assert res.returncode == 0, res.stdout + res.stderr
        report = json.loads(res.stdout.strip().splitlines()[-1])
        # kill in a data dir where nothing ever ran says so with exit 1 (it halts no engine)
        assert report["code"] == (1 if argv[0] == "kill" else 0), report
        assert report["heavy"] == [], f"`arbops {' '.join(argv)}` imported {report['heavy']}"
