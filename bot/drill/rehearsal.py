"""`arbops drill`: the LIVE runbook rehearsed on loopback (issue #4).

Starts the exchange emulator (which also serves a minimal Telegram Bot API),
runs `arbops serve` in live mode with the emulator's fake keys, and walks the
runbook: paper phase 1 (the ladder's first rung) -> preflight -> ARM (the
runbook's environment variables) -> live phase 1 -> kill -> reconcile -> reset.
Every step runs the real CLI in a subprocess; a pass/fail checklist is printed.
No real money, no internet.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.views import preflight_lines, usd

ARBOPS = str(Path(sys.executable).with_name("arbops"))


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


class Drill:
    def __init__(self, data_dir: Path, paper_seconds: float, live_seconds: float) -> None:
        self.data_dir = data_dir
        self.paper_seconds = paper_seconds
        self.live_seconds = live_seconds
        self.steps: list[Step] = []
        self.env: dict[str, str] = {}

    async def cli(self, *args: str, timeout: float = 120.0) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            ARBOPS, *args, env=self.env, cwd=os.getcwd(), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 124, "", f"timed out after {timeout:.0f} s"
        return proc.returncode or 0, out.decode(), err.decode()

    def record(self, name: str, ok: bool, detail: str, t0: float) -> bool:
        self.steps.append(Step(name, ok, detail, time.monotonic() - t0))
        mark = "PASS" if ok else "FAIL"
        print(f"  [{mark}] {name} ({time.monotonic() - t0:.1f} s): {detail}", flush=True)
        return ok

    async def status(self) -> dict[str, Any]:
        code, out, _ = await self.cli("status", "--json", timeout=20)
        return json.loads(out) if code == 0 and out.strip() else {}

    async def run(self) -> bool:
        from bot.drill.emulator import start_emulator

        emu = await start_emulator(top_n=20)
        serve: asyncio.subprocess.Process | None = None
        try:
            keys = emu.keys
            self.env = {k: v for k, v in os.environ.items()
                        if not k.startswith(("ARBOPS_", "LIVE_ARM_", "UPBIT_", "BINANCE_",
                                             "TELEGRAM_", "REDIS_", "PROMETHEUS_"))}
            self.env.update({
                "ARBITRAGE_ENV": "live", "ARBOPS_DATA_DIR": str(self.data_dir),
                "UPBIT_API_BASE": emu.url, "BINANCE_API_BASE": emu.url,
                "UPBIT_ACCESS_KEY": keys["upbit"][0], "UPBIT_SECRET_KEY": keys["upbit"][1],
                "BINANCE_API_KEY": keys["binance"][0], "BINANCE_API_SECRET": keys["binance"][1],
                "TELEGRAM_BOT_TOKEN": "424242:AAdrillTokenNotRealOnlyForTheEmulator0", "TELEGRAM_CHAT_ID": "1",
                "TELEGRAM_API_BASE": emu.url, "ARBOPS_UPBIT_WITHDRAWALS_DISABLED_ATTESTED": "true",
                "ARBOPS_REAL_POLL_INTERVAL_S": "0.5",
                # The drill rehearses the runbook's steps, which need entries within a
                # minute: the rehearsal profile's 30-second strategy (docs/strategy.md).
                "ARBOPS_SIM_PROFILE": "rehearsal",
                # aiogram + ccxt put a live process near 250 MB: the runbook's 300 MB
                # anomaly threshold leaves too little headroom (docs/configuration.md).
                "ARBOPS_GUARD_MEMORY_ANOMALY_MB": "450", "ARBOPS_GATE_PHASE1_MEMORY_MB": "450",
                # The runbook's environment ARM (§1.2), taken when serve starts.
                "LIVE_ARM_ACK": "I_UNDERSTAND_LIVE_RISK", "LIVE_ARM_AT": str(int(time.time())),
                "LIVE_MAX_NOTIONAL_USD": "50",
            })
            print(f"arbops drill: emulator at {emu.url}, data dir {self.data_dir}")
            t0 = time.monotonic()
            serve = await asyncio.create_subprocess_exec(
                ARBOPS, "serve", env=self.env, cwd=os.getcwd(),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
            for _ in range(100):
                if (await self.status()).get("engine_running"):
                    break
                await asyncio.sleep(0.2)
            if not self.record("serve (live mode, fake keys)",
                               (await self.status()).get("mode") == "live", "running", t0):
                return False
            return await self._runbook()
        finally:
            if serve is not None and serve.returncode is None:
                serve.terminate()
                try:
                    await asyncio.wait_for(serve.wait(), 20)
                except TimeoutError:
                    serve.kill()
                    await serve.wait()
            await emu.stop()

    async def _runbook(self) -> bool:
        t0 = time.monotonic()
        code, out, err = await self.cli("notify", "test")
        delivered = False
        for _ in range(50):  # the notifier sends from its queue
            await asyncio.sleep(0.1)
            import aiohttp

            async with aiohttp.ClientSession() as http, http.get(
                    f"{self.env['TELEGRAM_API_BASE']}/admin/telegram") as resp:
                sent = (await resp.json())["sent"]
            if any("test alert" in str(m["params"].get("text", "")) for m in sent):
                delivered = True
                break
        if not self.record("Telegram test alert delivered (runbook 8.1)", code == 0 and delivered,
                           (out or err).strip(), t0):
            return False
        t0 = time.monotonic()
        code, out, err = await self.cli(
            "run", "--mode", "paper", "--phase", "1", "--data-source", "sim",
            "--duration-seconds", str(self.paper_seconds), timeout=self.paper_seconds + 60)
        if not self.record("paper phase 1 passes its gate (ladder rung 1)", code == 0,
                           _last(out, "phase 1 gate") or _last(err), t0):
            return False
        t0 = time.monotonic()
        code, out, err = await self.cli("preflight", "--output",
                                        str(self.data_dir / "preflight.json"))
        report = json.loads((self.data_dir / "preflight.json").read_text()) if (
            self.data_dir / "preflight.json").exists() else {}
        summary = preflight_lines(report)[:2] if report else [_last(err) or _last(out)]
        if not self.record("preflight ready_for_live (runbook 1.1)", code == 0,
                           "; ".join(line.strip() for line in summary), t0):
            return False
        t0 = time.monotonic()
        st = await self.status()
        if not self.record("ARM by environment (runbook 1.2)", bool(st.get("armed")),
                           f"cap {usd(st.get('arm_cap_usd'), signed=False)} per leg, expires "
                           f"{_clock_time(st.get('arm_expires_at'))}",
                           t0):
            return False
        t0 = time.monotonic()
        live = asyncio.ensure_future(self.cli(
            "run", "--mode", "live", "--phase", "1", "--data-source", "real",
            "--duration-seconds", str(self.live_seconds + 60), timeout=self.live_seconds + 120))
        traded = False
        for _ in range(int(self.live_seconds * 5)):
            await asyncio.sleep(0.2)
            run = (await self.status()).get("run") or {}
            if run.get("mode") == "live" and run.get("entries", 0) > 0:
                traded = True
                break
            if live.done():
                break
        run = (await self.status()).get("run") or {}
        detail = f"entries {run.get('entries')}, round trips {run.get('round_trips')}"
        if live.done() and not traded:
            code, out, err = live.result()
            detail = f"exit {code}: {(err or out).strip()[-400:]}"
        if not self.record("live phase 1 trades on the venues (runbook 2.1)", traded, detail, t0):
            return False
        t0 = time.monotonic()
        streams = await self._admin_json(self.env["UPBIT_API_BASE"], "/admin/streams")
        sent = streams.get("events_sent") or {}
        self.record("live books come from the venues' websocket streams",
                    all(sent.get(v, 0) > 0 for v in ("upbit", "binance")),
                    f"book events sent {_per_venue(sent)}; connections "
                    f"{_per_venue(streams.get('connections') or {})}", t0)
        private = streams.get("private") or {}
        own = private.get("events_sent") or {}
        self.record("own orders and fills come from the venues' private streams",
                    all(own.get(v, 0) > 0 for v in ("upbit", "binance")),
                    f"order events sent {_per_venue(own)}; connections "
                    f"{_per_venue(private.get('connections') or {})}", time.monotonic())
        t0 = time.monotonic()
        code, out, err = await self.cli("kill", "--reason", "drill")
        await asyncio.wait_for(live, self.live_seconds + 120)
        st = await self.status()
        if not self.record("kill: HALTED, cancel, flatten (runbook 4)",
                           code == 0 and st.get("trading_state") == "HALTED",
                           (out or err).strip().splitlines()[0] if (out or err) else "", t0):
            return False
        t0 = time.monotonic()
        code, out, err = await self.cli("reconcile")
        self.record("reconcile: no open orders, flat, no drift (runbook 5.2)", code == 0,
                    (out or err).strip().splitlines()[0] if (out or err) else "", t0)
        t0 = time.monotonic()
        code, out, err = await self.cli("reset", "--confirm", "RESET")
        self.record("reset after the post-mortem", code == 0,
                    "; ".join((out or err).strip().splitlines()), t0)
        return all(s.ok for s in self.steps)


    @staticmethod
    async def _admin_json(base: str, path: str) -> Any:
        import aiohttp

        async with aiohttp.ClientSession() as http, http.get(base + path) as resp:
            return await resp.json()


def _last(text: str, contains: str = "") -> str:
    """The last line holding `contains`, a summary table's row read as one sentence."""
    lines = [ln for ln in text.strip().splitlines() if contains in ln]
    if not lines:
        return ""
    key, bar, value = lines[-1].partition("|")
    return f"{' '.join(key.split())}: {' '.join(value.split())}" if bar else lines[-1].strip()


