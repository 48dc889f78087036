"""LIVE safety (issue #5): /preflight, /arm <usd> (two steps), /disarm (one step).

The table marks these "not available yet" until OperatorService grows
`preflight()`, `arm(cap_usd, actor)` and `disarm(actor)`; the gate answers for
them until then, and these handlers are ready for the day the flags flip.
"""
from __future__ import annotations

import math

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message

from bot.telegram.context import Ctx, Plan, Reply, UsageError
from bot.telegram.format import h
from bot.telegram.routers._util import kv_text, need
from bot.telegram.table import command as table_command
from bot.telegram.table import flags_for

ARM_MIN_USD, ARM_MAX_USD = 10.0, 1000.0  # R-S2


async def cmd_preflight(message: Message, ctx: Ctx) -> Reply:
    result = await need(ctx.service, "preflight", table_command("preflight").pending_issue)()
    summary = result.get("summary", {}) if isinstance(result, dict) else {}
    lines = [f"<b>preflight</b>: ready for live <b>{'yes' if summary.get('ready_for_live') else 'NO'}"
             f"</b> · pass {h(summary.get('passed'))} fail {h(summary.get('failed'))} "
             f"warn {h(summary.get('warnings'))} skip {h(summary.get('skipped'))}"]
    for c in (result.get("checks", []) if isinstance(result, dict) else []):
        if c.get("status") != "PASS":
            lines.append(f"{h(c.get('status'))} {h(c.get('name'))}: {h(c.get('message'))}")
    return Reply("\n".join(lines))


async def cmd_arm(message: Message, command: CommandObject, ctx: Ctx) -> Plan:
    text = (command.args or "").strip().lstrip("$")
    try:
        cap = float(text)
    except ValueError:
        raise UsageError(f"usage: /arm <usd> with usd in [{ARM_MIN_USD:g}, {ARM_MAX_USD:g}]"
                         ) from None
    if not math.isfinite(cap) or not ARM_MIN_USD <= cap <= ARM_MAX_USD:
        raise UsageError(f"the cap must be in [{ARM_MIN_USD:g}, {ARM_MAX_USD:g}] USD")
    arm = need(ctx.service, "arm", table_command("arm").pending_issue)

    async def execute(c: Ctx) -> Reply:
        r = await arm(cap, c.actor)
        return Reply(f"🔑 <b>ARMED</b> for one LIVE phase: cap ${cap:g} per leg\n{kv_text(r)}")

    impact = (f"ARM <b>LIVE</b> trading for <b>one</b> phase: per-leg order cap <b>${cap:g}</b>. "
              "The next live phase start consumes it; it expires after 600 s.")
    return Plan("arm", {"cap_usd": cap}, impact, execute)


async def cmd_disarm(message: Message, ctx: Ctx) -> Reply:
    r = await need(ctx.service, "disarm", table_command("disarm").pending_issue)(ctx.actor)
    return Reply(f"ARM dropped\n{kv_text(r)}")


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("preflight", cmd_preflight), ("arm", cmd_arm), ("disarm", cmd_disarm)):
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    return router
