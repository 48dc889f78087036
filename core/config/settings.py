"""Typed, frozen settings.

Runbook names are kept as they are (ARBITRAGE_ENV, LIVE_ARM_*, venue keys,
TELEGRAM_*, REDIS_URL, PROMETHEUS_*); arbops' own settings are ARBOPS_<NAME>.
Files: `.env`, then `.env.<ARBITRAGE_ENV>`; the process environment wins. Which
mode picks the second file, and what is refused, is core.config.env_files' rule.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.config.env_files import resolve_env_files
from core.errors import SettingsError
from core.redaction import register_secrets

RUNBOOK_NAMES = (
    "ARBITRAGE_ENV",
    "LIVE_ARM_ACK",
    "LIVE_ARM_AT",
    "LIVE_MAX_NOTIONAL_USD",
    "UPBIT_ACCESS_KEY",
    "UPBIT_SECRET_KEY",
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "TELEGRAM_BOT_TOKEN",
    "TELEGRAM_CHAT_ID",
    "TELEGRAM_ALLOWED_USERS",
    "TELEGRAM_API_BASE",
    "UPBIT_API_BASE",
    "BINANCE_API_BASE",
    "REDIS_URL",
    "PROMETHEUS_ENABLED",
    "PROMETHEUS_PORT",
    "POSTGRES_DSN",
    "ARBOPS_DATA_DIR",
)


_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{16,256}")


# The "rehearsal" profile (ARBOPS_SIM_PROFILE=rehearsal): a sim premium that jumps
# about once a minute per symbol and reverts in seconds, and a strategy on a
# 30-second baseline; made to trade at once, not to say anything about real money.
REHEARSAL: dict[str, Any] = {
    "sim_mean_reversion": 0.15, "sim_premium_vol_bps": 4.0, "sim_level_vol_bps": 0.0,
    "sim_jump_rate_per_min": 1.0, "sim_jump_bps": 90.0,
    "baseline_halflife_s": 30.0, "baseline_warmup_s": 3.0, "take_profit_bps": 10.0,
    "stop_loss_bps": 60.0, "max_hold_s": 45.0, "reversal_bps": 5.0, "entry_cooldown_s": 2.0,
    "entry_buffer_bps": 5.0,
}


def _env(name: str) -> Any:
    return AliasChoices(name, name.lower())


# Not relative to the working directory: `arbops kill` typed anywhere must reach the
# same engine. "~/.local/share" follows $XDG_DATA_HOME when it is set.
DEFAULT_DATA_DIR = "~/.local/share/arbops"


def absolute_data_dir(value: Path | str) -> Path:
    """The data dir as an absolute path; a relative one is taken from where the
    command runs, once, so every later step (and the engine registry) agrees."""
    text = str(value)
    if text == DEFAULT_DATA_DIR and os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "arbops"
    return Path(os.path.abspath(os.path.expanduser(text)))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ARBOPS_",
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        case_sensitive=False,
    )

    # --- runbook names ---------------------------------------------------
    arbitrage_env: Literal["paper", "live"] = Field("paper", validation_alias=_env("ARBITRAGE_ENV"))
    live_arm_ack: str | None = Field(None, validation_alias=_env("LIVE_ARM_ACK"))
    live_arm_at: str | None = Field(None, validation_alias=_env("LIVE_ARM_AT"))
    live_max_notional_usd: str | None = Field(None, validation_alias=_env("LIVE_MAX_NOTIONAL_USD"))
    upbit_access_key: SecretStr | None = Field(None, validation_alias=_env("UPBIT_ACCESS_KEY"))
    upbit_secret_key: SecretStr | None = Field(None, validation_alias=_env("UPBIT_SECRET_KEY"))
    binance_api_key: SecretStr | None = Field(None, validation_alias=_env("BINANCE_API_KEY"))
    binance_api_secret: SecretStr | None = Field(None, validation_alias=_env("BINANCE_API_SECRET"))
    telegram_bot_token: SecretStr | None = Field(None, validation_alias=_env("TELEGRAM_BOT_TOKEN"))
    telegram_chat_id: int | None = Field(None, validation_alias=_env("TELEGRAM_CHAT_ID"))
    telegram_allowed_users: str = Field("", validation_alias=_env("TELEGRAM_ALLOWED_USERS"))
    telegram_api_base: str = Field(
        "https://api.telegram.org", validation_alias=_env("TELEGRAM_API_BASE")
    )
    upbit_api_base: str = Field("https://api.upbit.com", validation_alias=_env("UPBIT_API_BASE"))
    binance_api_base: str = Field(
        "https://api.binance.com", validation_alias=_env("BINANCE_API_BASE")
    )
    redis_url: SecretStr | None = Field(None, validation_alias=_env("REDIS_URL"))
    prometheus_enabled: bool = Field(False, validation_alias=_env("PROMETHEUS_ENABLED"))
    prometheus_port: int = Field(9100, ge=1, le=65535, validation_alias=_env("PROMETHEUS_PORT"))
    postgres_dsn: SecretStr | None = Field(None, validation_alias=_env("POSTGRES_DSN"))
    data_dir: Path = Field(Path(DEFAULT_DATA_DIR), validation_alias=_env("ARBOPS_DATA_DIR"),
                           validate_default=True)

    # --- fees and strategy (R-M3) ----------------------------------------
    upbit_fee_bps: float = Field(5.0, ge=0, le=100)
    binance_fee_bps: float = Field(10.0, ge=0, le=100)
    # Chosen on the real training data by scripts/tune_strategy.py (docs/strategy.md);
    # every time is seconds of the market's clock.
    entry_buffer_bps: float = Field(0.0, ge=0, le=1000)
    baseline_halflife_s: float = Field(21_600.0, gt=0)
    baseline_warmup_s: float = Field(21_600.0, ge=0)
    take_profit_bps: float = Field(10.0, gt=0)
    stop_loss_bps: float = Field(60.0, gt=0)
    max_hold_s: float = Field(21_600.0, gt=0)
    reversal_bps: float = Field(1000.0, ge=0)
    max_concurrent: int = Field(5, ge=1, le=100)
    order_timeout_s: float = Field(2.0, gt=0)
    entry_cooldown_s: float = Field(1800.0, ge=0)
    exit_reprice_s: float = Field(1.0, gt=0)
    # How far past the touched level a marketable limit may go. Sparse data (a book
    # every 5 minutes) needs room for the market's move until the next book.
    limit_slack_bps: float = Field(5.0, ge=0, le=200)

    # --- engine and gateway (R-S6) ---------------------------------------
    tick_interval_ms: int = Field(100, ge=5, le=10_000)
    price_collar_bps: float = Field(50.0, gt=0, le=2000)
    stale_book_ms: int = Field(2000, ge=50)
    max_orders_per_second: float = Field(20.0, gt=0)
    kpi_checkpoint_interval_s: float = Field(60.0, gt=0)
    real_poll_interval_s: float = Field(1.0, gt=0, le=60)
    market_data_streams: bool = True
    order_streams: bool = True
    order_stream_confirm_s: float = Field(3.0, gt=0, le=60)
    outage_escalate_s: float = Field(300.0, gt=0)
    flatten_alert_interval_s: float = Field(30.0, gt=0)
    report_timezone: str = "Asia/Seoul"
    report_time: str = Field("09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    report_grace_s: float = Field(21600.0, ge=0)
    report_chart_timeout_s: float = Field(30.0, gt=0, le=600)
    reconcile_interval_s: float = Field(3600.0, ge=0)  # 0 turns the scheduled check off
    reports_enabled: bool = True
    trade_notifications: Literal["auto", "off", "every", "digest"] = "auto"
    trade_digest_minutes: float = Field(15.0, gt=0, le=24 * 60)
    prometheus_host: str = "127.0.0.1"
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- Telegram surface (R-U1) -------------------------------------------------
    telegram_confirm_ttl_s: float = Field(60.0, ge=5, le=600)
    telegram_stale_after_s: float = Field(60.0, ge=5, le=3600)
    telegram_allowed_chats: str = ""  # chat ids besides TELEGRAM_CHAT_ID; "" = none
    telegram_webhook_url: str | None = None  # unset: long polling
    telegram_webhook_secret: SecretStr | None = None
    telegram_webhook_host: str = "127.0.0.1"
    telegram_webhook_port: int = Field(8081, ge=0, le=65535)  # 0: any free port (tests)

    # --- LIVE safety (R-S1..R-S5) ---------------------------------------------
    preflight_max_age_s: float = Field(1800.0, gt=0)
    ladder_window_s: float = Field(86_400.0, gt=0)
    max_clock_skew_ms: float = Field(1000.0, gt=0)
    upbit_withdrawals_disabled_attested: bool = False
    redis_lock_ttl_ms: int = Field(10_000, ge=1000)
    redis_key_prefix: str = "arbops"

    # --- phase gates (R-P2); runbook §2.1-§2.2 values ---------------------------
    gate_phase1_latency_ms: float = Field(50.0, gt=0)
    gate_phase1_cpu_percent: float = Field(50.0, gt=0)
    gate_phase1_memory_mb: float = Field(200.0, gt=0)
    gate_min_round_trips: int = Field(5, ge=0)
    gate_min_win_rate: float = Field(0.5, ge=0, le=1)
    gate_min_pnl_usd: float = -10.0
    gate_phase2_latency_ms: float = Field(30.0, gt=0)

    # --- guards (R-K3, R-K4); defaults are the runbook's ---------------------
    guard_daily_loss_usd: float = Field(300.0, gt=0)
    guard_single_trade_loss_usd: float = Field(100.0, gt=0)
    guard_max_open_positions: int = Field(10, ge=1)
    guard_memory_kill_mb: float = Field(500.0, gt=0)
    guard_max_consecutive_errors: int = Field(5, ge=1)
    guard_latency_ms: float = Field(100.0, gt=0)
    guard_latency_window_s: float = Field(60.0, gt=0)
    guard_cpu_percent: float = Field(80.0, gt=0)
    guard_cpu_window_s: float = Field(120.0, gt=0)
    guard_memory_anomaly_mb: float = Field(300.0, gt=0)
    guard_pnl_fall_usd: float = Field(50.0, gt=0)
    guard_pnl_fall_window_s: float = Field(1800.0, gt=0)
    guard_exchange_errors_per_min: int = Field(10, ge=1)
    guard_rate_limit_hits: int = Field(5, ge=1)
    guard_rate_limit_window_s: float = Field(600.0, gt=0)
    guard_no_entry_alert_s: float = Field(300.0, gt=0)
    guard_no_exit_alert_s: float = Field(600.0, gt=0)
    guard_phase1_no_entry_kill_s: float = Field(180.0, gt=0)
    guard_heartbeat_s: float = Field(5.0, gt=0)
    guard_rss_growth_mb: float = Field(150.0, gt=0)
    guard_exchange_errors_alert_per_min: int = Field(5, ge=1)
    guard_rate_limit_wait_alert_s: float = Field(1.0, gt=0)
    watchdog_interval_s: float = Field(1.0, gt=0, le=10)
    alert_cooldown_s: float = Field(300.0, ge=0)
    memory_headroom_warn: float = Field(0.2, ge=0, le=1)

    # --- simulated market (R-M8) -----------------------------------------
    # "calibrated": the sim reproduces the real premium's statistics and the strategy
    # uses the defaults chosen on real data (hours). "rehearsal": a jumpy premium and a
    # 30-second strategy that trade within a minute, to rehearse the machinery (the
    # demo, drills); its PnL says nothing about the real market.
    sim_profile: Literal["calibrated", "rehearsal"] = "calibrated"
    sim_seed: int = 7
    sim_symbols: int = Field(200, ge=1, le=200)
    # Fitted to the real BTC premium's change variance at 1 min, 5 min, 1 h and 3 h:
    # a fast part (stationary SD ~3.7 bps, half-life ~90 s) and a level drifting
    # ~12 bps an hour with a half-life of days.
    sim_mean_reversion: float = Field(0.008, ge=0, le=10)  # per second (fast deviation)
    sim_premium_vol_bps: float = Field(0.464, ge=0)  # per sqrt(second)
    sim_level_vol_bps: float = Field(0.175, ge=0)  # slow level drift, per sqrt(second)
    sim_level_halflife_s: float = Field(172_800.0, gt=0)
    sim_jump_rate_per_min: float = Field(0.001, ge=0)  # per symbol
    sim_jump_bps: float = Field(20.0, ge=0)
    sim_fx_krw: float = Field(1380.0, gt=0)
    sim_fast: bool = False  # step the market without sleeping: tests and benchmarks only

    # --- paper exchange (and fault injection for tests and drills) -------
    paper_initial_usd: float = Field(20_000.0, gt=0)  # quote per venue, in USD
    # Each traded base per venue, in USD at the start; 0 = 20 x the order notional,
    # at least $1,000 (enough for every round trip of a phase).
    paper_base_usd: float = Field(0.0, ge=0)
    # Overrides per venue and asset, in units of the asset: "upbit:BTC=0.5,binance:USDT=5000"
    paper_funding: str = ""
    paper_latency_ms: float = Field(0.0, ge=0)
    paper_fill_ratio: float = Field(1.0, gt=0, le=1)  # share of an order one book can fill
    paper_cancel_failures: int = Field(0, ge=0)  # next N cancels raise VenueUnavailable
    fault_crash_at: str | None = None  # crash tests only: e.g. "after_send:3" -> SIGKILL

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, v: Path) -> Path:
        return absolute_data_dir(v)

    @field_validator("report_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        from urllib.parse import urlsplit

        parts = urlsplit(value)
        # Telegram only delivers webhooks over HTTPS; a typo here would silently
        # mean no commands reach the bot, so it is refused up front.
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// URL that Telegram can reach, e.g. "
                             "https://bot.example.com/telegram/<random path>")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        # Telegram's secret_token rule: 1-256 of A-Z a-z 0-9 _ -. We ask for at
        # least 16 so it cannot be guessed; the value itself is never echoed.
        if value is not None and not _WEBHOOK_SECRET.fullmatch(value.get_secret_value()):
            raise ValueError("must be 16-256 characters of A-Z a-z 0-9 _ - "
                             "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        return value

    def telegram_webhook_problems(self) -> list[str]:
        """Why webhook mode may not start (empty when it may, or when polling)."""
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            return ["ARBOPS_TELEGRAM_WEBHOOK_SECRET: webhook mode refuses to start without a "
                    "secret token (Telegram sends it with every update; without it anyone "
                    "who finds the URL could post commands)"]
        return []

    @model_validator(mode="after")
    def _profile(self) -> Settings:
        # The rehearsal profile's values, except where a setting was given explicitly.
        if self.sim_profile == "rehearsal":
            for name, value in REHEARSAL.items():
                if name not in self.model_fields_set:
                    self.__dict__[name] = value
        return self

    @field_validator("paper_funding")
    @classmethod
    def _paper_funding(cls, value: str) -> str:
        from core.domain.paper_funding import parse_funding

        parse_funding(value)  # a typo is refused at load, naming the item
        return value

    @field_validator("fault_crash_at")
    @classmethod
    def _crash_point(cls, value: str | None) -> str | None:
        if value:
            from core.crash_points import CrashPoints

            CrashPoints(value)  # raises ValueError naming the expected form
        return value

    @property
    def secrets_present(self) -> dict[str, bool]:
        return {
            "UPBIT_ACCESS_KEY": self.upbit_access_key is not None,
            "UPBIT_SECRET_KEY": self.upbit_secret_key is not None,
            "BINANCE_API_KEY": self.binance_api_key is not None,
            "BINANCE_API_SECRET": self.binance_api_secret is not None,
            "TELEGRAM_BOT_TOKEN": self.telegram_bot_token is not None,
        }

    def secret_values(self) -> list[str]:
        """Raw secret values, only for the log redactor."""
        out = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                raw = value.get_secret_value()
                if len(raw) >= 4:
                    out.append(raw)
        return out


def env_name(field: str) -> str:
    """The environment variable that sets a field."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"ARBOPS_{field.upper()}"


