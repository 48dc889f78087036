"""A paper process never imports ccxt: ccxt costs about 70 MB of RSS (the demo's
max RSS went from 58 to 125 MB when a helper of the live adapters started
importing it at module level), and the runbook's memory gate is 200 MB.

A fresh interpreter imports what `arbops demo` and a paper `serve` import, up to
the recovery module the service loads at start, then says whether ccxt came in.
"""
from __future__ import annotations

import subprocess
import sys

PAPER_PATH = ("bot.cli", "bot.bootstrap", "bot.app", "core.service",
              "core.venues.recovery", "core.trading.phase_run", "core.venues.ccxt_client")


def test_the_modules_a_paper_run_loads_do_not_import_ccxt() -> None:
    code = ("import importlib, sys\n"
            f"for m in {PAPER_PATH!r}:\n"
            "    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m == 'ccxt' or m.startswith('ccxt.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout[:300]
