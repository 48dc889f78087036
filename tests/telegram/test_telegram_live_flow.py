"""Issue #6's full flow over Telegram in LIVE mode, end to end.

The real `arbops serve` runs as a subprocess with ARBITRAGE_ENV=live against the
exchange emulator (its fake keys; real ccxt polling, data source `real`), and
talks to the Telegram Bot API stand-in. Every step is a Telegram message or button:

/preflight -> /run 1 live ... -> Confirm, refused by the LIVE gate (not armed, ladder)
and saying so -> /override 1 -> Confirm (admin; the runbook's admin override instead
of a paper rung, to keep the test cheap) -> /arm 50 -> Confirm -> /run 1 live ... ->
Confirm -> /status -> /kill (a viewer) -> the final KPI says
`kill_switch_triggered: true`.

No LIVE_ARM_* variables are set: the ARM comes from `/arm 50` + Confirm. The run
must have placed an order on the emulator before the kill, so the kill has
something to cancel and flatten; afterwards the emulator shows no open order, the
ARM is used up and each command left an audit row.
"""
from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bot.drill.emulator import EmulatorHandle, start_emulator
from bot.drill.emulator.telegram_api import BotApiStandIn
from core.control_channel import request, socket_path_for
from core.errors import ControlChannelError
from tests.helpers.procs import (
    DB_NAME,
    ArbopsProc,
    arbops_env,
    read_json,
    run_cli,
    short_data_dir,
)
from tests.telegram.tg_support import ADMIN, ALERT_CHAT, ALLOWED, OPERATOR, VIEWER
from tests.venues.support import admin, emu_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# The preflight's secrets check wants `<5+ digits>:<30+ characters>`; the stand-in
# accepts any token in the URL.
TG_TOKEN = "424242:AAliveFlowTokenNotRealOnlyForTheFakeApi"
CAP = 50
# Inherited settings that could change what the serve does (the drill strips these).
_SCRUB_PREFIXES = ("ARBOPS_", "LIVE_ARM_", "UPBIT_", "BINANCE_", "TELEGRAM_", "REDIS_",
                   "PROMETHEUS_")
CONFIRM = "✅ Confirm"
_TAG = re.compile(r"</?[a-zA-Z-]+(\s[^<>]*)?>")
RUN_LIVE = "/run 1 live 120"  # live reads the real books by default


def live_env(data_dir: Path, emu: EmulatorHandle, telegram_url: str) -> dict[str, str]:
    env = {k: v for k, v in arbops_env(data_dir).items()
           if not k.upper().startswith(_SCRUB_PREFIXES)}
    env.update(emu_env(emu))
    env.update({
        "ARBITRAGE_ENV": "live", "ARBOPS_DATA_DIR": str(data_dir),
        "TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_CHAT_ID": str(ALERT_CHAT),
        "TELEGRAM_ALLOWED_USERS": ALLOWED, "TELEGRAM_API_BASE": telegram_url,
        "ARBOPS_UPBIT_WITHDRAWALS_DISABLED_ATTESTED": "true",
        "ARBOPS_REAL_POLL_INTERVAL_S": "0.3",
        # Orders within the run's first minute: the rehearsal profile's 30-s strategy.
        "ARBOPS_SIM_PROFILE": "rehearsal",
        # aiogram + ccxt put a live process near 250 MB (as in `arbops drill`).
        "ARBOPS_GUARD_MEMORY_ANOMALY_MB": "450", "ARBOPS_GATE_PHASE1_MEMORY_MB": "450",
    })
    return env


