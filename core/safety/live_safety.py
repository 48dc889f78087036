"""LiveSafety: the one object OperatorService holds (`service.safety`) for LIVE safety.

It composes the ARM (core.safety.arming), preflight (core.safety.preflight), the ladder
(core.safety.ladder), the start gate (core.safety.live_gate) and the lock / Redis mirrors
(core.safety.redis_state). Surfaces never reach past it. Settings it reads that may not
exist yet on an older Settings are read with `getattr(..., default)` so the module
works before the settings fields are added (see the defaults below).
"""
from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from loguru import logger

from core.domain.journal_kinds import EventKind
from core.domain.models import Venue
from core.errors import ArmRefused
from core.ports import JournalStore
from core.safety.arm_ledger import HostArmLedger
from core.safety.arming import MAX_AGE_S, ArmBook, ArmState
from core.safety.failure import Failure
from core.safety.ladder import Ladder, LadderDecision
from core.safety.live_gate import PREFLIGHT_FLAG, ArmView, LiveStartContext, check_live_start
from core.safety.preflight import PreflightContext, run_preflight
from core.safety.redis_state import (
    EngineLock,
    FileEngineLock,
    LostCallback,
    RedisState,
    account_id,
)
from core.trading.state import HALT_FLAG

VenuesProvider = Callable[[], Awaitable[Mapping[Venue, Any]] | Mapping[Venue, Any]]
AsyncProbe = Callable[[], Awaitable[Any]]

DEFAULTS: dict[str, Any] = {
    "preflight_max_age_s": 1800.0,
    "ladder_window_s": 86_400.0,
    "max_clock_skew_ms": 1000.0,
    "upbit_withdrawals_disabled_attested": False,
    "redis_lock_ttl_ms": 10_000,
    "redis_key_prefix": "arbops",
}


