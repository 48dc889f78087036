"""Settings you can trust: which env files are read (runbook §1.3 as written), an
allowlist the bot and `config check` parse alike, misspelled names named."""
from __future__ import annotations

import pytest

from core.config.check import parse_allowlist, unknown_names
from core.config.env_files import resolve_env_files
from core.config.settings import load_settings
from core.errors import SettingsError
from tests.helpers.procs import arbops_env, run_cli, short_data_dir

LIVE_FILE = "ARBITRAGE_ENV=live\nUPBIT_ACCESS_KEY=live-upbit-access\n"
PAPER_FILE = "UPBIT_ACCESS_KEY=paper-upbit-access\n"


def test_mode_in_dot_env_selects_the_live_file(tmp_path):
    """ARBITRAGE_ENV=live only inside .env: the live file is read, not the paper one."""
    (tmp_path / ".env").write_text("ARBITRAGE_ENV=live\n")
    (tmp_path / ".env.live").write_text("UPBIT_ACCESS_KEY=live-upbit-access\n")
    (tmp_path / ".env.paper").write_text(PAPER_FILE)
    found = resolve_env_files(tmp_path, {})
    assert found.mode == "live" and found.files == (tmp_path / ".env", tmp_path / ".env.live")
    assert found.source == str(tmp_path / ".env") and not found.problems


def test_runbook_1_3_as_written_gives_live(tmp_path, monkeypatch):
    """The runbook puts ARBITRAGE_ENV=live inside .env.live and nothing else: live."""
    (tmp_path / ".env.live").write_text(LIVE_FILE)
    monkeypatch.delenv("ARBITRAGE_ENV", raising=False)
    monkeypatch.delenv("UPBIT_ACCESS_KEY", raising=False)
    settings = load_settings(tmp_path)
    assert settings.arbitrage_env == "live"
    assert settings.upbit_access_key is not None
    assert settings.upbit_access_key.get_secret_value() == "live-upbit-access"


def test_process_environment_wins_the_other_way(tmp_path, monkeypatch):
    """ARBITRAGE_ENV=paper in the process environment reads .env.paper even with a
    self-naming .env.live present."""
    (tmp_path / ".env.live").write_text(LIVE_FILE)
    (tmp_path / ".env.paper").write_text(PAPER_FILE)
    monkeypatch.setenv("ARBITRAGE_ENV", "paper")
    monkeypatch.delenv("UPBIT_ACCESS_KEY", raising=False)
    settings = load_settings(tmp_path)
    assert settings.arbitrage_env == "paper"
    assert settings.upbit_access_key is not None
    assert settings.upbit_access_key.get_secret_value() == "paper-upbit-access"


@pytest.mark.parametrize(("files", "environ", "needle"), [
    ({".env.paper": "ARBITRAGE_ENV=live\n"}, {"ARBITRAGE_ENV": "paper"}, "make them agree"),
    ({".env.paper": "ARBITRAGE_ENV=paper\n", ".env.live": "ARBITRAGE_ENV=live\n"}, {},
     "both .env.paper, .env.live"),
])
def test_contradicting_files_are_refused(tmp_path, monkeypatch, files, environ, needle):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.delenv("ARBITRAGE_ENV", raising=False)
    for k, v in environ.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path)
    assert needle in str(err.value)


@pytest.mark.parametrize(("text", "users", "problem"), [
    ("123:admin, 456:viewer", {123: "admin", 456: "viewer"}, None),
    ("123:operator,123:admin", {123: "operator"}, None),
    ("abc", {}, "positive number"),
    ("123:admn", {}, "did you mean 'admin'"),
    ("123", {}, "the role must be"),
    ("-5:admin", {}, "positive number"),
    ("+5:admin", {}, "positive number"),
    ("1_000:admin", {}, "positive number"),
    ("\u0661\u0662\u0663:admin", {}, "ASCII digits"),  # Arabic-Indic digits int() accepts
    ("1087968824:admin", {}, "GroupAnonymousBot"),
    ("136817688:viewer", {}, "Channel_Bot"),
])
def test_allowlist_entries(text, users, problem):
    parsed, problems = parse_allowlist(text)
    assert parsed == users
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_unknown_names_suggest_the_closest():
    lines = unknown_names(["ARBOPS_TAKEPROFIT_BPS", "ARBOPS_TAKE_PROFIT_BPS", "HOME"],
                          only_prefixed=True)
    assert lines == ["ARBOPS_TAKEPROFIT_BPS is not a setting and is ignored "
                     "(did you mean ARBOPS_TAKE_PROFIT_BPS?)"]
    in_file = unknown_names(["TELEGRAM_ALLOWED_USER", "EDITOR"], only_prefixed=False)
    assert in_file == ["TELEGRAM_ALLOWED_USER is not a setting and is ignored "
                       "(did you mean TELEGRAM_ALLOWED_USERS?)"]


def test_config_check_lists_files_and_fails_on_what_the_service_ignores():
    with short_data_dir() as d:
        (d / ".env").write_text("TELEGRAM_ALLOWED_USERS=123:admn\n"
                                "ARBOPS_TELEGRAM_ALLOWED_CHATS=-100123,ops-group\n"
                                "TELEGRAM_BOT_TOKEN=not a token secret-part\n")
        (d / ".env.live").write_text(LIVE_FILE)
        env = arbops_env(d, {"ARBOPS_TAKEPROFIT_BPS": "12"})
        r = run_cli(["config", "check"], d, env)
        assert r.returncode == 2, r.stderr
        assert f"loaded 1. {d / '.env'}" in r.stdout
        assert f"loaded 2. {d / '.env.live'}" in r.stdout
        assert "ARBITRAGE_ENV=live (from" in r.stdout
        assert "did you mean 'admin'" in r.stderr
        assert "did you mean ARBOPS_TAKE_PROFIT_BPS" in r.stderr
        assert "'ops-group': a chat id is a number" in r.stderr
        assert "TELEGRAM_BOT_TOKEN is malformed" in r.stderr and "secret-part" not in r.stderr
        assert "settings OK" not in r.stdout
        assert "live-upbit-access" not in r.stdout + r.stderr

        (d / ".env").write_text("TELEGRAM_ALLOWED_USERS=123:admin\n")
        r = run_cli(["config", "check"], d)
        assert r.returncode == 0, r.stderr
        assert "settings OK" in r.stdout
