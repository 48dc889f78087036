"""Every requirement id the repository cites (R-S1, R-K6, ...) is defined in
docs/requirements.md, so a reader of the repo can resolve it; that file defines each
id once, as one non-empty sentence.

A citation is `R-` + upper-case letters + digits standing on its own: not glued to a
word, a `-` or a dotted name on the left (`X-MBX-ORDER-COUNT-10S`, `a.R-…` have none),
not continued by a letter, digit or `_` on the right, and not inside a URL; `R-2` and
`r-s1` are not citations. A range `R-S1..R-S4` cites every id in it.
"""
from __future__ import annotations

import re
import subprocess
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "docs" / "requirements.md"

CITATION = re.compile(r"(?<![A-Za-z0-9_\-])(?<![A-Za-z0-9_]\.)R-([A-Z]+)([0-9]+)(?![A-Za-z0-9_])")
RANGE_TAIL = re.compile(r"\.\.R-([A-Z]+)([0-9]+)")
URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://\S+|\bwww\.\S+", re.I)
ENTRY = re.compile(r"^- \*\*(R-[A-Z]+[0-9]+)\*\* (.*)$")
CODE_SPAN = re.compile(r"`[^`]*`")
SENTENCE_BREAK = re.compile(r"[.!?][\"')\]]*\s+\S")


def entries(text: str) -> list[tuple[int, str, str]]:
    """(line number, id, sentence) of each `- **R-…** sentence` line."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = ENTRY.match(line)
        if m:
            out.append((n, m.group(1), m.group(2).strip()))
    return out


def citations(text: str) -> list[tuple[int, str]]:
    """(line number, id) of each requirement id cited in text, URLs left out."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = URL.sub(" ", line)
        for m in CITATION.finditer(line):
            out.append((n, f"R-{m[1]}{m[2]}"))
            tail = RANGE_TAIL.match(line, m.end())
            if tail and tail[1] == m[1]:  # R-S1..R-S4: the ids between count too
                out.extend((n, f"R-{m[1]}{k}") for k in range(int(m[2]) + 1, int(tail[2])))
    return out


def unknown_citations(files: Iterable[tuple[str, str]], known: set[str]) -> list[str]:
    """`path:line: id` for every cited id that is not in known."""
    return [f"{path}:{n}: {rid}"
            for path, text in files
            for n, rid in citations(text)
            if rid not in known]


def sentence_problem(sentence: str) -> str | None:
    """Why sentence is not one non-empty sentence, or None. Code spans may hold dots."""
    plain = CODE_SPAN.sub("x", sentence).strip()
    if not plain.rstrip("."):
        return "empty"
    if not plain.endswith("."):
        return "does not end with a full stop"
    if SENTENCE_BREAK.search(plain[:-1]):
        return "more than one sentence"
    return None


def tracked_text_files() -> list[tuple[str, str]]:
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                                 capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout: {exc}")
    files = []
    for name in filter(None, listing.decode().split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        files.append((name, data.decode("utf-8", errors="replace")))
    return files


def _defined() -> set[str]:
    return {rid for _, rid, _ in entries(REQUIREMENTS.read_text(encoding="utf-8"))}


def test_every_cited_requirement_is_defined() -> None:
    files = tracked_text_files()
    assert any(name == "README.md" for name, _ in files)
    known = _defined()
    cited = [c for _, text in files for c in citations(text)]
    assert len(cited) > 50, "the scan found almost no citations: is the pattern broken?"
    unknown = unknown_citations(files, known)
    assert not unknown, ("ids cited but not defined in docs/requirements.md:\n"
                         + "\n".join(unknown))


def test_requirements_doc_has_unique_one_sentence_entries() -> None:
    text = REQUIREMENTS.read_text(encoding="utf-8")
    found = entries(text)
    assert len(found) >= 30
    dupes = [rid for rid, k in Counter(rid for _, rid, _ in found).items() if k > 1]
    assert not dupes, f"defined more than once: {dupes}"
    bad = [f"docs/requirements.md:{n}: {rid}: {why}"
           for n, rid, sentence in found
           if (why := sentence_problem(sentence))]
    assert not bad, "\n".join(bad)
    # every id mentioned in the doc is an entry (no id hiding in prose or a malformed line)
    assert {rid for _, rid in citations(text)} == {rid for _, rid, _ in found}


def test_the_checks_can_fail() -> None:
    bogus = "R-" + "Z9"  # built, so this file cites no unknown id itself
    sample = "\n".join([
        "# cites R-S1 and R-K6/R-S7.",
        f"x = 1  # ({bogus}; see R-M10)",
        "R-2, r-s1, X-MBX-ORDER-COUNT-10S, a.R-Q2, RR-Q3, x-R-Q6, R-Q1x are not ids; R-P1..R-P3 is",
        "https://example.com/R-Q4 and www.example.com/R-Q5 neither",
    ])
    assert citations(sample) == [(1, "R-S1"), (1, "R-K6"), (1, "R-S7"), (2, bogus), (2, "R-M10"),
                                 (3, "R-P1"), (3, "R-P2"), (3, "R-P3")]
    few = {"R-S1", "R-K6", "R-S7", "R-M10", "R-P1", "R-P3"}
    assert unknown_citations([("sample.py", sample)], few) == [
        f"sample.py:2: {bogus}", "sample.py:3: R-P2"]
    assert unknown_citations([("sample.py", sample)], _defined()) == [f"sample.py:2: {bogus}"]

    assert sentence_problem("Fine, with `a.b` and 5.0 inside.") is None
    assert sentence_problem("One. Two.") == "more than one sentence"
    assert sentence_problem("No stop") == "does not end with a full stop"
    assert sentence_problem(" . ") == "empty"
    doc = "- **R-S1** One.\n- **R-S1** Two.\n"
    assert [rid for _, rid, _ in entries(doc)] == ["R-S1", "R-S1"]