async def poll(predicate: Callable[[], Awaitable[Any]], timeout: float, what: str,
               on_timeout: Callable[[], str] | None = None, interval: float = 0.1) -> Any:
    """Await `predicate()` until truthy; the event loop (emulator, fake API) keeps running."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    extra = f"\n{on_timeout()}" if on_timeout is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last {last!r}){extra}")


class Flow:
    def __init__(self, fake: BotApiStandIn, emu: EmulatorHandle, serve: ArbopsProc,
                 data_dir: Path) -> None:
        self.fake, self.emu, self.serve, self.data_dir = fake, emu, serve, data_dir

    def output(self) -> str:
        return f"{self.serve.output()}\n--- telegram texts ---\n{self.fake.texts()}"

    async def status(self) -> dict[str, Any]:
        """`status` over the serve's control channel (what `arbops status --json` reads)."""
        try:
            reply = await request(socket_path_for(self.data_dir), "progress", {}, timeout=5)
        except ControlChannelError:
            return {}
        return dict(reply["result"]) if reply.get("ok") else {}

    async def control(self, cmd: str) -> dict[str, Any]:
        reply = await request(socket_path_for(self.data_dir), cmd, {}, timeout=5)
        assert reply.get("ok"), reply
        return dict(reply["result"])

    async def say(self, user: int, text: str, needle: str, timeout: float = 15.0) -> str:
        """`user` sends `text`; the first new message (not an edit) to them containing
        `needle`."""
        mark = len(self.fake.calls)
        self.fake.send_text(user, text)
        return await self._reply(user, needle, mark, timeout, text)

    async def confirm(self, user: int, needle: str, timeout: float = 15.0) -> str:
        """`user` presses Confirm under the newest prompt; the prompt is edited into
        the result, which must contain `needle`."""
        msg = self.fake.last_markup_message(user)
        buttons = self.fake.buttons(msg)
        assert CONFIRM in buttons, buttons
        mark = len(self.fake.calls)
        self.fake.press(user, buttons[CONFIRM], msg)
        return await self._reply(user, needle, mark, timeout, "Confirm", edits=True)

    async def _reply(self, chat: int, needle: str, mark: int, timeout: float, what: str,
                     edits: bool = False) -> str:
        methods = ("sendmessage", "editmessagetext") if edits else ("sendmessage",)

        def find() -> str | None:
            for c in self.fake.calls[mark:]:
                if c.status == 200 and c.method in methods and \
                        int(c.params.get("chat_id", 0)) == chat:
                    text = _visible(str(c.params.get("text", "")))
                    if needle in text:
                        return text
            return None

        async def check() -> str | None:
            if not self.serve.alive():
                raise AssertionError(f"arbops serve exited ({self.serve.returncode})\n"
                                     f"{self.output()}")
            return find()

        return str(await poll(check, timeout, f"{needle!r} in reply to {what!r}",
                              self.output, interval=0.05))

    def audit(self) -> list[dict[str, Any]]:
        con = sqlite3.connect(f"file:{self.data_dir / DB_NAME}?mode=ro", uri=True, timeout=5)
        con.row_factory = sqlite3.Row
        try:
            rows = con.execute("SELECT * FROM audit WHERE surface='telegram' ORDER BY id"
                               ).fetchall()
        finally:
            con.close()
        return [dict(r) for r in rows]

    async def orders(self) -> list[dict[str, Any]]:
        by_venue = await admin(self.emu, "GET", "/admin/orders")
        return [{**o, "venue": venue} for venue, recs in by_venue.items() for o in recs]


def _visible(text: str) -> str:
    """What the user sees of an HTML message."""
    return html.unescape(_TAG.sub("", text))


async def test_live_flow_preflight_arm_run_status_kill(tmp_path: Path) -> None:
    t_start = time.monotonic()
    with short_data_dir("aotglive") as data_dir:
        emu = await start_emulator(top_n=10, jump_rate_per_min=12.0)
        try:
            async with BotApiStandIn() as fake:
                serve = ArbopsProc(["serve"], data_dir, live_env(data_dir, emu, fake.url),
                                   name="serve", log_dir=tmp_path)
                try:
                    await _the_flow(Flow(fake, emu, serve, data_dir))
                finally:
                    await _stop(serve)
        finally:
            await emu.stop()
    print(f"live flow over Telegram: {time.monotonic() - t_start:.1f} s")


async def _stop(serve: ArbopsProc) -> None:
    """SIGTERM, wait; SIGKILL if it does not go (close() kills and reaps)."""
    try:
        if serve.alive():
            serve.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(serve.proc.wait, 20)
    finally:
        serve.close()


