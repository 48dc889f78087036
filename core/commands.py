"""The one command table both surfaces are generated from (design.md conv. 2-3).

Each command names its argument model, the minimum role, whether it adds risk
(two-step confirmation) and its help text. The CLI builds its parser from this
table; the Telegram bot builds /help, its menu and its confirmation step from it.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.trading.universe import parse_universe


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


def positional(**kw: object) -> dict[str, object]:
    return {"json_schema_extra": {"positional": True}, **kw}


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(Args):
    pass


class RunArgs(Args):
    phase: int = Field(1, ge=1, le=3, description="ramp-up phase 1|2|3 (sets defaults)")
    mode: Literal["paper", "live"] = Field("paper", description="paper or live")
    universe: str | None = Field(None, description="topN: top10, top20, top50, top100, top200")
    duration_minutes: float | None = Field(None, gt=0, description="run length in minutes")
    duration_seconds: float | None = Field(None, gt=0, description="run length in seconds")
    kpi_output_path: Path | None = Field(None, description="where the KPI JSON goes")
    data_source: Literal["sim", "replay", "real"] = Field(
        "sim", description="sim|replay|real; live runs default to real")
    seed: int | None = Field(None, description="sim market seed")
    max_notional_usd: float | None = Field(None, gt=0, le=1000, description="per-leg order cap")
    replay_path: Path | None = Field(None, description="recording to replay (default: latest)")
    continuous: bool = Field(False, description="phase 3 only: run until stopped, gate hourly")

    @field_validator("universe")
    @classmethod
    def _universe(cls, v: str | None) -> str | None:
        if v is not None:
            parse_universe(v)
        return v

    @model_validator(mode="before")
    @classmethod
    def _live_reads_real_books(cls, data: Any) -> Any:
        # LIVE only ever trades on the venues' own books, so `/run 1 live` (runbook
        # 2.1) means data source real; an explicit other source is still refused.
        if isinstance(data, dict) and data.get("data_source") is None and \
                data.get("mode") == "live":
            return {**data, "data_source": "real"}
        return data

    @model_validator(mode="after")
    def _one_duration(self) -> RunArgs:
        if self.duration_minutes is not None and self.duration_seconds is not None:
            raise ValueError("give --duration-minutes or --duration-seconds, not both")
        if self.continuous and self.phase != 3:
            raise ValueError("--continuous is for phase 3 only (runbook 2.3, Day 4+)")
        return self


class RecordArgs(Args):
    minutes: float | None = Field(None, gt=0, le=24 * 60, description="how long to record")
    seconds: float | None = Field(None, gt=0, description="how long to record, in seconds")
    universe: str = Field("top10", description="topN universe to record")
    data_source: Literal["sim", "real"] = Field("real", description="sim|real")
    output: Path | None = Field(None, description="file (default: data dir recordings/)")

    @field_validator("universe")
    @classmethod
    def _universe(cls, v: str) -> str:
        parse_universe(v)
        return v

    @model_validator(mode="after")
    def _one_duration(self) -> RecordArgs:
        if (self.minutes is None) == (self.seconds is None):
            raise ValueError("give exactly one of --minutes or --seconds")
        return self


class DemoArgs(Args):
    seconds: float = Field(75.0, gt=0, le=3600, description="how long the paper session runs")
    seed: int | None = Field(None, description="sim market seed")
    universe: str = Field("top10", description="topN universe")

    @field_validator("universe")
    @classmethod
    def _universe(cls, v: str) -> str:
        parse_universe(v)
        return v


class StatusArgs(Args):
    json_output: bool = Field(False, alias="json", description="print one JSON object")


class JsonArgs(Args):
    json_output: bool = Field(False, alias="json", description="print one JSON object")


class ReasonArgs(Args):
    reason: str = Field("manual", max_length=200, description="why (recorded and reported)")


class ConfirmArgs(ReasonArgs):
    confirm: str | None = Field(None, description="the confirmation phrase (for scripts)")


class ResetArgs(Args):
    confirm: str | None = Field(None, description="the confirmation phrase (for scripts)")


class AuditArgs(Args):
    limit: int = Field(20, ge=1, le=1000, description="how many rows")


class LogsArgs(Args):
    what: Literal["errors"] = Field(**positional(description="errors"))  # type: ignore[arg-type]
    since: str | None = Field(None, description="ISO time or 30m / 2h / 1d")


class IncidentArgs(Args):
    what: Literal["new"] = Field(**positional(description="new"))  # type: ignore[arg-type]
    title: str = Field(min_length=1, max_length=200, description="what happened, in a line")


class ReportArgs(Args):
    kind: Literal["daily", "weekly"] = Field(**positional(description="daily or weekly"))  # type: ignore[arg-type]
    date: str | None = Field(
        None, pattern=r"^(\d{4}-\d{2}-\d{2}|today|yesterday)$",
        description="YYYY-MM-DD, today or yesterday (default: the last complete day/week)")
    png: Path | None = Field(None, description="also write the chart PNG here")
    json_output: bool = Field(False, alias="json", description="print one JSON object")


class PreflightArgs(Args):
    dry_run: bool = Field(False, description="skip network checks (SKIP never counts as PASS)")
    output: Path | None = Field(None, description="also write the JSON report here")
    phase: int = Field(1, ge=1, le=3, description="the phase whose balances are checked")


class ArmArgs(Args):
    # A string on purpose: the ARM's own strict parser decides what a number is.
    usd: str = Field(**positional(description="per-leg cap in USD, 10..1000"))  # type: ignore[arg-type]
    confirm: str | None = Field(None, description="refused for live: type the phrase")


class OverrideArgs(Args):
    phase: int = Field(ge=1, le=3, description="the live phase to allow next")
    reason: str = Field(min_length=3, max_length=200, description="why (audited)")
    confirm: str | None = Field(None, description="the confirmation phrase (for scripts)")


class DrillArgs(Args):
    paper_seconds: float = Field(40.0, ge=20, le=600, description="the paper phase 1 rung")
    live_seconds: float = Field(30.0, ge=10, le=600, description="most time to the first live entry")
    data_dir: Path | None = Field(None, description="keep the drill's journal here")


class NotifyArgs(Args):
    what: Literal["test"] = Field("test", **positional(description="test"))  # type: ignore[arg-type]


class ConfigArgs(Args):
    what: Literal["check"] = Field(**positional(description="check"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    args: type[Args] = NoArgs
    min_role: Role = Role.VIEWER
    adds_risk: bool = False
    cli: bool = True
    telegram: bool = True
    available: bool = True
    pending_issue: str = ""


COMMANDS: tuple[Command, ...] = (
    Command("help", "list the commands", cli=False),
    Command("whoami", "your user id and role", cli=False),
    Command("demo", "paper session on the simulated market with live progress", DemoArgs,
            telegram=False),
    Command("serve", "run the service (engine, control channel; Telegram when configured)",
            telegram=False),
    Command("run", "run a phase (paper; live needs ARM)", RunArgs, Role.OPERATOR, adds_risk=True),
    Command("status", "mode, trading state, ARM, run progress, memory", StatusArgs),
    Command("stop", "graceful stop of the running phase: close positions, final KPI",
            ReasonArgs, Role.OPERATOR),
    Command("kill", "HALT now, cancel all orders, flatten, report (one step)", ReasonArgs),
    Command("reset", "leave HALTED after a kill (shows what is still open first)", ResetArgs,
            Role.OPERATOR, adds_risk=True),
    Command("pause", "REDUCING: exits only, no new entries", ReasonArgs, Role.OPERATOR),
    Command("resume", "back to ACTIVE from REDUCING", ConfirmArgs, Role.OPERATOR,
            adds_risk=True),
    Command("audit", "recent audit rows", AuditArgs),
    Command("logs", "errors, exceptions and failures from the logs (runbook 5.3)", LogsArgs,
            Role.OPERATOR),
    Command("config", "check the settings", ConfigArgs, telegram=False),
    Command("positions", "open positions", cli=False),
    Command("kpi", "the latest KPI JSON summary", cli=False),
    Command("preflight", "preflight checks (runbook 1.1); exit 0 only when ready for live",
            PreflightArgs),
    Command("arm", "ARM live trading for one phase start (expires in 600 s)", ArmArgs,
            Role.OPERATOR, adds_risk=True),
    Command("disarm", "drop the ARM (one step)", NoArgs, Role.OPERATOR),
    Command("ladder", "the ramp-up ladder: which live phase may start next", NoArgs),
    Command("override", "admin: allow a live phase the ladder would refuse (audited)",
            OverrideArgs, Role.ADMIN, adds_risk=True),
    Command("balance", "both venues' balances (runbook 5.2)", JsonArgs),
    Command("reconcile", "journal vs venues: open orders, positions, balance drift", JsonArgs,
            Role.OPERATOR),
    Command("record", "record market snapshots for --data-source replay", RecordArgs,
            Role.OPERATOR, telegram=False),
    Command("drill", "rehearse the LIVE runbook on loopback against the emulator", DrillArgs,
            telegram=False),
    Command("report", "daily/weekly report (runbook 7.2)", ReportArgs),
    Command("guards", "guard thresholds and headroom", cli=False),
    Command("incident", "open an incident report by hand (runbook 7.1)", IncidentArgs,
            Role.OPERATOR),
    Command("notify", "send a test alert through the notifier (runbook 8.1)", NotifyArgs),
)

BY_NAME = {c.name: c for c in COMMANDS}
