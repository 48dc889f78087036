"""R-S3 preflight: JSON shape, SKIP semantics, git safety, the real emulator + ccxt path."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.drill.emulator import start_emulator
from core.clock import ManualClock, SystemClock
from core.domain.models import Venue
from core.files import secure_data_dir
from core.journal.sqlite_store import SqliteStore
from core.safety.live_gate import PREFLIGHT_FLAG
from core.safety.live_safety import LiveSafety
from core.safety.preflight import (
    FAIL,
    PASS,
    REQUIRED_FOR_LIVE,
    SKIP,
    WARN,
    exit_code,
    git_safety,
    summarize,
    write_report,
)
from core.venues.ccxt_exchange import CcxtExchange
from tests.safety.safety_support import GOOD_SECRETS, git, git_repo, make_settings

CHECK_KEYS = {"name", "status", "message", "details", "timestamp"}
SUMMARY_KEYS = {"total_checks", "passed", "failed", "warnings", "skipped", "ready_for_live"}
VENUE_CHECKS = ("exchange_health", "clock_skew", "key_permissions_binance", "balances",
                "open_orders_venues", "telegram")


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


async def test_dry_run_shape_and_skips(tmp_path):
    repo = git_repo(tmp_path / "repo")
    data = tmp_path / "data"
    secure_data_dir(data)
    store = await SqliteStore.open(data / "db.sqlite3")
    try:
        safety = LiveSafety(make_settings(tmp_path, data_dir=data), store, ManualClock(), repo_dir=repo,
                            rss_mb=lambda: 50.0)
        report = await safety.preflight(dry_run=True)
    finally:
        await store.close()
    assert set(report) >= {"summary", "checks", "timestamp"}
    assert set(report["summary"]) == SUMMARY_KEYS
    for c in report["checks"]:
        assert set(c) == CHECK_KEYS, c
        assert c["status"] in (PASS, FAIL, WARN, SKIP)
        assert isinstance(c["details"], dict) and c["message"]
    checks = by_name(report)
    for name in VENUE_CHECKS:
        assert checks[name]["status"] == SKIP, checks[name]
    assert checks["redis"]["status"] == SKIP  # REDIS_URL unset: allowed
    for name in ("environment", "secrets", "database", "data_at_rest", "open_positions_journal",
                 "git_safety", "memory_headroom"):
        assert checks[name]["status"] == PASS, checks[name]
    assert checks["live_safety"]["status"] == WARN  # not armed yet
    assert checks["key_permissions_upbit"]["status"] == WARN  # no attestation
    s = report["summary"]
    assert s["total_checks"] == len(report["checks"]) == 16
    assert s["passed"] + s["failed"] + s["warnings"] + s["skipped"] == s["total_checks"]
    # SKIP never counts as PASS: a dry run is never ready.
    assert s["ready_for_live"] is False and exit_code(report) == 1
    assert set(report["blocking"]) == set(VENUE_CHECKS)
    text = json.dumps(report)
    for secret in GOOD_SECRETS.values():
        if isinstance(secret, str):
            assert secret not in text  # values never shown; lengths at most
    assert checks["secrets"]["details"]["lengths"]["BINANCE_API_KEY"] == 16


def test_summary_rules():
    def c(name: str, status: str) -> dict[str, Any]:
        return {"name": name, "status": status, "message": "m", "details": {}, "timestamp": "t"}

    good = [c(n, PASS) for n in REQUIRED_FOR_LIVE] + [c("redis", SKIP), c("memory_headroom", WARN)]
    r = summarize(good, "t")
    assert r["summary"]["ready_for_live"] is True and exit_code(r) == 0
    assert r["summary"]["skipped"] == 1 and r["summary"]["warnings"] == 1
    for status in (SKIP, FAIL):
        bad = [c(n, status if n == "telegram" else PASS) for n in REQUIRED_FOR_LIVE]
        r = summarize(bad, "t")
        assert r["summary"]["ready_for_live"] is False and r["blocking"] == ["telegram"]
        assert exit_code(r) == 1
    r = summarize([*good[:-1], c("memory_headroom", FAIL)], "t")  # any FAIL blocks
    assert r["summary"]["ready_for_live"] is False
    r = summarize(good[1:], "t")  # a required check missing altogether
    assert r["summary"]["ready_for_live"] is False
    assert exit_code({}) == 1 and exit_code({"summary": {"ready_for_live": "yes"}}) == 1


def test_write_report_atomic(tmp_path):
    out = tmp_path / "evidence" / "live_preflight_dryrun.json"
    write_report({"summary": {"ready_for_live": False}, "checks": [], "timestamp": "t"}, out)
    assert json.loads(out.read_text())["summary"]["ready_for_live"] is False
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left


# --- git safety in real repositories ----------------------------------------------------
def test_git_ignored_ok(tmp_path):
    status, msg, _ = git_safety(git_repo(tmp_path / "r"))
    assert status == PASS, msg


def test_git_env_live_not_ignored(tmp_path):
    status, msg, _ = git_safety(git_repo(tmp_path / "r", gitignore="*.pyc\n"))
    assert status == FAIL and ".env.live is not ignored" in msg


def test_git_tracked_secrets(tmp_path):
    repo = git_repo(tmp_path / "r")
    for name in ("prod.key", "conf/api.secret", ".env.live", ".env.paper", ".env.example"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text("x")
    git(repo, "add", "-f", "prod.key", "conf/api.secret", ".env.live", ".env.paper",
        ".env.example")
    status, msg, details = git_safety(repo)
    assert status == FAIL
    assert ".env.live is tracked" in msg
    assert details["tracked_secret_like"] == [".env.live", ".env.paper", "conf/api.secret",
                                              "prod.key"]


def test_git_example_only_is_fine(tmp_path):
    repo = git_repo(tmp_path / "r")
    (repo / ".env.example").write_text("A=1\n")
    git(repo, "add", ".env.example")
    assert git_safety(repo)[0] == PASS


def test_not_a_checkout_warns_naming_path(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    status, msg, details = git_safety(plain)
    assert status == WARN and str(plain) in msg and details["path"] == str(plain)


# --- the real emulator + CcxtExchange --------------------------------------------------
async def _run_against_emulator(tmp_path: Path, **safety_kw: Any) -> dict[str, Any]:
    handle = await start_emulator(autostep=False, bases=["BTC", "ETH", "XRP"])
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        async def venues() -> dict[Venue, Any]:
            out = {}
            for venue, fee in ((Venue.UPBIT, 5.0), (Venue.BINANCE, 10.0)):
                key, secret = handle.keys[str(venue)]
                out[venue] = CcxtExchange(venue, handle.url, key, secret, fee)
            return out

        async def get_me() -> dict[str, Any]:
            return {"id": 1, "is_bot": True, "username": "arbops_test_bot"}

        data = tmp_path / "data"
        secure_data_dir(data)
        safety = LiveSafety(make_settings(tmp_path, data_dir=data), store, SystemClock(),
                            venues_provider=venues,
                            telegram_probe=get_me, repo_dir=git_repo(tmp_path / "repo"),
                            rss_mb=lambda: 60.0, **safety_kw)
        report = await safety.preflight(dry_run=False, phase=1)
        report["_stored"] = json.loads(await store.get_flag(PREFLIGHT_FLAG) or "{}")
        return report
    finally:
        await store.close()
        await handle.stop()


async def test_ready_against_emulator(tmp_path):
    async def restrictions() -> dict[str, Any]:
        return {"enableWithdrawals": False, "enableReading": True, "ipRestrict": True}

    report = await _run_against_emulator(tmp_path, api_restrictions_probe=restrictions)
    checks = by_name(report)
    for name in ("exchange_health", "clock_skew", "balances", "open_orders_venues", "telegram",
                 "key_permissions_binance"):
        assert checks[name]["status"] == PASS, checks[name]
    assert abs(checks["clock_skew"]["details"]["skew_ms"]) < 1000  # the real ccxt fetch_time
    assert checks["balances"]["details"]["base_funded_on_both"]
    assert report["summary"]["ready_for_live"] is True, report["blocking"]
    assert exit_code(report) == 0
    assert report["_stored"]["ready_for_live"] is True and report["_stored"]["dry_run"] is False


async def test_withdrawals_read_from_the_venue(tmp_path):
    # No injected probe: the real ccxt call reaches the emulator's apiRestrictions,
    # whose keys can never withdraw.
    report = await _run_against_emulator(tmp_path)
    c = by_name(report)["key_permissions_binance"]
    assert c["status"] == PASS and c["details"]["enableWithdrawals"] is False


async def test_withdrawals_unreadable_fails(tmp_path):
    async def unreadable() -> dict[str, Any]:
        raise RuntimeError("404 Not Found")

    report = await _run_against_emulator(tmp_path, api_restrictions_probe=unreadable)
    c = by_name(report)["key_permissions_binance"]
    assert c["status"] == FAIL and "apiRestrictions" in c["message"]
    assert report["summary"]["ready_for_live"] is False and exit_code(report) == 1


@pytest.mark.parametrize("reply,word", [({"enableWithdrawals": True}, "enableWithdrawals=True"),
                                        ({}, "no enableWithdrawals")])
async def test_withdrawals_flag(tmp_path, reply, word):
    async def restrictions() -> dict[str, Any]:
        return reply

    report = await _run_against_emulator(tmp_path, api_restrictions_probe=restrictions)
    c = by_name(report)["key_permissions_binance"]
    assert c["status"] == FAIL and word in c["message"]


async def test_unreachable_venues_fail_each_check(tmp_path):
    store = await SqliteStore.open(tmp_path / "db.sqlite3")

    async def no_venues() -> dict[Venue, Any]:
        raise ConnectionError("venue factory down")

    try:
        safety = LiveSafety(make_settings(tmp_path, arbitrage_env="paper"), store, ManualClock(),
                            venues_provider=no_venues, repo_dir=tmp_path, rss_mb=lambda: 480.0)
        report = await safety.preflight(dry_run=False)
    finally:
        await store.close()
    checks = by_name(report)
    assert checks["environment"]["status"] == FAIL
    assert checks["exchange_health"]["status"] == FAIL
    assert "both venues" in checks["exchange_health"]["message"]
    assert checks["telegram"]["status"] == FAIL  # required for live, no probe wired
    assert checks["git_safety"]["status"] == WARN
    assert checks["memory_headroom"]["status"] == WARN
    assert report["summary"]["ready_for_live"] is False


async def test_errors_are_redacted(tmp_path):
    """An exception quoting a secret or a signed URL never reaches the report verbatim."""
    store = await SqliteStore.open(tmp_path / "db.sqlite3")

    async def leaky_get_me() -> dict[str, Any]:
        raise RuntimeError(f"bad token {GOOD_SECRETS['telegram_bot_token']} at "
                           "https://x/api?timestamp=1&signature=deadbeef")

    async def no_venues() -> dict[Venue, Any]:
        return {}

    try:
        safety = LiveSafety(make_settings(tmp_path), store, ManualClock(),
                            venues_provider=no_venues, telegram_probe=leaky_get_me,
                            repo_dir=tmp_path, rss_mb=lambda: 50.0)
        report = await safety.preflight(dry_run=False)
    finally:
        await store.close()
    msg = by_name(report)["telegram"]["message"]
    assert by_name(report)["telegram"]["status"] == FAIL
    assert "signature=***" in msg and "deadbeef" not in msg
    assert GOOD_SECRETS["telegram_bot_token"] not in json.dumps(report)


@pytest.mark.parametrize("field,value,word", [
    ("binance_api_key", " binance-test-key", "whitespace"),
    ("upbit_secret_key", "<LIVE_SECRET>", "placeholder"),
    ("telegram_bot_token", "not-a-token-at-all", "TELEGRAM_BOT_TOKEN"),
    ("binance_api_secret", None, "BINANCE_API_SECRET is not set"),
    ("telegram_chat_id", None, "TELEGRAM_CHAT_ID is not set"),
])
async def test_malformed_secrets(tmp_path, field, value, word):
    store = await SqliteStore.open(tmp_path / "db.sqlite3")
    try:
        safety = LiveSafety(make_settings(tmp_path, **{field: value}), store, ManualClock(),
                            repo_dir=tmp_path, rss_mb=lambda: 50.0)
        c = by_name(await safety.preflight(dry_run=True))["secrets"]
    finally:
        await store.close()
    assert c["status"] == FAIL and word in c["message"]
    if isinstance(value, str):
        assert value.strip(" <>") not in json.dumps(c)


async def test_data_at_rest_fails_naming_the_loose_path(tmp_path):
    """A data dir or journal file other local users can read fails preflight, by path;
    the narrowing done at start-up makes it pass again."""
    data = tmp_path / "data"
    store = await SqliteStore.open(data / "db.sqlite3")
    try:
        data.chmod(0o755)
        (data / "incidents").mkdir()
        (data / "incidents" / "x.md").write_text("x")
        (data / "incidents" / "x.md").chmod(0o644)
        settings = make_settings(tmp_path, data_dir=data)
        safety = LiveSafety(settings, store, ManualClock(), repo_dir=git_repo(tmp_path / "r"),
                            rss_mb=lambda: 50.0)
        check = by_name(await safety.preflight(dry_run=True))["data_at_rest"]
        assert check["status"] == FAIL
        assert f"{data} (0755)" in check["message"]
        assert f"{data / 'incidents' / 'x.md'} (0644)" in check["message"]
        assert oct((data / "db.sqlite3").stat().st_mode & 0o777) == "0o600"  # created private
        secure_data_dir(data)
        check = by_name(await safety.preflight(dry_run=True))["data_at_rest"]
        assert check["status"] == PASS, check
    finally:
        await store.close()
