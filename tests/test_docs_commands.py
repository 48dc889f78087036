"""Every `arbops ...` command line and `/command` the operator docs show exists:
the CLI parser accepts the command and its flags, and the Telegram table (or the
bot's extra commands) has the slash command (issue #8)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bot.cli import build_parser
from core.commands import COMMANDS

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "runbook.md", ROOT / "docs" / "runbook.ko.md"]
TELEGRAM_EXTRA = {"start", "testalert"}  # served by the bot beside the table


def _code_spans(text: str) -> list[str]:
    spans = re.findall(r"`([^`\n]+)`", text)
    for block in re.findall(r"```(?:bash)?\n(.*?)```", text, re.S):
        spans.extend(block.replace("\\\n", " ").splitlines())
    return spans


def _arbops_lines() -> list[tuple[str, str]]:
    out = []
    for doc in DOCS:
        for span in _code_spans(doc.read_text()):
            m = re.search(r"\barbops ([a-z][^|#]*)", span)
            if m:
                out.append((doc.name, "arbops " + m.group(1).strip()))
    return out


def _subparsers() -> dict[str, object]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return dict(action.choices)  # type: ignore[attr-defined]


def test_docs_show_commands() -> None:
    assert len(_arbops_lines()) > 30
    assert len(set(re.findall(r"`/([a-z_]+)", (ROOT / "docs" / "runbook.md").read_text()))) > 10


@pytest.mark.parametrize(("doc", "line"), _arbops_lines())
def test_every_cli_line_in_the_docs_parses(doc: str, line: str) -> None:
    words = shlex.split(line.replace("...", "x").replace("<", "").replace(">", ""))[1:]
    words = [w for w in words if not w.startswith("$(")]
    subs = _subparsers()
    assert words[0] in subs, f"{doc}: `{line}`: no command {words[0]!r}"
    if words[0] == "pause" and len(words) > 1 and words[1] == "|":
        return
    sub = subs[words[0]]
    flags = {opt for a in sub._actions for opt in a.option_strings}  # type: ignore[attr-defined]
    for w in words[1:]:
        if w.startswith("--"):
            assert w.split("=")[0] in flags, f"{doc}: `{line}`: {words[0]} has no {w}"


def test_every_slash_command_in_the_docs_exists() -> None:
    known = {c.name for c in COMMANDS if c.telegram} | TELEGRAM_EXTRA
    for doc in DOCS:
        for name in re.findall(r"`/([a-z_]+)", doc.read_text()):
            assert name in known, f"{doc.name}: /{name} is not a Telegram command"