class LiveSafety:
    def __init__(
        self, settings: Any, store: JournalStore, clock: Any,
        venues_provider: VenuesProvider | None = None,
        telegram_probe: AsyncProbe | None = None,
        redis: RedisState | None = None,
        *,
        repo_dir: Path | None = None,
        lock: EngineLock | None = None,
        state_probe: Callable[[], str | None] | None = None,
        server_time_probe: AsyncProbe | None = None,
        api_restrictions_probe: AsyncProbe | None = None,
        rss_mb: Callable[[], float] | None = None,
        arm_ledger: HostArmLedger | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.venues_provider = venues_provider
        self.telegram_probe = telegram_probe
        self.redis = redis
        self.repo_dir = repo_dir or Path.cwd()
        self.lock = lock
        self.state_probe = state_probe  # in-memory HALTED reason from the service
        self.server_time_probe = server_time_probe
        self.api_restrictions_probe = api_restrictions_probe
        self.rss_mb = rss_mb
        self.book = ArmBook(store)
        # An env ARM is single use per host and account, not per data dir.
        self.arm_ledger = arm_ledger or HostArmLedger(account_id(settings), redis=redis)
        self.ladder = Ladder(store, float(self.setting("ladder_window_s")))
        self._command_arm: ArmState | None = None  # carries the monotonic stamp

    def setting(self, name: str) -> Any:
        return getattr(self.settings, name, DEFAULTS[name])

    # --- ARM ------------------------------------------------------------------------
    async def current_arm(self) -> ArmState | None:
        """A command ARM (the journal's flag) wins over the runbook's env vars."""
        saved = await self.book.load_command()
        if saved is None:
            self._command_arm = None
        elif self._command_arm is None or self._command_arm.token != saved.token:
            self._command_arm = saved  # armed by another process: wall-clock age applies
        return self._command_arm or ArmState.from_env(self.settings)

    async def arm_view(self) -> ArmView:
        arm = await self.current_arm()
        if arm is None:
            return ArmView([Failure("arm_missing", "not armed: set LIVE_ARM_ACK/LIVE_ARM_AT/"
                                                   "LIVE_MAX_NOTIONAL_USD or `arbops arm <usd>`")],
                           None)
        consumed = await self.book.consumed_by(arm)
        if consumed is not None:
            arm.consume(consumed)
        failures = arm.check(self.clock.time(), self.clock.monotonic())
        if arm.source == "env" and consumed is None:
            failures += await self._host_use(arm)
        if self.redis is not None and arm.source == "command":
            # Another host may have disarmed this account: Redis is what hosts share.
            mirror = await self.redis.arm_mirror()
            if mirror is None or mirror.get("token") != arm.token:
                failures.append(Failure("arm_mirror", "the ARM is missing from Redis (expired "
                                                      "or disarmed elsewhere); arm again"))
        return ArmView(failures, arm.cap_usd)

    async def _host_use(self, arm: ArmState) -> list[Failure]:
        """The host-wide record of an env ARM: used from another data dir, or unreadable."""
        try:
            use = await self.arm_ledger.used(arm)
        except Exception as exc:  # noqa: BLE001 - cannot tell if it was used: refuse
            return [Failure("arm_ledger", f"cannot read the record of used ARMs "
                                          f"({type(exc).__name__}: {exc}); refusing")]
        return [] if use is None else [use.failure(arm)]

    async def _claim_env(self, arm: ArmState, used_by: str, now: float) -> None:
        """Record an env ARM's use host-wide; ArmRefused if another data dir won it."""
        try:
            earlier = await self.arm_ledger.claim(arm, used_by, Path(self.settings.data_dir),
                                                  now)
        except Exception as exc:
            raise ArmRefused([Failure("arm_ledger", f"cannot record this ARM's use "
                                                    f"({type(exc).__name__}: {exc}); "
                                                    "refusing")]) from exc
        if earlier is not None:
            raise ArmRefused([earlier.failure(arm)])

    async def arm(self, usd: Any, actor: str) -> dict[str, Any]:
        now, mono = self.clock.time(), self.clock.monotonic()
        arm = ArmState.arm_command(usd, now, mono, actor)
        failures = arm.check(now, mono)
        if failures:
            raise ArmRefused(failures)
        await self.book.save_command(arm, now)
        self._command_arm = arm
        if self.redis is not None:
            await self.redis.mirror_arm({"token": arm.token, "cap_usd": arm.cap_usd,
                                         "actor": actor, "armed_at": arm.armed_at_raw},
                                        MAX_AGE_S)
        await self.store.record_event(now, None, EventKind.ARMED, {"actor": actor, "cap_usd": arm.cap_usd,
                                                         "armed_at": arm.armed_at_raw})
        return {**arm.describe(), **await self.arm_status()}

    async def disarm(self, actor: str) -> dict[str, Any]:
        """Drop the command ARM and burn an env ARM's LIVE_ARM_AT (env vars cannot be unset)."""
        now = self.clock.time()
        await self.book.clear_command()
        self._command_arm = None
        env = ArmState.from_env(self.settings)
        burned = None
        if env is not None and env.armed_at_raw is not None and \
                await self.book.consumed_by(env) is None:
            with contextlib.suppress(ArmRefused):  # already burned elsewhere: fine
                await self._claim_env(env, f"disarmed by {actor}", now)
            await self.book.mark_consumed(env, f"disarmed by {actor}", now)
            burned = env.armed_at_raw
        if self.redis is not None:
            await self.redis.clear_arm()
        await self.store.record_event(now, None, EventKind.DISARMED, {"actor": actor,
                                                            "burned_live_arm_at": burned})
        return await self.arm_status()

    async def arm_status(self) -> dict[str, Any]:
        """For `status --json`: armed, arm_cap_usd, arm_expires_at, and why not."""
        try:
            arm = await self.current_arm()
            view = await self.arm_view()
        except Exception as exc:  # noqa: BLE001 - a status read must not crash; not armed
            return {"armed": False, "arm_cap_usd": None, "arm_expires_at": None,
                    "arm_source": None, "arm_failures": [{"name": "arm_error",
                                                          "message": str(exc)}]}
        exp = arm.expires_at() if arm is not None else None
        armed = arm is not None and not view.failures
        return {"armed": armed, "arm_cap_usd": view.cap_usd if armed else None,
                "arm_expires_at": (arm.describe()["expires_at"]
                                   if arm is not None and armed and exp else None),
                "arm_source": arm.source if arm is not None else None,
                "arm_failures": [f.as_dict() for f in view.failures]}

    async def consume_arm(self, run_id: str) -> None:
        """The live start uses the ARM up: call after the gate said yes, before any order."""
        view = await self.arm_view()  # it may have expired since the gate said yes
        arm = await self.current_arm()
        if view.failures or arm is None:
            raise ArmRefused(view.failures or [Failure("arm_missing", "nothing to consume")])
        now = self.clock.time()
        if arm.source == "env":  # first: another data dir may have taken it meanwhile
            await self._claim_env(arm, f"run {run_id}", now)
        await self.book.mark_consumed(arm, run_id, now)
        # One start uses up every ARM in sight: env vars left set after a command ARM
        # must not silently arm the next phase.
        env = ArmState.from_env(self.settings)
        if env is not None and env.token != arm.token and env.armed_at_raw is not None:
            with contextlib.suppress(ArmRefused):  # burned already: nothing to add
                await self._claim_env(env, f"run {run_id}", now)
            await self.book.mark_consumed(env, run_id, now)
        await self.book.clear_command()
        self._command_arm = None
        if self.redis is not None:
            await self.redis.clear_arm()
        await self.store.record_event(now, run_id, EventKind.ARM_CONSUMED, {"token": arm.token})

    # --- kill flag ------------------------------------------------------------------
    async def halted_reason(self) -> str | None:
        """HALTED if the process, SQLite or Redis says so (any one is enough)."""
        if self.state_probe is not None and (r := self.state_probe()):
            return r
        flag = await self.store.get_flag(HALT_FLAG)
        if flag and flag.startswith("HALTED"):
            return flag.split(":", 1)[1] if ":" in flag else "persisted"
        if self.redis is not None:
            return await self.redis.kill_reason()
        return None

    async def mirror_kill(self, reason: str) -> None:
        if self.redis is not None:
            try:
                await self.redis.set_kill(reason)
            except Exception:  # noqa: BLE001 - the kill itself must not fail on Redis (R-K2)
                logger.exception("could not mirror the kill flag to Redis")

    async def clear_kill(self) -> None:
        if self.redis is not None:
            await self.redis.clear_kill()

    # --- lock -----------------------------------------------------------------------
    def make_lock(self, on_lost: LostCallback | None = None) -> EngineLock:
        if self.redis is not None:
            return self.redis.lock(int(self.setting("redis_lock_ttl_ms")), on_lost)
        return FileEngineLock(Path(self.settings.data_dir))

    async def acquire_lock(self, on_lost: LostCallback | None = None) -> dict[str, Any]:
        if self.lock is None:
            self.lock = self.make_lock(on_lost)
        return await self.lock.acquire()

    async def release_lock(self) -> None:
        if self.lock is not None:
            await self.lock.release()

    async def fence_ok(self) -> bool:
        return self.lock is not None and await self.lock.fence_ok()

    # --- preflight ------------------------------------------------------------------
    async def preflight(self, dry_run: bool, phase: int = 1,
                        notional_usd: float | None = None) -> dict[str, Any]:
        from core.trading.phases import PHASES

        notional = float(notional_usd or PHASES[phase].notional_usd)
        venues: Mapping[Venue, Any] | None = None
        if not dry_run and self.venues_provider is not None:
            try:
                got = self.venues_provider()  # bot.app.real_venues is sync; tests' are async
                venues = await got if inspect.isawaitable(got) else got
            except Exception as exc:  # noqa: BLE001 - the venue checks fail, naming it
                logger.warning("preflight: venues unavailable: {}", exc)
        try:
            ctx = self._preflight_ctx(phase, notional, venues)
            report = await run_preflight(ctx, dry_run)
        finally:
            for ex in (venues or {}).values():
                close = getattr(ex, "close", None)
                if close is not None:
                    await close()
        now = self.clock.time()
        rec = {"ts": now, "dry_run": dry_run, "phase": phase, "notional_usd": notional,
               "ready_for_live": report["summary"]["ready_for_live"],
               "blocking": report["blocking"]}
        await self.store.set_flag(PREFLIGHT_FLAG, json.dumps(rec, sort_keys=True), now)
        await self.store.record_event(now, None, EventKind.PREFLIGHT_CHECKED, rec)
        return report

    def _preflight_ctx(self, phase: int, notional: float,
                       venues: Mapping[Venue, Any] | None) -> PreflightContext:
        binance = (venues or {}).get(Venue.BINANCE)
        client = getattr(binance, "ccxt", None)
        time_probe = self.server_time_probe or (client.fetch_time if client else None)
        restrictions = self.api_restrictions_probe or (
            client.sapi_get_account_apirestrictions if client else None)

        async def arm_failures() -> tuple[bool, list[Failure]]:
            return (await self.current_arm()) is not None, (await self.arm_view()).failures

        return PreflightContext(
            settings=self.settings, store=self.store, clock=self.clock, phase=phase,
            notional_usd=notional, venues=venues, repo_dir=self.repo_dir,
            arm_failures=arm_failures,
            redis_ping=self.redis.ping if self.redis is not None else None,
            binance_server_time_ms=time_probe, binance_api_restrictions=restrictions,
            telegram_get_me=self.telegram_probe, halted=self.halted_reason,
            rss_mb=self.rss_mb() if self.rss_mb is not None else None,
            max_clock_skew_ms=float(self.setting("max_clock_skew_ms")),
            upbit_withdrawals_attested=bool(self.setting("upbit_withdrawals_disabled_attested")),
        )

    # --- the gate -------------------------------------------------------------------
    async def check_live_start(self, phase: int, notional: float,
                               venues: Mapping[Venue, Any] | None) -> list[Failure]:
        async def ladder(p: int) -> LadderDecision:
            return await self.ladder.decide(p, self.clock.time())

        ctx = LiveStartContext(
            settings=self.settings, store=self.store, clock=self.clock, phase=phase,
            notional_usd=notional, venues=venues, arm=self.arm_view, ladder=ladder,
            halted=self.halted_reason, lock=self.lock,
            preflight_max_age_s=float(self.setting("preflight_max_age_s")),
        )
        return await check_live_start(ctx)

    # --- ladder ---------------------------------------------------------------------
    async def ladder_status(self) -> dict[str, Any]:
        return (await self.ladder.status(self.clock.time())).as_dict()

    async def override(self, phase: int, actor: str, reason: str = "") -> dict[str, Any]:
        """Admin only, after a two-step confirmation on the surface; recorded as an event."""
        await self.ladder.override(phase, actor, self.clock.time(), reason)
        return await self.ladder_status()

    async def rollback(self, actor: str, reason: str = "") -> dict[str, Any]:
        await self.ladder.rollback(actor, self.clock.time(), reason)
        return await self.ladder_status()

    async def close(self) -> None:
        await self.release_lock()
        if self.redis is not None:
            await self.redis.close()
