"""Read-only commands: /help /whoami /status /positions /kpi /guards /audit /logs;
/incident new <title> (writes a blank post-mortem file, changes no trading state)."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aiogram import Router
from aiogram.filters import Command as CommandFilter
from aiogram.filters import CommandObject
from aiogram.types import Message

from bot.telegram.context import Ctx, Reply
from bot.telegram.format import h, kpi_text, money, pre, status_text
from bot.telegram.parsing import parse_model_args
from bot.telegram.table import ROLE_NAMES, command, flags_for, help_text
from bot.views import guard_lines, positions_lines
from core.commands import AuditArgs, IncidentArgs, LogsArgs
from core.errors import UsageError
from core.monitoring.incident import open_by_hand
from core.monitoring.log_extract import extract_errors, parse_since

_LOG_ENTRIES = 6  # the newest; a phone screen, not a terminal
_LOG_ENTRY_CHARS = 400


async def cmd_help(message: Message, ctx: Ctx) -> Reply:
    return Reply(help_text(ctx.role))


async def cmd_whoami(message: Message, ctx: Ctx) -> Reply:
    return Reply(f"user <code>{ctx.user_id}</code> · role <b>{ROLE_NAMES[ctx.role]}</b> · "
                 f"chat <code>{h(ctx.chat_id)}</code>")


async def cmd_version(message: Message, ctx: Ctx) -> Reply:
    v = ctx.service.version()
    return Reply(f"arbops <b>{h(v['version'])}</b> · commit <code>{h(v['commit'])}</code> · "
                 f"Python {h(v['python'])}")


async def cmd_status(message: Message, ctx: Ctx) -> Reply:
    """The status, and while a run trades, its open positions as a table (one row per
    position: symbol, direction, entry and current premium, PnL, age)."""
    st = await ctx.service.full_status()
    text = status_text(st)
    if st.get("run"):
        rows = await ctx.service.positions()
        if rows:
            text += "\n" + pre(positions_lines(rows, ctx.service.clock.time()))
    return Reply(text)


async def cmd_positions(message: Message, ctx: Ctx) -> Reply:
    rows = await ctx.service.positions()
    return Reply(pre(positions_lines(rows, ctx.service.clock.time())))


async def cmd_kpi(message: Message, ctx: Ctx) -> Reply:
    service = ctx.service
    parts = []
    run = service.status().get("run")
    if run:
        parts.append(f"<b>running</b> <code>{h(run['run_id'])}</code>: round trips "
                     f"{h(run['round_trips'])} · strategy PnL {money(run['pnl_usd'])} · "
                     f"inventory {money(run.get('inventory_pnl_usd'))} · win "
                     f"{float(run.get('win_rate') or 0) * 100:.0f}%")
    parts.append("<b>last finished</b>\n" + kpi_text(await service.last_kpi()))
    return Reply("\n".join(parts))


async def cmd_guards(message: Message, ctx: Ctx) -> Reply:
    lines = guard_lines(ctx.service.guard_status())
    if len(lines) == 1:
        return Reply(h(lines[0]))
    head, body = lines[0], lines[1:]
    return Reply(f"<b>{h(head)}</b>\n{pre(body)}")


async def cmd_audit(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    args = parse_model_args(AuditArgs, command.args)
    assert isinstance(args, AuditArgs)
    rows = await ctx.service.audit_rows(min(args.limit, 30))
    lines = [f"<b>last {len(rows)} audit rows</b>"]
    for r in rows:
        when = time.strftime("%m-%d %H:%M:%S", time.gmtime(r["ts"]))
        lines.append(f"{when} {h(r['surface'])} {h(r['user_id'])} {h(r['role'])} "
                     f"{h(r['command'])} → {h(str(r['outcome'])[:80])}")
    return Reply("\n".join(lines))


async def cmd_logs(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    """/logs [errors] [since]: runbook 5.3's error extract, newest entries last.
    Log lines are secret-redacted when written; they are escaped here."""
    args = parse_model_args(LogsArgs, command.args or "errors")
    assert isinstance(args, LogsArgs)
    try:
        since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # Reading and scanning the log files is file I/O: keep it off the engine's loop.
    entries = await asyncio.to_thread(extract_errors, ctx.settings.data_dir / "logs", since)
    head = f"<b>{len(entries)} error entries</b>" + (f" since {h(args.since)}" if since else "")
    if not entries:
        return Reply(head, outcome="ok: 0 entries")
    shown = entries[-_LOG_ENTRIES:]
    body = "\n\n".join(h(e if len(e) <= _LOG_ENTRY_CHARS else e[:_LOG_ENTRY_CHARS] + " …")
                        for e in shown)
    more = (f"\n(the newest {len(shown)}; `arbops logs errors` on the host prints all)"
            if len(entries) > len(shown) else "")
    return Reply(f"{head}{more}\n<pre>{body}</pre>", outcome=f"ok: {len(entries)} entries")


async def cmd_incident(message: Message, command: CommandObject, ctx: Ctx) -> Reply:
    """/incident new <title>: runbook §7.1's report opened by hand."""
    what, _, title = (command.args or "").strip().partition(" ")
    try:
        args = IncidentArgs.model_validate({"what": what.lower() or None,
                                            "title": " ".join(title.split())})
    except ValueError:
        raise UsageError("usage: /incident new <title, 1..200 characters>") from None
    status = ctx.service.status()
    path = await asyncio.to_thread(open_by_hand, ctx.settings.data_dir, args.title, ctx.actor,
                                   status)
    return Reply(f"📝 incident report opened: <code>{h(path)}</code>\nFill in Cause and "
                 "Prevention on the host.", outcome=f"ok: {path.name}")


def make_router() -> Router:
    router = Router(name=__name__)
    for name, fn in (("help", cmd_help), ("whoami", cmd_whoami), ("version", cmd_version),
                     ("status", cmd_status),
                     ("positions", cmd_positions), ("kpi", cmd_kpi), ("guards", cmd_guards),
                     ("audit", cmd_audit), ("logs", cmd_logs), ("incident", cmd_incident)):
        command(name)  # KeyError here means the table lost a command this router serves
        router.message.register(fn, CommandFilter(name, ignore_case=True), flags=flags_for(name))
    # "start" is what Telegram clients send first; it shows the help.
    router.message.register(cmd_help, CommandFilter("start", ignore_case=True),
                            flags=flags_for("help"))
    return router
