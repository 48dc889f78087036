"""/run <phase> [paper|live] [seconds] [topN] ...: plans a phase; Confirm starts it."""
from __future__ import annotations

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message

from bot.telegram.context import Ctx, Plan, Reply
from bot.telegram.format import h
from bot.telegram.parsing import parse_run_args
from bot.telegram.routers._util import duration
from bot.telegram.table import flags_for
from core.errors import ServiceError


async def cmd_run(message: Message, command: CommandObject, ctx: Ctx) -> Plan:
    args = parse_run_args(command.args)
    spec = ctx.service.plan_run(args)  # pure: refusals (live, data source) happen here
    st = ctx.service.status()
    if st.get("trading_state") == "HALTED":
        raise ServiceError(f"trading is HALTED ({st.get('halted_reason')}); inspect, then /reset")
    if st.get("run"):
        raise ServiceError(f"run {st['run']['run_id']} is already running")
    impact = (f"start a <b>{h(spec.mode.upper())}</b> phase <b>{spec.phase}</b> run: "
              f"universe top{spec.top_n}, {duration(spec.duration_s)}, cap "
              f"${spec.notional_usd:g} per leg, data {h(spec.data_source)}"
              + (f", seed {spec.seed}" if spec.seed is not None else "") + ".")
    if st.get("trading_state") == "REDUCING":
        impact += "\nTrading state is REDUCING: no entries until /resume."
    fields = args.model_dump(mode="json", exclude_none=True)

    async def execute(c: Ctx) -> Reply:
        started = await c.service.start_run(args)
        run_id = started.get("run_id")
        return Reply(f"▶️ run <code>{h(run_id)}</code> started: {h(spec.mode)} phase "
                     f"{spec.phase}, top{spec.top_n}, {duration(spec.duration_s)}",
                     outcome=f"ok: started {run_id}", live_run=run_id)

    return Plan("run", fields, impact, execute)


def make_router() -> Router:
    router = Router(name=__name__)
    router.message.register(cmd_run, CommandFilter("run", ignore_case=True),
                            flags=flags_for("run"))
    return router
