from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from loguru import logger

from core.monitoring.log_extract import extract_errors, log_files, parse_since
from core.monitoring.logging_setup import redact, setup_logging, teardown_logging

API_SECRET = "s3cr3t-UPBIT-abcdef0123456789"
BINANCE_KEY = "BNkey9876543210ZYXWVU"
BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
def logs(tmp_path):
    setup_logging(tmp_path, "DEBUG", [API_SECRET, BINANCE_KEY, BOT_TOKEN, "", "ab"], console=False)
    yield tmp_path / "logs"
    teardown_logging()


def read_all(log_dir: Path) -> str:
    return "".join(p.read_text() for p in log_files(log_dir))


def test_secrets_never_reach_the_file(logs):
    logger.info("connecting with key {} and secret {}", BINANCE_KEY, API_SECRET)
    logger.info(f"https://api.telegram.org/bot{BOT_TOKEN}/getMe")
    logger.warning("retrying api_key=abc123XYZ token=tok_998877 password: hunter22")
    logger.info("header Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl")
    try:
        raise RuntimeError(f"auth failed for secret {API_SECRET} / {BINANCE_KEY}")
    except RuntimeError:
        logger.exception("upbit call failed")
    try:
        try:
            raise KeyError(BOT_TOKEN)
        except KeyError as e:
            raise ValueError(f"wrapped: {BINANCE_KEY}") from e
    except ValueError:
        logger.opt(exception=True).error("chained")
    logging.getLogger("aiohttp.client").error("GET /bot%s/sendMessage failed", BOT_TOKEN)

    text = read_all(logs)
    for s in (API_SECRET, BINANCE_KEY, BOT_TOKEN, "abc123XYZ", "tok_998877", "hunter22"):
        assert s not in text
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in text
    assert "eyJzdWIiOi" not in text
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: auth failed for secret ***" in text
    assert "api_key=***" in text
    assert "/bot***/getMe" in text  # literal secret: masked whole
    assert (
        redact("GET /bot987654321:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/x")
        == "GET /bot987654321:***/x"
    )
    assert "aiohttp.client" in text
    assert stat.S_IMODE(os.stat(logs / "arbops.log").st_mode) == 0o600


def test_redact_helper_and_short_secrets_ignored(logs):
    assert redact(f"x {API_SECRET} y") == "x *** y"
    assert redact("about a cab") == "about a cab"  # "ab" is too short to be a secret
    assert redact('{"secret": "zzz111"}') == '{"secret": "***"}'
    assert redact("X-MBX-APIKEY: qwerty123") == "X-MBX-APIKEY: ***"
    assert redact("") == ""


def test_setup_twice_is_safe(tmp_path, logs):
    setup_logging(tmp_path, "info", ["another-secret-value"], console=True)
    logger.debug("hidden debug")
    logger.info("visible another-secret-value")
    text = (logs / "arbops.log").read_text()
    assert "hidden debug" not in text
    assert "visible ***" in text
    assert sum(1 for _ in text.splitlines() if "visible" in _) == 1
    with pytest.raises(ValueError):
        setup_logging(tmp_path, "LOUD", [], console=False)


def test_extract_errors(logs):
    logger.info("all good")
    logger.error("order rejected by exchange")
    logger.info("transfer FAILED, will retry")
    logger.warning("just slow")
    try:
        {}["missing"]
    except KeyError:
        logger.exception("unexpected")
    logger.info("after the traceback")
    logger.debug("Exceptional weather")  # matches 'exception' case-insensitively
    logger.info("line one\nline two has an error inside")
    logger.complete()

    got = extract_errors(logs, None)
    assert len(got) == 5, "\n##\n".join(got)
    assert "order rejected by exchange" in got[0] and "| ERROR" in got[0]
    assert "transfer FAILED" in got[1]
    assert got[2].splitlines()[0].endswith("unexpected")
    assert "Traceback (most recent call last)" in got[2]
    assert got[2].rstrip().endswith("KeyError: 'missing'")
    assert "after the traceback" not in got[2]
    assert "Exceptional weather" in got[3]
    assert got[4].splitlines() == [got[4].splitlines()[0], "line two has an error inside"]
    assert not any("all good" in g or "just slow" in g for g in got)


def test_extract_ignores_module_name_and_orders_rotated_files(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    (d / "arbops.2026-01-01_00-00-00_000000.log").write_text(
        "2026-01-01T00:00:00.000+00:00 | ERROR    | core.trading.engine:run:1 - first\n"
    )
    (d / "arbops.2026-01-02_00-00-00_000000.log").write_text(
        "orphan traceback line\n"
        "2026-01-02T00:00:00.000+00:00 | INFO     | core.failover:tick:9 - fine\n"
        "2026-01-02T00:00:01.000+00:00 | INFO     | core.x:y:1 - second failure\n"
    )
    (d / "arbops.log").write_text(
        "2026-01-03T00:00:00.000+00:00 | CRITICAL | core.trading.engine:run:1 - third\n"
        "2026-01-03T00:00:01.000+00:00 | INFO     | a:b:1 - nothing\n"
    )
    (d / "other.log").write_text("2026-01-03T00:00:00.000+00:00 | ERROR | x:y:1 - not ours\n")
    got = extract_errors(d, None)
    assert [g.rsplit(" - ", 1)[-1] for g in got] == ["first", "second failure", "third"]
    since = datetime(2026, 1, 2, tzinfo=UTC)
    got = extract_errors(d, since)
    assert [g.rsplit(" - ", 1)[-1] for g in got] == ["second failure", "third"]
    got = extract_errors(d, datetime(2026, 1, 2, 0, 0, 1))  # naive = UTC
    assert len(got) == 2
    assert extract_errors(tmp_path / "nope", None) == []


def test_extract_respects_since_on_live_log(logs):
    logger.error("old error")
    cut = datetime.now(UTC)
    logger.error("new error")
    got = extract_errors(logs, cut - timedelta(milliseconds=1))
    assert any("new error" in g for g in got)
    got = extract_errors(logs, cut + timedelta(hours=1))
    assert got == []


def test_parse_since():
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == now - timedelta(minutes=30)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("1d", now) == now - timedelta(days=1)
    assert parse_since(" 1W ", now) == now - timedelta(weeks=1)
    assert parse_since("45s", now) == now - timedelta(seconds=45)
    assert parse_since("2026-02-28", now) == datetime(2026, 2, 28, tzinfo=UTC)
    assert parse_since("2026-03-01T09:30", now) == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    kst = timezone(timedelta(hours=9))
    assert parse_since("2026-03-01T09:00:00+09:00", now) == datetime(2026, 3, 1, 9, tzinfo=kst)
    assert parse_since("2026-03-01T11:00:00Z", now) == datetime(2026, 3, 1, 11, tzinfo=UTC)
    # naive input takes now's timezone
    now_kst = datetime(2026, 3, 1, 21, 0, tzinfo=kst)
    assert parse_since("2026-03-01 20:00", now_kst) == datetime(2026, 3, 1, 20, tzinfo=kst)
    # naive now -> UTC
    assert parse_since("1h", datetime(2026, 3, 1, 12)) == datetime(2026, 3, 1, 11, tzinfo=UTC)
    for bad in ("", "yesterday", "30", "-5m", "5 minutes", "2026-13-01", "10x"):
        with pytest.raises(ValueError, match="since"):
            parse_since(bad, now)
    with pytest.raises(ValueError, match="future"):
        parse_since("2026-03-02", now)