async def _the_flow(f: Flow) -> None:
    fake = f.fake

    # --- serve up: control channel answers, Telegram polling ------------------------
    async def ready() -> bool:
        if not f.serve.alive():
            raise AssertionError(f"arbops serve exited ({f.serve.returncode})\n{f.output()}")
        st = await f.status()
        return st.get("mode") == "live" and bool(fake.calls_to("getUpdates"))

    await poll(ready, 30, "arbops serve (live) answering and polling Telegram", f.output)
    st = await f.status()
    assert st["trading_state"] == "ACTIVE" and st["run"] is None
    assert st["armed"] is False, "no LIVE_ARM_* variables: nothing may be armed yet"

    # --- /preflight ------------------------------------------------------------------
    pre = await f.say(OPERATOR, "/preflight", "ready for live", timeout=30)
    assert "ready for live yes" in pre, pre

    # --- /run live before the ARM and the override: the LIVE gate refuses, and the
    # reply says so (not "started"); nothing reaches the venues --------------------
    await f.say(OPERATOR, RUN_LIVE, "Confirm /run")
    refused = await f.confirm(OPERATOR, "refused", timeout=20)
    assert "started" not in refused, refused
    for failure in ("LIVE refused", "arm_missing", "ladder"):
        assert failure in refused, (failure, refused)
    st = await f.status()
    assert st["run"] is None and st["trading_state"] == "ACTIVE", st
    assert await f.orders() == []

    # --- /override 1 (admin, two steps): the ladder's paper rung, waived -------------
    assert (await f.control("ladder"))["phases"]["1"]["allowed"] is False
    prompt = await f.say(ADMIN, "/override 1 e2e test: no paper rung", "Confirm /override")
    assert "LIVE phase 1" in prompt
    assert (await f.control("ladder"))["phases"]["1"]["allowed"] is False, \
        "the override must wait for Confirm"
    await f.confirm(ADMIN, "ladder override recorded for LIVE phase 1")
    assert (await f.control("ladder"))["phases"]["1"]["allowed"] is True

    # --- /arm 50 -> Confirm ----------------------------------------------------------
    prompt = await f.say(OPERATOR, f"/arm {CAP}", "Confirm /arm")
    assert f"${CAP}" in prompt and "one" in prompt
    assert (await f.status())["armed"] is False, "nothing may be armed before Confirm"
    armed = await f.confirm(OPERATOR, "ARMED")
    assert f"cap ${CAP}" in armed, armed
    st = await f.status()
    assert st["armed"] is True and float(st["arm_cap_usd"]) == CAP, st
    assert st["arm_source"] == "command"

    # --- /run 1 live ... -> Confirm --------------------------------------------------
    prompt = await f.say(OPERATOR, RUN_LIVE, "Confirm /run")
    for fact in ("LIVE", "phase 1", "top10", f"${CAP} per leg", "data real"):
        assert fact in prompt, (fact, prompt)
    st = await f.status()
    assert st["run"] is None and st["armed"] is True, "nothing may start before Confirm"
    assert await f.orders() == []
    started = await f.confirm(OPERATOR, "started", timeout=20)
    st = await poll(f.status, 10, "the run in status")
    run = st["run"]
    assert run is not None and run["mode"] == "live", st
    run_id = run["run_id"]
    assert run_id in started, started
    assert st["armed"] is False, "the live start uses the ARM up"

    # --- /status (operator) ----------------------------------------------------------
    shown = await f.say(OPERATOR, "/status", f"run {run_id}")
    assert shown.startswith("LIVE"), shown
    assert "ARM no" in shown and "live phase 1" in shown, shown

    # --- the run trades on the venues ------------------------------------------------
    async def traded() -> list[dict[str, Any]]:
        st = await f.status()
        if (st.get("run") or {}).get("run_id") != run_id:
            raise AssertionError(f"the run ended before trading: {st}\n{f.output()}")
        return [o for o in await f.orders() if o["outcome"] == "accepted"]

    placed = await poll(traded, 45, "an order accepted by the emulator", f.output, 0.2)
    assert placed

    # --- /kill (a viewer may kill) ---------------------------------------------------
    t_kill = time.monotonic()
    halted = await f.say(VIEWER, "/kill e2e live flow", "HALTED")
    assert run_id in halted, halted
    st = await f.status()
    assert st["trading_state"] == "HALTED", st
    assert time.monotonic() - t_kill < 5

    kpi_path = f.data_dir / "kpi" / f"{run_id}.json"

    async def final_kpi() -> dict[str, Any] | None:
        data = read_json(kpi_path)
        return data if data and data.get("final") is True else None

    kpi = await poll(final_kpi, 30, f"the final KPI at {kpi_path}", f.output, 0.2)
    summary = kpi["summary"]
    assert summary["kill_switch_triggered"] is True, summary
    assert kpi["run"]["mode"] == "live" and kpi["run"]["run_id"] == run_id

    # nothing left open on the venues; every order stayed within the armed cap
    orders = await f.orders()
    assert not [o for o in orders if o.get("status") == "open"], orders
    fx = Decimal(str((await admin(f.emu, "GET", "/admin/state"))["fx"]))
    for o in orders:
        p = o["params"]
        if o["outcome"] != "accepted" or "price" not in p:
            continue
        qty = p.get("quantity") or p.get("volume")
        if qty is None:
            continue
        notional = Decimal(qty) * Decimal(p["price"])
        if o["venue"] == "upbit":
            notional /= fx
        assert notional <= Decimal(CAP) * Decimal("1.01"), (o, notional)

    # the operator-facing CLI view: HALTED, no run, the ARM used up
    async def run_gone() -> bool:
        return (await f.status()).get("run", "?") is None

    await poll(run_gone, 10, "the run to leave the status", f.output)
    cli = await asyncio.to_thread(run_cli, ["status", "--json"], f.data_dir, f.serve.env)
    assert cli.returncode == 0, cli.stderr
    st = json.loads(cli.stdout)
    assert st["engine_running"] is True and st["mode"] == "live", st
    assert st["trading_state"] == "HALTED" and st["run"] is None, st
    assert st["armed"] is False, st
    assert any(x["name"] == "arm_missing" for x in st["arm_failures"]), st

    # the kill alert reached the alert chat
    await fake.wait_text(ALERT_CHAT, "kill switch", timeout=10)

    # one audit row per command and per button, with the outcome
    rows = f.audit()
    outcomes = [(r["command"], r["outcome"], r["role"]) for r in rows]
    by_cmd: dict[str, list[tuple[str, str]]] = {}
    for cmd, outcome, role in outcomes:
        by_cmd.setdefault(cmd, []).append((outcome, role))
    assert by_cmd["preflight"] == [("ok: ready_for_live=True", "operator")], outcomes
    assert by_cmd["override"][0][0].startswith("awaiting confirmation"), outcomes
    assert by_cmd["confirm override"] == [("ok: override phase 1", "admin")], outcomes
    assert by_cmd["arm"][0][0].startswith("awaiting confirmation"), outcomes
    assert by_cmd["confirm arm"][0][0].startswith("ok: armed"), outcomes
    assert [r["command"] for r in rows] == [
        "preflight", "run", "confirm run", "override", "confirm override", "arm",
        "confirm arm", "run", "confirm run", "status", "kill"], outcomes
    assert all(o.startswith("awaiting confirmation") for o, _ in by_cmd["run"]), outcomes
    assert by_cmd["confirm run"][0][0].startswith("refused: LIVE refused"), outcomes
    assert by_cmd["confirm run"][1] == (f"ok: started {run_id}", "operator"), outcomes
    assert by_cmd["status"][0][0] == "ok", outcomes
    assert by_cmd["kill"][0][0].startswith("ok: HALTED") and by_cmd["kill"][0][1] == "viewer", \
        outcomes
    assert all(r["latency_ms"] is not None for r in rows)
