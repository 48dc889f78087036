"""The one redactor: secrets and credential-shaped values masked, names and plain
words kept, free text bounded."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.redaction import clean_text, redact, redact_data, register_secrets

SECRET = "s3cr3tV4lue-ABCDEFGH"


@pytest.fixture(autouse=True)
def secrets():
    register_secrets([SECRET])
    yield
    register_secrets([])


@pytest.mark.parametrize(("text", "want"), [
    # names and plain words are never masked
    ("no TELEGRAM_BOT_TOKEN: headless", "no TELEGRAM_BOT_TOKEN: headless"),
    ("UPBIT_SECRET_KEY: Field required", "UPBIT_SECRET_KEY: Field required"),
    ("BINANCE_API_SECRET: set", "BINANCE_API_SECRET: set"),
    # configured values wherever they are
    (f"reason {SECRET} typed", "reason *** typed"),
    # credential-shaped values
    ("api_key=abc&signature=deadbeef", "api_key=***&signature=***"),
    ('{"secret": "xyz"}', '{"secret": "***"}'),
    ("password: hunter2hunter2", "password: ***"),
    ("token: 0123456789abcdefghijklmnopqrstuvwxyz", "token: ***"),
    ("https://api.telegram.org/bot123456:AAbbCCdd/getMe", "https://api.telegram.org/bot123456:***/getMe"),
    ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "Authorization: Bearer ***"),
    ("redis://:pw4242@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("postgresql://arb:pw@db/arb", "postgresql://arb:***@db/arb"),
])
def test_table(text, want):
    assert redact(text) == want


def test_data_keeps_json_valid():
    doc = {"reason": f"x {SECRET}", "n": 3, "nested": [{"token": "abc"}], "secret": 5}
    out = redact_data(doc)
    assert out == {"reason": "x ***", "n": 3, "nested": [{"token": "abc"}], "secret": 5}
    text = json.dumps({"token": "abc", "k": 1})
    assert json.loads(redact(text)) == {"token": "***", "k": 1}


def test_clean_text_is_one_bounded_masked_line():
    out = clean_text(f"line one\n{SECRET}\tand\x00more " + "yy " * 200, limit=50)
    assert SECRET not in out and "\n" not in out and len(out) == 50
    assert out.startswith("line one *** and more yy yy") and out.endswith("…")


@given(st.text(max_size=40), st.text(max_size=40))
def test_a_configured_secret_never_survives(before, after):
    assert SECRET not in redact(before + SECRET + after)


def test_typed_text_masks_pasted_keys_and_extra_values_but_keeps_ids_elsewhere():
    pasted = "Ab3dEf6hIj9lMn2pQr5tUv8xYz1bCd4fGh"  # 34 characters, not configured
    assert clean_text(f"kill: pasted {pasted} by mistake") == "kill: pasted *** by mistake"
    assert clean_text("my hunter2x here", extra=("hunter2x",)) == "my *** here"
    run_id = "20260101T000000Z-paper-p1-b4ba-0123456789"
    assert redact(f"run {run_id} finished") == f"run {run_id} finished"  # not typed text


@given(st.dictionaries(st.sampled_from(["token", "secret", "password", "reason", "url", "k"]),
                       st.one_of(st.text(max_size=30), st.integers(), st.none(),
                                 st.just("redis://:pw@h:1/0"), st.just(f"pasted {SECRET}")),
                       max_size=6))
def test_json_text_stays_json_after_redaction(doc):
    """The journal and KPI files redact serialised JSON in one pass: it must stay JSON
    with the same keys, and no configured secret may survive."""
    for indent in (None, 2):
        out = redact(json.dumps(doc, indent=indent))
        back = json.loads(out)
        assert set(back) == set(doc)
        assert SECRET not in out


@pytest.mark.parametrize("doc", [{"token": '"'}, {"reason": "token: \\"}, {"secret": 'a"b'},
                                 {"password": "\\\\"}])
def test_json_escapes_are_never_cut_in_half(doc: dict[str, str]) -> None:
    """Found by the property above: a value starting with a JSON escape was masked up
    to the backslash, leaving a stray quote and text that was no longer JSON."""
    for indent in (None, 2):
        assert set(json.loads(redact(json.dumps(doc, indent=indent)))) == set(doc)
