"""Secrets sweep: a real engine runs a phase with known fake secrets, an operator types
one of them into a kill reason, `status --json` and offline commands run; then every
file under the data dir (journal, WAL, KPI, incident, logs, state file) and every
output captured is searched for the secret values. None may appear.
Also: the data dir is 0700 and every file the run left is 0600, and a misspelled
setting name is named at start."""
from __future__ import annotations

import stat
import textwrap

import pytest

from tests.bot.test_cli_control import start_run, status_json
from tests.helpers.procs import (
    arbops_env,
    query,
    run_cli,
    run_python,
    short_data_dir,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

SECRETS = {
    "UPBIT_ACCESS_KEY": "fakeUpbitAccess0123456789",
    "UPBIT_SECRET_KEY": "fakeUpbitSecretKeyABCDEFGHIJ",
    "BINANCE_API_KEY": "fakeBinanceKey9876543210xyz",
    "BINANCE_API_SECRET": "fakeBinanceSecretQWERTYUIOP",
    "REDIS_URL": "redis://:fakeRedisPw4242@127.0.0.1:1/0",
}
TYPED = "hunter2hunter2hunter2"  # not configured: masked because of how it is written


def _leaks(blob: bytes) -> list[str]:
    values = [*SECRETS.values(), "fakeRedisPw4242", TYPED]
    return [v for v in values if v.encode() in blob]


def test_no_secret_in_any_sink_and_data_at_rest_is_private():
    with short_data_dir("aosec") as d:
        env = {k: v for k, v in SECRETS.items() if k != "REDIS_URL"}
        env["ARBOPS_TAKEPROFIT_BPS"] = "12"  # misspelled: the engine says so at start
        kpi = d / "out" / "kpi.json"
        outputs: list[str] = []
        with start_run(d, kpi, **env) as proc:
            reason = (f"operator pasted {SECRETS['BINANCE_API_SECRET']} and "
                      f"password: {TYPED}")
            res = run_cli(["kill", "--reason", reason], d, arbops_env(d, env))
            outputs += [res.stdout, res.stderr]
            assert res.returncode == 0, res.stdout + res.stderr
            assert "HALTED" in res.stdout
            proc.wait(30)
            outputs += [proc.stdout(), proc.stderr()]
        status = status_json(d)
        assert status["trading_state"] == "HALTED"
        assert "***" in status["halted_reason"] and "operator pasted" in status["halted_reason"]
        # an offline command with a secret in a setting it cannot use: the stderr
        # message quotes the value it refuses
        res = run_cli(["status", "--json"], d, arbops_env(d, {**env, **SECRETS}))
        outputs += [res.stdout, res.stderr]
        wait_until(lambda: bool(query(d, "SELECT 1 FROM runs WHERE ended_at IS NOT NULL")),
                   10, what="the run to be closed")

        files = [p for p in d.rglob("*") if p.is_file() and ".xdg" not in p.parts]
        names = {p.name for p in files}
        assert "arbops.sqlite3" in names and "kpi.json" in names and "arbops.log" in names
        assert any(p.parent.name == "incidents" for p in files), sorted(names)
        log = (d / "logs" / "arbops.log").read_text()
        assert ("ARBOPS_TAKEPROFIT_BPS is not a setting and is ignored (did you mean "
                "ARBOPS_TAKE_PROFIT_BPS?)") in log
        leaks = {str(p): found for p in files if (found := _leaks(p.read_bytes()))}
        leaks.update({f"output {i}": found for i, text in enumerate(outputs)
                      if (found := _leaks(text.encode()))})
        assert leaks == {}

        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        loose = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in [*files, *d.rglob("*")]
                 if ".xdg" not in p.parts and not p.is_socket()
                 and stat.S_IMODE(p.stat().st_mode) & 0o077}
        assert loose == {}


def test_offline_cli_logs_on_stderr_are_masked():
    """A command carried out in the CLI's own process (no engine) keeps loguru's
    stderr sink: what it logs is masked like the engine's log file."""
    code = textwrap.dedent("""
        from loguru import logger
        from bot.cli.client import EngineClient
        from core.config.settings import load_settings

        async def log_it(service):
            secret = service.settings.binance_api_secret.get_secret_value()
            logger.warning("venue said: bad key {} for redis://:pw4242xyz@h:1/0", secret)
            return 0

        EngineClient(load_settings()).here(log_it)
    """)
    with short_data_dir("aosec") as d:
        r = run_python(code, arbops_env(d, SECRETS), d)
        assert r.returncode == 0, r.stderr
        assert "venue said: bad key *** for redis://:***@h:1/0" in r.stderr
        assert _leaks(r.stderr.encode()) == [] and "pw4242xyz" not in r.stderr
