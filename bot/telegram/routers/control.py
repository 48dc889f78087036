"""Trading-state commands: /kill, /stop and /pause (one step, idempotent); /resume and
/reset (two steps: the handler only plans, Confirm executes)."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message

from bot.telegram.context import Ctx, Plan, Reply
from bot.telegram.format import h
from bot.telegram.kill_report import follow_kill
from bot.telegram.parsing import parse_reason
from bot.telegram.table import flags_for
from core.errors import ExitCode, ServiceError


async def cmd_kill(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    """HALT first, talk later: the reply is sent only after the kill has begun."""
    reason = parse_reason(command.args, "telegram /kill")
    incident_before = getattr(ctx.service, "last_incident", None)
    r = await ctx.service.kill(reason, ctx.actor)
    follow = ctx.deps is not None and ctx.chat_id is not None
    if r.run_id is not None:
        text = (f"🛑 <b>HALTED</b>. run <code>{h(r.run_id)}</code>: {h(r.message)}. "
                + ("The final KPI and the incident report follow here." if follow else ""))
    elif r.already_halted:
        follow = False
        text = "🛑 already HALTED; nothing else to do. Inspect, then /reset."
    else:
        text = f"🛑 <b>HALTED</b>: {h(r.message)}." + (
            " The incident report follows here." if follow else "")
    if follow:
        assert ctx.deps is not None and ctx.chat_id is not None
        follow_kill(ctx.deps, ctx.chat_id, r.run_id, incident_before)
    held = [k for k, v in r.stores.items() if v == "HALTED"]
    waiting = {k: v for k, v in r.stores.items() if v != "HALTED"}
    text += f"\nKept by: {h(', '.join(held) or 'memory only')}"
    if waiting:  # HALTED all the same: the engine refuses every order from this instant
        text += "; not yet: " + h("; ".join(f"{k} ({v})" for k, v in waiting.items()))
    return Reply(text, outcome=f"ok: {r.message}" + (" (already halted)" if r.already_halted
                                                     else ""))


async def cmd_stop(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    """The runbook's graceful stop (one Ctrl+C): no new entries, positions closed,
    final KPI. One step: it only reduces risk."""
    reason = parse_reason(command.args, "telegram /stop")
    r = ctx.service.stop(reason, ctx.actor)
    if r["action"] == "already closing":
        return Reply(f"run <code>{h(r['run_id'])}</code> is already closing gracefully; "
                     "/kill halts it at once.", outcome="ok: already closing")
    return Reply(f"⏹ run <code>{h(r['run_id'])}</code> closing gracefully: no new entries, "
                 "positions closed, then the final KPI. /kill halts it at once.",
                 outcome=f"ok: closing {r['run_id']}")


async def cmd_pause(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    reason = parse_reason(command.args, "telegram /pause")
    r = ctx.service.pause(reason)
    state = r.get("trading_state")
    if r.get("changed"):
        return Reply(f"⏸ <b>{h(state)}</b>: exits only, no new entries. /resume to go back.")
    return Reply(f"state is {h(state)}; nothing changed", outcome=f"ok: unchanged ({state})")


async def cmd_resume(message: Message, command: CommandObject, ctx: Ctx) -> Plan:
    reason = parse_reason(command.args, "telegram /resume")
    st = ctx.service.status()
    state = st.get("trading_state")
    if state == "HALTED":
        raise ServiceError("HALTED: only /reset leaves it")
    if state == "ACTIVE":
        raise ServiceError("already ACTIVE: nothing to resume", exit_code=ExitCode.FAILED)

    async def execute(c: Ctx) -> Reply:
        r = c.service.resume(reason)
        return Reply(f"▶️ <b>{h(r.get('trading_state'))}</b>: new entries allowed again",
                     outcome=f"ok: {r.get('trading_state')}")

    run = st.get("run")
    impact = (f"trading state <b>{h(state)} → ACTIVE</b>: the engine takes new entries again"
              + (f" in run <code>{h(run['run_id'])}</code>" if run else "") + ".")
    return Plan("resume", {"reason": reason}, impact, execute)


async def cmd_reset(message: Message, command: CommandObject, ctx: Ctx) -> Plan:
    st = ctx.service.status()
    if st.get("trading_state") != "HALTED":
        raise ServiceError(f"not HALTED (state {st.get('trading_state')}): nothing to reset",
                           exit_code=ExitCode.FAILED)
    if st.get("run"):
        raise ServiceError("a run is still closing; wait for its final KPI")
    left = await ctx.service.still_open()
    orders, positions = len(left["open_orders"]), len(left["open_positions"])

    async def execute(c: Ctx) -> Reply:
        r = await c.service.reset(c.actor)
        return Reply(f"✅ <b>{h(r.get('trading_state'))}</b> again. Still open per the journal: "
                     f"{len(r.get('open_orders', []))} order(s), "
                     f"{len(r.get('open_positions', []))} position(s).",
                     outcome=f"ok: {r.get('trading_state')}")

    impact = (f"leave <b>HALTED</b> ({h(st.get('halted_reason'))}) → <b>ACTIVE</b>.\n"
              f"The journal still shows {orders} open order(s) and {positions} open "
              "position(s)" + (": check them first (runbook 6.1)." if orders or positions
                               else "."))
    return Plan("reset", {"open_orders": orders, "open_positions": positions}, impact, execute)


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("kill", cmd_kill), ("stop", cmd_stop), ("pause", cmd_pause),
                     ("resume", cmd_resume), ("reset", cmd_reset)):
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    return router
