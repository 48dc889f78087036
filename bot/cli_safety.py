"""`arbops preflight`, `arm`, `disarm`, `ladder`, `override` (R-S1..R-S4).

Through the running service when there is one (one engine per data dir), else
in this process against the journal. ARM is two-step: the impact is shown and
the operator types the phrase on a terminal; no flag skips it (R-S2) - scripts
use the runbook's LIVE_ARM_* environment variables instead.
"""
from __future__ import annotations

import asyncio
import sys
from typing import Any

from bot.cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, CliError, print_json
from core.commands import ArmArgs, NoArgs, OverrideArgs, PreflightArgs
from core.control_channel import EngineNotRunning, request_sync, socket_path_for
from core.settings import Settings

ACTOR = "cli"


def _service_call(settings: Settings, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    """The running service's answer, or this process's when none runs."""
    try:
        reply = request_sync(socket_path_for(settings.data_dir), cmd,
                             {"actor": ACTOR, **args}, timeout=120.0)
    except EngineNotRunning:
        return asyncio.run(_here(settings, cmd, args))
    if not reply.get("ok"):
        raise CliError(str(reply.get("error")), int(reply.get("code", EXIT_FAILED)))
    result: dict[str, Any] = reply["result"]
    return result


async def _here(settings: Settings, cmd: str, args: dict[str, Any]) -> dict[str, Any]:
    from bot.app import build_service
    from core.service import ServiceError

    service = await build_service(settings)
    try:
        return await service._control(cmd, {"actor": ACTOR, **args})
    except ServiceError as exc:
        raise CliError(str(exc), exc.code) from None
    finally:
        await service.safety.close()
        await service.store.close()


def cmd_preflight(settings: Settings, args: PreflightArgs) -> int:
    from core.safety.preflight import exit_code, write_report

    report = _service_call(settings, "preflight", {"dry_run": args.dry_run, "phase": args.phase})
    if args.output is not None:
        try:
            write_report(report, args.output)
        except OSError as exc:
            raise CliError(f"--output: cannot write {args.output}: {exc}") from None
    print_json(report)
    s = report["summary"]
    print(f"preflight: {s['passed']} passed, {s['failed']} failed, {s['warnings']} warnings, "
          f"{s['skipped']} skipped; ready_for_live={s['ready_for_live']}", file=sys.stderr)
    return exit_code(report)


def cmd_arm(settings: Settings, args: ArmArgs) -> int:
    from core.clock import SystemClock
    from core.safety.arming import ArmState

    clock = SystemClock()
    preview = ArmState.arm_command(args.usd, clock.time(), clock.monotonic(), ACTOR)
    failures = preview.check(clock.time(), clock.monotonic())
    if failures:
        raise CliError("ARM refused: " + "; ".join(map(str, failures)), EXIT_REFUSED)
    text = preview.describe()["text"]
    if args.confirm is not None:
        raise CliError("no flag confirms an ARM: type the phrase on a terminal, or use the "
                       "runbook's LIVE_ARM_ACK/LIVE_ARM_AT/LIVE_MAX_NOTIONAL_USD", EXIT_REFUSED)
    if not sys.stdin.isatty():
        raise CliError("ARM needs a terminal for its confirmation; scripts use the "
                       "LIVE_ARM_* environment variables", EXIT_REFUSED)
    phrase = f"ARM {args.usd}"
    print(text)
    typed = input(f"Type {phrase!r} to arm: ").strip()
    if typed != phrase:
        raise CliError("not confirmed; nothing changed", EXIT_REFUSED)
    result = _service_call(settings, "arm", {"usd": args.usd})
    print(f"ARMED: cap ${result.get('arm_cap_usd')} per leg, expires {result.get('arm_expires_at')}")
    return EXIT_OK


def cmd_disarm(settings: Settings, args: NoArgs) -> int:
    result = _service_call(settings, "disarm", {})
    print(f"disarmed (armed={result.get('armed')})")
    return EXIT_OK


def cmd_ladder(settings: Settings, args: NoArgs) -> int:
    print_json(_service_call(settings, "ladder", {}))
    return EXIT_OK


def cmd_override(settings: Settings, args: OverrideArgs) -> int:
    from bot.cli_commands import _confirm

    phrase = f"OVERRIDE {args.phase}"
    _confirm(phrase, f"let live phase {args.phase} start outside the ladder (audited)",
             args.confirm)
    print_json(_service_call(settings, "override", {"phase": args.phase,
                                                    "reason": args.reason}))
    return EXIT_OK
