"""docs/configuration.md, .env.example and the Settings model list the same names."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from core.config.check import OTHER_NAMES
from core.config.docs import FIELD_DOCS
from core.config.settings import Settings, env_name

ROOT = Path(__file__).resolve().parent.parent


def _gen():
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_config_docs.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def test_every_field_is_documented() -> None:
    assert set(FIELD_DOCS) == set(Settings.model_fields)


def test_docs_and_env_example_are_current() -> None:
    gen = _gen()
    assert (ROOT / "docs" / "configuration.md").read_text() == gen.render_markdown()
    assert (ROOT / ".env.example").read_text() == gen.render_env_example()


def test_same_names_in_all_three() -> None:
    names = {env_name(f) for f in Settings.model_fields}
    env_names = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    doc_names = set(re.findall(r"^\| `([A-Z0-9_]+)`", (ROOT / "docs/configuration.md").read_text(),
                               re.MULTILINE))
    assert names == env_names - set(OTHER_NAMES) == doc_names
    assert set(OTHER_NAMES) <= env_names  # every name the code reads is in .env.example