def load_settings(env_dir: Path | None = None, **overrides: Any) -> Settings:
    """Load settings or raise SettingsError naming every bad field. The files read
    follow core.config.env_files; a contradiction between them is refused here too."""
    found = resolve_env_files(env_dir or Path.cwd())
    if found.problems:
        raise SettingsError(list(found.problems))
    try:
        settings = Settings(_env_file=found.files or None, **overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else "?"
            name = env_name(loc) if loc in Settings.model_fields else loc
            problems.append(f"{name}: {err['msg']}")
        raise SettingsError(problems) from None
    register_secrets(settings.secret_values())
    return settings


def load_settings_tolerant(env_dir: Path | None = None) -> tuple[Settings, list[str]]:
    """Settings for a command that must work whatever else is wrong (`arbops kill`,
    R-K2): every malformed value is replaced by its default and named in a warning,
    instead of refusing the command. Returns the settings and the warnings."""
    try:
        return load_settings(env_dir), []
    except SettingsError:
        pass
    found = resolve_env_files(env_dir or Path.cwd())
    files = found.files or None
    fallback: dict[str, Any] = {}
    warnings: list[str] = list(found.problems)
    for _ in range(len(Settings.model_fields)):
        try:
            settings = Settings(_env_file=files, **fallback)
            register_secrets(settings.secret_values())
            return settings, warnings
        except ValidationError as exc:
            named = (_field_of(str(err["loc"][0])) for err in exc.errors() if err["loc"])
            bad = {b for b in named if b is not None} - set(fallback)
            if not bad:
                break
            for name in sorted(bad):
                field = Settings.model_fields[name]
                fallback[name] = field.default
                warnings.append(f"ignoring {env_name(name)}: malformed; using its default "
                                f"({field.default if field.default is not None else 'unset'})")
    defaults = Settings.model_construct()
    return (defaults.model_copy(update={"data_dir": absolute_data_dir(defaults.data_dir)}),
            [*warnings, "settings unreadable; using every default"])


def _field_of(loc: str) -> str | None:
    """The field a validation error's location names (a field or one of its aliases)."""
    if loc in Settings.model_fields:
        return loc
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and loc in alias.choices:
            return name
        if loc.upper() == f"ARBOPS_{name.upper()}":
            return name
    return None
