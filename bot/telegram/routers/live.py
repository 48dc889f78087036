"""LIVE safety (R-S1..R-S4): /preflight, /arm <usd> (two steps), /disarm (one step),
/ladder, /override <phase> <reason> (admin, two steps, audited)."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message
from pydantic import ValidationError

from bot.telegram.context import Ctx, Plan, Reply
from bot.telegram.format import h, lines_html
from bot.telegram.table import flags_for
from bot.views import ladder_lines, preflight_lines, zone
from core.commands import OverrideArgs
from core.errors import UsageError
from core.safety.arming import parse_cap


async def cmd_preflight(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    """/preflight [phase 1|2|3] [dry]"""
    phase, dry = 1, False
    for tok in (command.args or "").lower().split():
        if tok in ("1", "2", "3"):
            phase = int(tok)
        elif tok in ("dry", "dry_run", "dry-run"):
            dry = True
        else:
            raise UsageError("usage: /preflight [1|2|3] [dry]")
    result = await ctx.service.preflight(dry, phase)
    ready = (result.get("summary") or {}).get("ready_for_live")
    lines = preflight_lines(result, all_checks=False)
    return Reply(f"<b>{h(lines[0])}</b>\n" + lines_html(lines[1:]),
                 outcome=f"ok: ready_for_live={bool(ready)}")


async def cmd_arm(message: Message, command: CommandObject, ctx: Ctx) -> Plan:
    raw = (command.args or "").strip().removeprefix("$")
    cap, failures = parse_cap(raw if raw else None)
    if failures or cap is None:
        why = "; ".join(f.message if hasattr(f, "message") else str(f) for f in failures)
        raise UsageError(f"usage: /arm <usd>, a plain number in [10, 1000]: {why}")
    async def execute(c: Ctx) -> Reply:
        r = await c.service.arm(raw, c.actor)
        return Reply(f"🔑 <b>ARMED</b> for one LIVE phase start: cap ${h(r.get('arm_cap_usd', cap))}"
                     f" per leg, expires {h(r.get('arm_expires_at') or r.get('expires_at'))}",
                     outcome=f"ok: armed ${cap}")

    impact = (f"ARM <b>LIVE</b> trading for <b>one</b> phase start: per-leg order cap "
              f"<b>${h(cap)}</b>. It expires 600 s after arming; the next live phase start "
              "uses it up.")
    return Plan("arm", {"usd": raw}, impact, execute)


async def cmd_disarm(message: Message, ctx: Ctx) -> Reply:
    r = await ctx.service.disarm(ctx.actor)
    return Reply(f"ARM dropped; armed now: {h(r.get('armed') if isinstance(r, dict) else r)}")


async def cmd_ladder(message: Message, ctx: Ctx) -> Reply:
    r = await ctx.service.ladder_status()
    return Reply("<b>ramp-up ladder</b>\n" + lines_html(ladder_lines(r, zone(ctx.settings))))


async def cmd_override(message: Message, command: CommandObject, ctx: Ctx) -> Plan:
    phase_text, _, reason = (command.args or "").strip().partition(" ")
    try:
        args = OverrideArgs.model_validate({"phase": phase_text or None,
                                            "reason": " ".join(reason.split())})
    except ValidationError:
        raise UsageError("usage: /override <phase 1|2|3> <reason, 3..200 characters>") from None
    async def execute(c: Ctx) -> Reply:
        r = await c.service.ladder_override(args.phase, c.actor, args.reason)
        return Reply(f"ladder override recorded for LIVE phase {args.phase}\n"
                     + lines_html(ladder_lines(r, zone(c.settings))),
                     outcome=f"ok: override phase {args.phase}")

    impact = (f"allow <b>LIVE phase {args.phase}</b> next although the ramp-up ladder would "
              f"refuse it. Reason: {h(args.reason)}. Recorded and audited.")
    return Plan("override", {"phase": args.phase, "reason": args.reason}, impact, execute)


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("preflight", cmd_preflight), ("arm", cmd_arm), ("disarm", cmd_disarm),
                     ("ladder", cmd_ladder), ("override", cmd_override)):
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    return router
