"""`arbops preflight`, `arm`, `disarm`, `ladder`, `override` (R-S1..R-S4).

Through the running service when there is one (one engine per data dir), else
in this process against the journal. ARM is two-step: the impact is shown and
the operator types the phrase on a terminal; no flag skips it (R-S2) - scripts
use the runbook's LIVE_ARM_* environment variables instead.
"""
from __future__ import annotations

import sys

from bot.cli import print_json
from bot.cli.client import EngineClient
from bot.views import ladder_lines, preflight_lines, zone
from core.commands import ArmArgs, JsonArgs, NoArgs, OverrideArgs, PreflightArgs
from core.config.settings import Settings
from core.errors import BadInput, ExitCode, Refused


def cmd_preflight(settings: Settings, args: PreflightArgs) -> int:
    from core.safety.preflight import exit_code, write_report

    report = EngineClient(settings).ask_or_here("preflight", args)
    if args.output is not None:
        try:
            write_report(report, args.output)
        except OSError as exc:
            raise BadInput(f"--output: cannot write {args.output}: {exc}") from None
    if args.json_output:
        print_json(report)
    else:
        print("\n".join(preflight_lines(report)))
    return exit_code(report)


def preview_arm(settings: Settings, args: ArmArgs) -> None:
    """The ARM's own checks and what it will allow, before the phrase is asked for."""
    from core.clock import SystemClock
    from core.safety.arming import ArmState

    clock = SystemClock()
    preview = ArmState.arm_command(args.usd, clock.time(), clock.monotonic(), "cli")
    failures = preview.check(clock.time(), clock.monotonic())
    if failures:
        raise Refused("ARM refused: " + "; ".join(map(str, failures)))
    if args.confirm is None and sys.stdin.isatty():
        print(preview.describe()["text"])


def cmd_arm(settings: Settings, args: ArmArgs) -> int:
    result = EngineClient(settings).ask_or_here("arm", args)
    print(f"ARMED: cap ${result.get('arm_cap_usd')} per leg, expires {result.get('arm_expires_at')}")
    return ExitCode.OK


def cmd_disarm(settings: Settings, args: NoArgs) -> int:
    result = EngineClient(settings).ask_or_here("disarm", args)
    print(f"disarmed (armed={result.get('armed')})")
    return ExitCode.OK


def cmd_ladder(settings: Settings, args: JsonArgs) -> int:
    result = EngineClient(settings).ask_or_here("ladder", args)
    if args.json_output:
        print_json(result)
    else:
        print("\n".join(ladder_lines(result, zone(settings))))
    return ExitCode.OK


def cmd_override(settings: Settings, args: OverrideArgs) -> int:
    result = EngineClient(settings).ask_or_here("override", args)
    print(f"ladder override recorded for live phase {args.phase}")
    print("\n".join(ladder_lines(result, zone(settings))))
    return ExitCode.OK