def run_drill(data_dir: Path | None, paper_seconds: float, live_seconds: float) -> int:
    with tempfile.TemporaryDirectory(prefix="arbops-drill-", dir="/tmp") as tmp:
        drill = Drill(data_dir or Path(tmp), paper_seconds, live_seconds)
        t0 = time.monotonic()
        ok = asyncio.run(drill.run())
        # Each step was printed as it happened; the end says how many and how long.
        passed = sum(1 for s in drill.steps if s.ok)
        print(f"arbops drill: {'PASS' if ok else 'FAIL'} ({passed}/{len(drill.steps)} steps "
              f"in {time.monotonic() - t0:.0f} s)")
        return 0 if ok else 1


def _clock_time(value: Any) -> str:
    """An ISO or epoch time as HH:MM:SS UTC; '-' when absent."""
    from datetime import UTC, datetime

    if value is None:
        return "-"
    try:
        at = datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError):
        try:
            at = datetime.fromisoformat(str(value)).astimezone(UTC)
        except ValueError:
            return str(value)
    return at.strftime("%H:%M:%S UTC")


def _per_venue(counts: dict[str, Any]) -> str:
    """`upbit 1980, binance 1790` for a person, not a dict's repr."""
    return ", ".join(f"{venue} {n}" for venue, n in sorted(counts.items())) or "none"
