"""The one command table both surfaces are generated from (docs/architecture.md, "One command registry").

Each command names its argument model, the minimum role, whether it adds risk
(two-step confirmation) and its help text. The CLI builds its parser from this
table; the Telegram bot builds /help, its menu and its confirmation step from it.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import BadInput, ServiceError
from core.redaction import clean_text
from core.trading.universe import parse_universe


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


# Marks a field the CLI takes as a positional argument (`arbops report daily`).
POSITIONAL: dict[str, Any] = {"positional": True}


class Args(BaseModel):
    # No NaN or infinity: JSON from the control channel may spell them, and a run of
    # `inf` seconds or a cap of NaN is bad input, not a value.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


class BacktestArgs(Args):
    data: list[Path] = Field(min_length=1, description="recordings to replay, in order")
    param: list[str] | None = Field(None, description="NAME=VALUE: a setting for this backtest")
    sweep: list[str] | None = Field(
        None, description="NAME=V1,V2,...: run the grid, ranked by strategy PnL")
    phase: int = Field(2, ge=1, le=3, description="whose gate is evaluated (and notional)")
    max_notional_usd: float | None = Field(None, gt=0, le=1000, description="per-leg order cap")
    json_output: bool = Field(False, alias="json", description="print one JSON object")
    png: Path | None = Field(None, description="write the equity chart PNG here")


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


class TradesArgs(Args):
    limit: int = Field(10, ge=1, le=200, description="how many round trips, newest first",
                       json_schema_extra=POSITIONAL)
    json_output: bool = Field(False, alias="json", description="print one JSON object")


class DailyArgs(Args):
    days: int = Field(7, ge=1, le=90, description="how many days, today first",
                      json_schema_extra=POSITIONAL)
    json_output: bool = Field(False, alias="json", description="print one JSON object")


def _free_text(value: str) -> str:
    """What an operator typed, as it is stored and reported: secrets masked, one line."""
    return clean_text(value)


class ReasonArgs(Args):
    # Cut to length rather than refused: a kill must never fail on its reason.
    reason: str = Field("manual", description="why (recorded and reported, first 200 characters)")

    _clean_reason = field_validator("reason")(_free_text)


class ConfirmArgs(ReasonArgs):
    confirm: str | None = Field(None, description="the confirmation phrase (for scripts)")


class ResetArgs(Args):
    confirm: str | None = Field(None, description="the confirmation phrase (for scripts)")


class AuditArgs(Args):
    limit: int = Field(20, ge=1, le=1000, description="how many rows")


class LogsArgs(Args):
    what: Literal["errors"] = Field(description="errors", json_schema_extra=POSITIONAL)
    since: str | None = Field(None, description="ISO time or 30m / 2h / 1d")


class IncidentArgs(Args):
    what: Literal["new"] = Field(description="new", json_schema_extra=POSITIONAL)
    title: str = Field(min_length=1, max_length=200, description="what happened, in a line")

    _clean_title = field_validator("title")(_free_text)


class ReportArgs(Args):
    kind: Literal["daily", "weekly", "run"] = Field(
        description="daily, weekly, or run (one run, by id)", json_schema_extra=POSITIONAL)
    run_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$", json_schema_extra=POSITIONAL,
        description="with `run`: the run id (`last`: the newest run)")
    date: str | None = Field(
        None, pattern=r"^(\d{4}-\d{2}-\d{2}|today|yesterday)$",
        description="YYYY-MM-DD, today or yesterday (default: the last complete day/week)")
    png: Path | None = Field(None, description="also write the chart PNG here")
    json_output: bool = Field(False, alias="json", description="print one JSON object")

    @model_validator(mode="after")
    def _run_needs_an_id(self) -> ReportArgs:
        if self.kind == "run" and self.run_id is None:
            raise ValueError("`report run` needs a run id (or `last`)")
        if self.kind == "run" and self.date is not None:
            raise ValueError("--date is for daily and weekly reports, not a run")
        if self.kind != "run" and self.run_id is not None:
            raise ValueError(f"a {self.kind} report takes --date, not a run id")
        return self


class PreflightArgs(Args):
    dry_run: bool = Field(False, description="skip network checks (SKIP never counts as PASS)")
    json_output: bool = Field(False, alias="json", description="print the report as JSON")
    output: Path | None = Field(None, description="also write the JSON report here")
    phase: int = Field(1, ge=1, le=3, description="the phase whose balances are checked")


class ArmArgs(Args):
    # A string on purpose: the ARM's own strict parser decides what a number is.
    usd: str = Field(description="per-leg cap in USD, 10..1000", json_schema_extra=POSITIONAL)
    confirm: str | None = Field(None, description="refused for live: type the phrase")


class OverrideArgs(Args):
    phase: int = Field(ge=1, le=3, description="the live phase to allow next")
    reason: str = Field(min_length=3, max_length=200, description="why (audited)")

    _clean_reason = field_validator("reason")(_free_text)
    confirm: str | None = Field(None, description="the confirmation phrase (for scripts)")


class DrillArgs(Args):
    paper_seconds: float = Field(40.0, ge=20, le=600, description="the paper phase 1 rung")
    live_seconds: float = Field(30.0, ge=10, le=600, description="most time to the first live entry")
    data_dir: Path | None = Field(None, description="keep the drill's journal here")


class NotifyArgs(Args):
    what: Literal["test"] = Field("test", description="test", json_schema_extra=POSITIONAL)


class ConfigArgs(Args):
    what: Literal["check"] = Field(description="check", json_schema_extra=POSITIONAL)


@dataclass(frozen=True, slots=True)
class Command:
    """One row: what a command is called, takes, needs, risks and does.

    `method` names the OperatorService method the command calls (its parameters are
    bound from the row's Args by name, plus `actor` and `args`); None for commands a
    surface carries out itself (help, the CLI's local tools). `confirm` is the phrase
    a terminal user types for a risk-adding command, formatted with the arguments;
    `confirm_by_flag` says whether `--confirm PHRASE` may stand in for typing it, and
    `confirm_note` what to do instead when it may not.
    `offline` commands run in the CLI's own process when no engine answers; the
    others need the running engine. `audited` is False only for the surfaces'
    internal reads (following a run), never for an operator's command.
    """

    name: str
    help: str
    args: type[Args] = NoArgs
    min_role: Role = Role.VIEWER
    adds_risk: bool = False
    method: str | None = None
    cli: bool = True
    telegram: bool = True
    confirm: str | None = None
    impact: str = ""
    confirm_by_flag: bool = True
    confirm_note: str = ""  # said when a terminal confirmation is not possible
    offline: bool = True
    audited: bool = True
    timeout_s: float = 10.0
    tolerant_settings: bool = False  # malformed unrelated settings warn, never refuse

    @property
    def internal(self) -> bool:
        return not (self.cli or self.telegram)


COMMANDS: tuple[Command, ...] = (
    Command("help", "list the commands", cli=False),
    Command("whoami", "your user id and role", cli=False),
    Command("version", "which arbops is running: version, commit, Python", method="version"),
    Command("demo", "paper session on the simulated market with live progress", DemoArgs,
            telegram=False),
    Command("serve", "run the service (engine, control channel; Telegram when configured)",
            telegram=False),
    Command("run", "run a phase (paper; live needs ARM)", RunArgs, Role.OPERATOR, adds_risk=True,
            method="start_run"),
    Command("status", "mode, trading state, ARM, run progress, memory", StatusArgs,
            method="full_status"),
    Command("stop", "graceful stop of the running phase: close positions, final KPI",
            ReasonArgs, Role.OPERATOR, method="stop", offline=False),
    Command("kill", "HALT now, cancel all orders, flatten, report (one step)", ReasonArgs,
            method="kill", tolerant_settings=True),
    Command("reset", "leave HALTED after a kill (shows what is still open first)", ResetArgs,
            Role.OPERATOR, adds_risk=True, method="reset", confirm="RESET",
            impact="leave HALTED and allow trading again"),
    Command("pause", "REDUCING: exits only, no new entries", ReasonArgs, Role.OPERATOR,
            method="pause", offline=False),
    Command("resume", "back to ACTIVE from REDUCING", ConfirmArgs, Role.OPERATOR,
            adds_risk=True, method="resume", confirm="RESUME",
            impact="resume entries (back to ACTIVE)", offline=False),
    Command("audit", "recent audit rows", AuditArgs, method="audit_rows"),
    Command("logs", "errors, exceptions and failures from the logs (runbook 5.3)", LogsArgs,
            Role.OPERATOR),
    Command("config", "check the settings", ConfigArgs, telegram=False),
    Command("positions", "open positions: entry and current premium, PnL, age", JsonArgs,
            method="positions"),
    Command("kpi", "the last finished run's KPI and its gate, check by check", JsonArgs,
            method="last_kpi"),
    Command("trades", "the newest closed round trips: PnL, fees, holding time", TradesArgs,
            method="recent_trades"),
    Command("profit", "strategy, inventory and total PnL today, this week, all time",
            JsonArgs, method="profit"),
    Command("performance", "PnL and round trips per symbol, all time", JsonArgs,
            method="performance"),
    Command("daily", "PnL and round trips per day (report zone), today first", DailyArgs,
            method="daily_pnl_table"),
    Command("show_config", "effective settings and where each came from (secrets masked)",
            JsonArgs, Role.OPERATOR, method="show_config"),
    Command("preflight", "preflight checks (runbook 1.1); exit 0 only when ready for live",
            PreflightArgs, method="preflight", timeout_s=120.0),
    Command("arm", "ARM live trading for one phase start (expires in 600 s)", ArmArgs,
            Role.OPERATOR, adds_risk=True, method="arm", confirm="ARM {usd}",
            impact="ARM live trading for one phase start", confirm_by_flag=False,
            confirm_note="scripts use the runbook's LIVE_ARM_ACK/LIVE_ARM_AT/"
                         "LIVE_MAX_NOTIONAL_USD instead"),
    Command("disarm", "drop the ARM (one step)", NoArgs, Role.OPERATOR, method="disarm"),
    Command("ladder", "the ramp-up ladder: which live phase may start next", JsonArgs,
            method="ladder_status"),
    Command("override", "admin: allow a live phase the ladder would refuse (audited)",
            OverrideArgs, Role.ADMIN, adds_risk=True, method="ladder_override",
            confirm="OVERRIDE {phase}",
            impact="let live phase {phase} start outside the ladder (audited)"),
    Command("balance", "both venues' balances (runbook 5.2)", JsonArgs, method="balances",
            timeout_s=60.0),
    Command("reconcile", "journal vs venues: open orders, positions, balance drift", JsonArgs,
            Role.OPERATOR, method="reconcile", timeout_s=60.0),
    Command("record", "record market snapshots for --data-source replay", RecordArgs,
            Role.OPERATOR, telegram=False),
    Command("drill", "rehearse the LIVE runbook on loopback against the emulator", DrillArgs,
            telegram=False),
    Command("backtest", "replay recordings through the engine on their own clock, fast",
            BacktestArgs, Role.OPERATOR, telegram=False, timeout_s=3600.0),
    Command("report", "daily, weekly or one run's report, with its chart (runbook 7.2)",
            ReportArgs),
    Command("guards", "guard thresholds and headroom", JsonArgs, method="guard_status"),
    Command("incident", "open an incident report by hand (runbook 7.1)", IncidentArgs,
            Role.OPERATOR),
    Command("notify", "send a test alert through the notifier (runbook 8.1)", NotifyArgs,
            method="send_test_alert", offline=False),
    # Internal reads of the surfaces (a CLI following a run in the service, reset's
    # preview): not operator commands, so neither listed nor audited.
    Command("still_open", "what the journal still has open", cli=False, telegram=False,
            method="still_open", audited=False),
    Command("last_run", "the last finished run's result", cli=False, telegram=False,
            method="last_run_result", audited=False),
    Command("progress", "the running phase's progress", cli=False, telegram=False,
            method="full_status", audited=False),
)

BY_NAME = {c.name: c for c in COMMANDS}


def validate_args(command: Command, data: Mapping[str, Any], *, flags: bool = False) -> Args:
    """The row's Args from raw data, or BadInput naming every bad field.

    `flags` names fields the way the CLI spells them (`--duration-minutes`)."""
    try:
        return command.args.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = "-".join(str(x) for x in err["loc"]) if flags else ".".join(
                str(x) for x in err["loc"])
            where = ("--" + loc.replace("_", "-")) if flags and loc else loc
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise BadInput("bad arguments:\n  " + "\n  ".join(problems)) from None


def bind(command: Command, target: object, args: Args, actor: str) -> tuple[Any, dict[str, Any]]:
    """The service method a row names and its keyword arguments, bound by name: a
    parameter called `actor` gets who asked, `args` the whole model, any other one
    the model's field of that name. A row the method cannot serve is a bug."""
    if command.method is None:
        raise ServiceError(f"{command.name!r} is not served by the engine")
    method = getattr(target, command.method)
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(method).parameters.items():
        if name == "actor":
            kwargs[name] = actor
        elif name == "args":
            kwargs[name] = args
        elif name in type(args).model_fields:
            kwargs[name] = getattr(args, name)
        elif param.default is inspect.Parameter.empty:
            raise TypeError(f"{command.name}: {command.method}() needs {name!r}, which "
                            f"{type(args).__name__} does not have")
    return method, kwargs


async def invoke(command: Command, target: object, args: Args, actor: str) -> dict[str, Any]:
    """Call the row's method on `target` (the service) and return a JSON-able dict."""
    method, kwargs = bind(command, target, args, actor)
    result = method(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return as_payload(result)


def as_payload(result: Any) -> dict[str, Any]:
    """A reply body: dicts as they are, dataclasses as dicts, lists as {"rows": [...]}."""
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return dataclasses.asdict(result)
    if isinstance(result, list | tuple):
        return {"rows": list(result)}
    raise TypeError(f"a command returned {type(result).__name__}, not a reply")
