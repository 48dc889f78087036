"""Telegram round trip (issue #6): /status and /kill through the service's real
aiogram Bot and Dispatcher, long polling a local Bot API; plus /kill -> HALTED.

Two processes, as in production, where Telegram's servers are not in the bot's
process:
- the bot (this process): `build_service` + `start_telegram` as `arbops serve`
  starts them, then `gc.collect(); gc.freeze()` as serve does after start-up;
- the Bot API stand-in (bot/drill/emulator/telegram_api.py, alone: no exchange
  emulator, no market loop) in a child process, which also drives the commands.

Round trip, on the stand-in's clock: from the update being queued at the API
(the bot's getUpdates long poll is pending and returns it) to the reply's
sendMessage request arriving at the API. The driver awaits a future the
stand-in resolves on that request: no polling. Commands are sent one at a time,
GAP_S apart; WARMUP /status commands first are not counted.

/kill -> HALTED, on the bot's clock: from the getUpdates answer holding the
/kill having been parsed (aiogram's Update objects exist; stamped by a session
middleware) to `TradingStateBox.set(HALTED)` having returned. The first /kill
changes the state (and writes the incident, sends the alert); the others find
it HALTED already and take the same path up to that call.
"""
from __future__ import annotations

import asyncio
import gc
import multiprocessing
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.monitoring.perf import percentile

if TYPE_CHECKING:
    from bot.drill.emulator.telegram_api import BotApiStandIn

N = 100
WARMUP = 5
GAP_S = 0.05
USER = 777
ALERT_CHAT = -1001  # alerts (the first /kill's) go elsewhere, as TELEGRAM_CHAT_ID would
COMMANDS = ("/status", "/kill")


# --- the Bot API stand-in and the driver (child process) ------------------------------
def _api_main(conn: Connection) -> None:
    asyncio.run(_api_serve(conn))


async def _api_serve(conn: Connection) -> None:
    from bot.drill.emulator.telegram_api import BotApiStandIn

    loop = asyncio.get_running_loop()
    # Hold long polls for aiogram's whole 10 s timeout, as Telegram does: an update is
    # queued while the bot's poll is pending, so the round trip includes no re-poll.
    api = await BotApiStandIn(max_poll_s=10.0).start()
    conn.send(api.url)
    try:
        n, warmup, gap_s = await loop.run_in_executor(None, conn.recv)
        conn.send(await _drive(api, n, warmup, gap_s))
        await loop.run_in_executor(None, conn.recv)  # "stop": the bot has shut down
    finally:
        await api.close()


async def _drive(api: BotApiStandIn, n: int, warmup: int,
                 gap_s: float) -> dict[str, list[float]]:
    while not api.calls_to("getUpdates", ok_only=False):  # the bot is up and long polling
        await asyncio.sleep(0.01)
    await asyncio.sleep(gap_s)
    plan = [("warmup", "/status")] * warmup + [(c, c) for c in COMMANDS for _ in range(n)]
    out: dict[str, list[float]] = {c: [] for c in COMMANDS}
    for i, (label, text) in enumerate(plan):
        reply = api.next_call(lambda c: c.method == "sendmessage"
                              and str(c.params.get("chat_id")) == str(USER))
        t0 = time.perf_counter()
        api.enqueue(_update(text, i))
        rec = await asyncio.wait_for(reply, 10)
        if label != "warmup":
            out[label].append((rec.perf - t0) * 1000)
        await asyncio.sleep(gap_s)
    return out


def _update(text: str, i: int) -> dict[str, Any]:
    return {"message": {"message_id": 1000 + i, "date": int(time.time()), "text": text,
                        "chat": {"id": USER, "type": "private"},
                        "from": {"id": USER, "is_bot": False, "first_name": "op"},
                        "entities": [{"type": "bot_command", "offset": 0,
                                      "length": len(text)}]}}


# --- the bot (this process) -----------------------------------------------------------
class KillClock:
    """Stamps getUpdates answers being parsed and the state being set HALTED."""

    def __init__(self) -> None:
        self.parsed: list[float] = []
        self.halted: list[tuple[float, bool]] = []  # (perf_counter, the state changed)

    def install(self, bot: Any) -> None:
        from aiogram.methods import GetUpdates

        from core.domain.models import TradingState
        from core.trading.state import TradingStateBox

        async def stamp_parsed(make_request: Any, bot: Any, method: Any) -> Any:
            result = await make_request(bot, method)
            if isinstance(method, GetUpdates) and result:
                self.parsed.append(time.perf_counter())
            return result

        bot.session.middleware(stamp_parsed)
        original = TradingStateBox.set

        def timed_set(box: Any, state: Any, reason: str, now: float) -> bool:
            changed = original(box, state, reason, now)
            if state is TradingState.HALTED:
                self.halted.append((time.perf_counter(), changed))
            return changed

        TradingStateBox.set = timed_set  # type: ignore[method-assign]

    def kill_ms(self) -> list[tuple[float, bool]]:
        out = []
        for at, changed in self.halted:
            parsed = max(p for p in self.parsed if p <= at)
            out.append(((at - parsed) * 1000, changed))
        return out


async def main() -> None:
    from loguru import logger

    from bot.app import build_service
    from bot.telegram_app import start_telegram
    from core.config.settings import Settings

    logger.remove()
    loop = asyncio.get_running_loop()
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    api_proc = ctx.Process(target=_api_main, args=(child_conn,), name="bot-api-stand-in")
    api_proc.start()
    try:
        url = await loop.run_in_executor(None, conn.recv)
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            settings = Settings(_env_file=None, data_dir=Path(tmp),  # type: ignore[call-arg]
                                telegram_bot_token="424242:AAdrillTokenNotRealOnlyForTheEmulator0",
                                telegram_chat_id=ALERT_CHAT, telegram_api_base=url,
                                telegram_allowed_users=f"{USER}:admin")
            service = await build_service(settings)
            handle = await start_telegram(service, settings)
            assert handle is not None
            clock = KillClock()
            clock.install(handle.bot)
            gc.collect()  # as `arbops serve` does once everything is started
            gc.freeze()
            try:
                conn.send((N, WARMUP, GAP_S))
                results: dict[str, list[float]] = await loop.run_in_executor(None, conn.recv)
            finally:
                await handle.stop()
                await service.store.close()
                gc.unfreeze()
        conn.send("stop")
    finally:
        api_proc.join(10)
        if api_proc.is_alive():
            api_proc.kill()
    _report(results, clock.kill_ms())


def _report(results: dict[str, list[float]], kills: list[tuple[float, bool]]) -> None:
    print(f"Telegram round trip, update queued at the Bot API -> sendMessage received by it "
          f"({N} commands each, {GAP_S * 1000:.0f} ms apart; API stand-in in its own process)")
    print("| command | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    for cmd, s in results.items():
        s = sorted(s)
        print(f"| {cmd} | {statistics.median(s):.1f} | {percentile(s, 0.99):.1f} "
              f"| {s[-1]:.1f} |")
    print(f"first /kill (changes the state): {results['/kill'][0]:.1f} ms")
    k = sorted(ms for ms, _ in kills)
    first = next((ms for ms, changed in kills if changed), float("nan"))
    print(f"/kill update parsed -> HALTED ({len(k)} kills): p50 {statistics.median(k):.3f} ms, "
          f"p99 {percentile(k, 0.99):.3f} ms, max {k[-1]:.3f} ms; "
          f"the one that changed the state: {first:.3f} ms")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
