"""The runbooks match the product: the gate lists are generated from the code (and the
code checks exactly those), the Korean runbook carries every section of the English
one, neither cites a file outside the repository, and the output paths they write to
are git-ignored."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from core.trading.phases import GATE_CHECKS, evaluate_gate, gate_checks_markdown

ROOT = Path(__file__).resolve().parent.parent
RUNBOOKS = (ROOT / "docs" / "runbook.md", ROOT / "docs" / "runbook.ko.md")


def _kpi(round_trips: int = 9) -> dict:
    return {"summary": {"round_trips_completed": round_trips, "win_rate": 0.6,
                        "total_pnl_usd": 1.0},
            "performance": {"loop_latency_ms": {"avg": 1.0}, "cpu_percent": {"avg": 10.0},
                            "memory_mb": {"max": 100.0}},
            "trading": {"first_entry_s": 5.0, "first_exit_s": 9.0},
            "guards": {"unhandled_errors": 0}}


def test_the_gate_table_names_exactly_what_evaluate_gate_checks() -> None:
    everything = {"telegram_test_alert": True, "metrics_served": True}
    p1 = [c["name"] for c in evaluate_gate(1, _kpi(), observed=everything).checks]
    assert p1 == [name for name, _ in GATE_CHECKS["phase 1"]]
    for phase in (2, 3):
        names = [c["name"] for c in evaluate_gate(phase, _kpi()).checks]
        assert names == [name for name, _ in GATE_CHECKS["phases 2 and 3"]]


@pytest.mark.parametrize("path", RUNBOOKS, ids=lambda p: p.name)
def test_each_runbook_carries_the_generated_gate_lists(path: Path) -> None:
    text = path.read_text()
    for group in GATE_CHECKS:
        block = re.search(rf"<!-- gate checks: {re.escape(group)} .*?-->\n(.*?)\n"
                          r"<!-- end gate checks -->", text, re.S)
        assert block is not None, f"{path.name}: no generated list for {group}"
        assert block.group(1) == gate_checks_markdown(group), (
            f"{path.name}: the {group} gate list is stale; paste gate_checks_markdown"
            f"({group!r})")


def _sections(path: Path) -> list[str]:
    """Section numbers in order ('0', '1', '1.1', ...), the headings' language aside."""
    return re.findall(r"^#{2,3} (\d+(?:\.\d+)?)", path.read_text(), re.M)


def test_the_korean_runbook_has_every_section_of_the_english_one() -> None:
    en, ko = (_sections(p) for p in RUNBOOKS)
    assert en and en == ko


def test_the_korean_runbook_carries_the_webhook_paragraph() -> None:
    ko = RUNBOOKS[1].read_text()
    for name in ("ARBOPS_TELEGRAM_WEBHOOK_URL", "ARBOPS_TELEGRAM_WEBHOOK_SECRET",
                 "ARBOPS_TELEGRAM_WEBHOOK_HOST"):
        assert name in ko


@pytest.mark.parametrize("path", [*RUNBOOKS, ROOT / "README.md"], ids=lambda p: p.name)
def test_no_reference_to_files_outside_the_repository(path: Path) -> None:
    text = path.read_text()
    assert "D98" not in text and "../shared" not in text and "/work/" not in text
    for link in re.findall(r"\]\(([^)#]+)", text):
        if not link.startswith(("http://", "https://")):
            assert (path.parent / link).resolve().is_relative_to(ROOT), link
            assert (path.parent / link).exists(), link


def test_output_paths_in_the_docs_are_git_ignored() -> None:
    docs = "\n".join(p.read_text() for p in [*RUNBOOKS, ROOT / "README.md"])
    paths = set(re.findall(r"--(?:kpi-output-path|output|png) ([^\s`]+)", docs))
    relative = sorted(p for p in paths if not p.startswith("/"))
    assert relative, "the docs name no output paths?"
    res = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "--no-index", *relative],
                         capture_output=True, text=True, check=False)
    assert sorted(res.stdout.split()) == relative, res.stdout + res.stderr
