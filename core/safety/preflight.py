"""Preflight (R-S3, runbook 1.1): every check PASS/FAIL/WARN/SKIP, never a silent PASS.

Each check is a coroutine that returns one result; an exception inside a check is that
check's FAIL with the exception text (fail closed). `ready_for_live` needs every check
in REQUIRED_FOR_LIVE to PASS or WARN: a SKIP there blocks, so `--dry-run` (which skips
the venue and Telegram probes) can never say ready. Secret values are never printed;
at most their lengths.
"""
from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import psutil

from core.domain.journal_kinds import UNRESOLVED_INTENTS
from core.domain.models import FX_SYMBOL, QUOTE, Venue
from core.files import loose_paths, write_atomic
from core.journal.migrations import latest_version
from core.ports import JournalStore
from core.redaction import MASK
from core.redaction import redact as core_redact
from core.safety.failure import Failure
from core.trading.state import HALT_FLAG

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"

REQUIRED_FOR_LIVE = (
    "environment", "secrets", "live_safety", "database", "exchange_health", "clock_skew",
    "key_permissions_binance", "balances", "open_orders_venues", "open_positions_journal",
    "git_safety", "telegram",
)
# What --dry-run does not contact; SKIP there still blocks ready_for_live.
DRY_RUN_SKIPS = {"exchange_health": "venues not contacted", "clock_skew": "no server time",
                 "key_permissions_binance": "API restrictions not fetched",
                 "balances": "balances not fetched", "open_orders_venues": "venues not contacted",
                 "telegram": "Telegram not contacted"}
SECRET_PATTERNS = ("*.key", "*.secret", ".env.*", ".env")
SECRET_ALLOWED = (".env.example",)
_TG_TOKEN = re.compile(r"[0-9]{5,}:[A-Za-z0-9_-]{30,}")
_KEY_CHARS = re.compile(r"[A-Za-z0-9_\-+/=.]+")

AsyncProbe = Callable[[], Awaitable[Any]]
BOOK_SYMBOLS = {Venue.UPBIT: "BTC/KRW", Venue.BINANCE: "BTC/USDT"}


@dataclass(slots=True)
class PreflightContext:
    settings: Any
    store: JournalStore
    clock: Any
    phase: int = 1
    notional_usd: float = 50.0
    venues: Mapping[Venue, Any] | None = None  # ExchangePort-like, for both venues
    repo_dir: Path = field(default_factory=Path.cwd)
    arm_failures: Callable[[], Awaitable[tuple[bool, list[Failure]]]] | None = None
    redis_ping: AsyncProbe | None = None
    binance_server_time_ms: AsyncProbe | None = None
    binance_api_restrictions: AsyncProbe | None = None
    telegram_get_me: AsyncProbe | None = None
    halted: AsyncProbe | None = None  # reason or None (SQLite and Redis kill flags)
    rss_mb: float | None = None
    max_clock_skew_ms: float = 1000.0
    upbit_withdrawals_attested: bool = False
    book_symbols: Mapping[Venue, str] = field(default_factory=lambda: dict(BOOK_SYMBOLS))


def _now_iso(ctx: PreflightContext) -> str:
    return datetime.fromtimestamp(ctx.clock.time(), UTC).isoformat(timespec="seconds")


def redact(text: str, settings: Any) -> str:
    """Error texts quote URLs: the one redactor, plus these settings' own secret
    values (the report may be built from settings that were never registered)."""
    for raw in settings.secret_values():
        text = text.replace(raw, MASK)
    return core_redact(text)


def _result(ctx: PreflightContext, name: str, status: str, message: str,
            details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "status": status, "message": redact(message, ctx.settings),
            "details": details or {}, "timestamp": _now_iso(ctx)}


# --- checks (each returns (status, message, details)) ------------------------------
Outcome = tuple[str, str, dict[str, Any]]


async def check_environment(ctx: PreflightContext, dry_run: bool) -> Outcome:
    env = ctx.settings.arbitrage_env
    status = PASS if env == "live" else WARN if dry_run else FAIL  # dry runs precede live
    return status, f"ARBITRAGE_ENV={env}" + ("" if env == "live" else "; live needs live"), {}


def _secret_problem(name: str, raw: str) -> str | None:
    if raw != raw.strip() or any(c.isspace() for c in raw):
        return f"{name} contains whitespace"
    if raw.startswith(("<", "'", '"')) or raw.endswith(">"):
        return f"{name} looks like a placeholder or is quoted"
    if name == "TELEGRAM_BOT_TOKEN":
        return None if _TG_TOKEN.fullmatch(raw) else f"{name} is not <digits>:<token>"
    if len(raw) < 8 or not _KEY_CHARS.fullmatch(raw):
        return f"{name} is too short or has unexpected characters"
    return None


async def check_secrets(ctx: PreflightContext, dry_run: bool) -> Outcome:
    s = ctx.settings
    fields = {"UPBIT_ACCESS_KEY": s.upbit_access_key, "UPBIT_SECRET_KEY": s.upbit_secret_key,
              "BINANCE_API_KEY": s.binance_api_key, "BINANCE_API_SECRET": s.binance_api_secret,
              "TELEGRAM_BOT_TOKEN": s.telegram_bot_token}
    lengths = {n: None if v is None else len(v.get_secret_value()) for n, v in fields.items()}
    found = [f"{n} is not set" if v is None else _secret_problem(n, v.get_secret_value())
             for n, v in fields.items()]
    problems = [p for p in found if p is not None]
    if s.telegram_chat_id is None:
        problems.append("TELEGRAM_CHAT_ID is not set")
    details = {"lengths": lengths, "telegram_chat_id_set": s.telegram_chat_id is not None}
    if problems:
        return FAIL, "; ".join(problems), details
    return PASS, "all secrets present and well-formed (values not shown)", details


async def check_live_safety(ctx: PreflightContext, dry_run: bool) -> Outcome:
    if ctx.halted is not None:
        halted = await ctx.halted()
    else:
        flag = await ctx.store.get_flag(HALT_FLAG)
        halted = flag if flag and flag.startswith("HALTED") else None
    if halted:
        return FAIL, f"trading is HALTED ({halted}); inspect, then `arbops reset`", {}
    if ctx.arm_failures is None:
        return FAIL, "no ARM checker wired", {}
    armed, failures = await ctx.arm_failures()
    details = {"armed": armed, "failures": [f.as_dict() for f in failures]}
    if not armed:
        return WARN, "not armed yet: arm (runbook 1.2) right before `run --mode live`", details
    if failures:
        return FAIL, "ARM invalid: " + "; ".join(map(str, failures)), details
    return PASS, "armed and valid", details


async def check_database(ctx: PreflightContext, dry_run: bool) -> Outcome:
    version = await ctx.store.schema_version()
    known = latest_version()
    if version != known:
        return FAIL, f"schema version {version}, code expects {known}", {"version": version}
    key, stamp = "preflight_write_test", repr(ctx.clock.time())
    await ctx.store.set_flag(key, stamp, ctx.clock.time())
    back = await ctx.store.get_flag(key)
    await ctx.store.clear_flag(key)
    if back != stamp:
        return FAIL, "write test read back a different value", {"version": version}
    return PASS, f"journal open, schema v{version}, write test ok", {
        "path": str(getattr(ctx.store, "path", "?")), "version": version}


async def check_data_at_rest(ctx: PreflightContext, dry_run: bool) -> Outcome:
    """The journal holds the audit, positions and reasons: no other local user may
    read it. Anything looser than 0700/0600 under the data dir fails, by path."""
    loose = loose_paths(ctx.settings.data_dir)
    if loose:
        shown = ", ".join(loose[:5]) + (f" and {len(loose) - 5} more" if len(loose) > 5 else "")
        return FAIL, (f"readable by other users: {shown} (chmod 700 the data dir, 600 its "
                      "files; arbops serve narrows them at start)"), {"loose": loose}
    return PASS, f"{ctx.settings.data_dir} private (0700, files 0600)", {}


async def check_redis(ctx: PreflightContext, dry_run: bool) -> Outcome:
    if ctx.settings.redis_url is None:
        return SKIP, "REDIS_URL not set: file lock and SQLite flags only (allowed)", {}
    if ctx.redis_ping is None:
        return FAIL, "REDIS_URL is set but no Redis client is wired", {}
    ok = await ctx.redis_ping()
    return (PASS, "PING ok", {}) if ok else (FAIL, "PING returned false", {})


def _venues(ctx: PreflightContext) -> Mapping[Venue, Any]:
    if not ctx.venues or set(ctx.venues) != {Venue.UPBIT, Venue.BINANCE}:
        raise RuntimeError(f"both venues (upbit, binance) are needed; got {list(ctx.venues or {})}")
    return ctx.venues


async def check_exchange_health(ctx: PreflightContext, dry_run: bool) -> Outcome:
    details: dict[str, Any] = {}
    bad: list[str] = []
    for venue, ex in _venues(ctx).items():
        symbol = ctx.book_symbols[venue]
        try:
            book = await ex.fetch_order_book(symbol, 5)
        except Exception as exc:  # noqa: BLE001 - both venues are probed and named
            bad.append(f"{venue}: {type(exc).__name__}: {exc}")
            continue
        details[str(venue)] = {"symbol": symbol, "bids": len(book.bids), "asks": len(book.asks)}
        if not (book.bids and book.asks):
            bad.append(f"{venue} {symbol}: empty book")
    return (FAIL, "; ".join(bad), details) if bad else (PASS, "order books ok", details)


async def check_clock_skew(ctx: PreflightContext, dry_run: bool) -> Outcome:
    if ctx.binance_server_time_ms is None:
        return FAIL, "no Binance server time probe wired", {}
    before = ctx.clock.time() * 1000  # the midpoint of the round trip is "now"
    server = float(await ctx.binance_server_time_ms())
    skew = server - (before + ctx.clock.time() * 1000) / 2
    details = {"skew_ms": round(skew, 1), "max_ms": ctx.max_clock_skew_ms}
    if abs(skew) > ctx.max_clock_skew_ms:
        return FAIL, f"clock skew {skew:.0f} ms vs Binance (max {ctx.max_clock_skew_ms:g})", details
    return PASS, f"clock skew {skew:.0f} ms", details


async def check_key_permissions_binance(ctx: PreflightContext, dry_run: bool) -> Outcome:
    if ctx.binance_api_restrictions is None:
        return FAIL, "no Binance apiRestrictions probe wired", {}
    try:
        r = await ctx.binance_api_restrictions()
    except Exception as exc:  # noqa: BLE001
        return FAIL, ("cannot read GET /sapi/v1/account/apiRestrictions, so withdrawals "
                      f"cannot be shown to be off: {type(exc).__name__}: {exc}"), {}
    if not isinstance(r, Mapping) or "enableWithdrawals" not in r:
        return FAIL, "apiRestrictions reply has no enableWithdrawals field", {}
    w = r["enableWithdrawals"]
    details = {k: r.get(k) for k in ("enableWithdrawals", "ipRestrict", "enableReading")}
    if w is False:
        return PASS, "Binance key: withdrawals disabled", details
    return FAIL, f"Binance key has enableWithdrawals={w!r}: create a key without it", details


async def check_key_permissions_upbit(ctx: PreflightContext, dry_run: bool) -> Outcome:
    if ctx.upbit_withdrawals_attested:
        return PASS, "operator attests the Upbit key cannot withdraw", {}
    return WARN, ("Upbit's API cannot report key permissions: set "
                  "ARBOPS_UPBIT_WITHDRAWALS_DISABLED_ATTESTED=true after checking"), {}


async def _usd_rate(ex: Any, symbol: str) -> float:
    book = await ex.fetch_order_book(symbol, 1)
    if not book.bids or not book.asks:
        raise RuntimeError(f"no book for {symbol}")
    return (book.bids[0][0] + book.asks[0][0]) / 2


async def _funded_bases(ex: Any, bal: Mapping[str, Any], quote: str, to_usd: float,
                        need: float, candidates: list[str], want: int) -> list[str]:
    """Bases on this venue worth >= need, among candidates; stops after `want` (bounded)."""
    ok: list[str] = []
    for asset in candidates:
        b = bal.get(asset)
        if b is None or b.free <= 0:
            continue
        try:
            price = await _usd_rate(ex, f"{asset}/{quote}")
        except Exception:  # noqa: BLE001 - an unlisted asset is simply not usable
            continue
        if b.free * price * to_usd >= need:
            ok.append(asset)
            if len(ok) >= want:
                break
    return ok


async def check_balances(ctx: PreflightContext, dry_run: bool) -> Outcome:
    # Quote >= notional on both venues, and one base worth >= notional on both: the engine
    # sells base on one venue while buying it on the other (R-M4), the minimum to trade.
    need = float(ctx.notional_usd)
    venues = _venues(ctx)
    up, bn = venues[Venue.UPBIT], venues[Venue.BINANCE]
    fx = await _usd_rate(up, FX_SYMBOL)  # KRW per USDT (R-M1)
    details: dict[str, Any] = {"notional_usd": need, "fx_krw_per_usdt": round(fx, 4)}
    bal = {Venue.UPBIT: await up.fetch_balance(), Venue.BINANCE: await bn.fetch_balance()}
    to_usd = {Venue.UPBIT: 1.0 / fx, Venue.BINANCE: 1.0}
    bad: list[str] = []
    for venue in (Venue.UPBIT, Venue.BINANCE):
        quote = QUOTE[venue]
        free = bal[venue][quote].free if quote in bal[venue] else 0.0
        usd = free * to_usd[venue]
        details[f"{venue}_quote_usd"] = round(usd, 2)
        if usd < need:
            bad.append(f"{venue} {quote} worth ${usd:.2f} < ${need:g}")
    common = sorted((set(bal[Venue.UPBIT]) & set(bal[Venue.BINANCE])) - {"KRW", "USDT"})
    on_bn = await _funded_bases(bn, bal[Venue.BINANCE], "USDT", 1.0, need, common[:60], 5)
    both = await _funded_bases(up, bal[Venue.UPBIT], "KRW", 1.0 / fx, need, on_bn, 1)
    details["base_funded_on_both"] = both
    if not both:
        bad.append(f"no base asset is worth >= ${need:g} on both venues")
    return (FAIL, "; ".join(bad), details) if bad else (
        PASS, f"quote and base ({both[0]}) funded for ${need:g} legs", details)


async def check_open_orders_venues(ctx: PreflightContext, dry_run: bool) -> Outcome:
    counts = {str(v): len(await ex.fetch_open_orders()) for v, ex in _venues(ctx).items()}
    if any(counts.values()):
        return FAIL, f"open orders on the venues: {counts}", {"open_orders": counts}
    return PASS, "no open orders on either venue", {"open_orders": counts}


async def check_open_positions_journal(ctx: PreflightContext, dry_run: bool) -> Outcome:
    intents = await ctx.store.intents_in_states(list(UNRESOLVED_INTENTS))
    positions = await ctx.store.positions(None, ["entering", "open", "exiting"])
    details = {"open_intents": len(intents), "open_positions": len(positions)}
    if intents or positions:
        return FAIL, (f"journal shows {len(intents)} open order(s) and {len(positions)} open "
                      "position(s): reconcile first"), details
    return PASS, "journal: no open orders or positions", details


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                          timeout=10, check=False)


def git_safety(repo: Path) -> Outcome:
    """Synchronous (subprocesses); `.env.live` ignored and untracked, no tracked secrets."""
    repo = Path(repo)
    inside = _git(repo, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        return WARN, f"not a git checkout: {repo} (git safety not verifiable)", {"path": str(repo)}
    problems: list[str] = []
    ignored = _git(repo, "check-ignore", "-q", "--no-index", ".env.live")
    if ignored.returncode == 1:
        problems.append(".env.live is not ignored by .gitignore")
    elif ignored.returncode != 0:
        problems.append(f"git check-ignore failed: {ignored.stderr.strip()}")
    tracked = _git(repo, "ls-files", "-z")
    if tracked.returncode != 0:
        raise RuntimeError(f"git ls-files failed: {tracked.stderr.strip()}")
    files = [f for f in tracked.stdout.split("\0") if f]
    secretish = sorted(f for f in files
                       if (name := f.rsplit("/", 1)[-1]) not in SECRET_ALLOWED
                       and any(fnmatch(name, p) for p in SECRET_PATTERNS))
    problems += [".env.live is tracked by git"] if ".env.live" in files else []
    problems += [f"tracked files that look like secrets: {secretish[:10]}"] if secretish else []
    details = {"path": str(repo), "tracked_secret_like": secretish[:10]}
    if problems:
        return FAIL, "; ".join(problems), details
    return PASS, ".env.live ignored and untracked; no tracked secret-like files", details


async def check_git_safety(ctx: PreflightContext, dry_run: bool) -> Outcome:
    return await asyncio.to_thread(git_safety, ctx.repo_dir)


async def check_telegram(ctx: PreflightContext, dry_run: bool) -> Outcome:
    if ctx.settings.telegram_bot_token is None or ctx.telegram_get_me is None:
        return FAIL, "Telegram is required for live (runbook 1.3): set TELEGRAM_BOT_TOKEN", {}
    me = await ctx.telegram_get_me()
    username = me.get("username") if isinstance(me, Mapping) else getattr(me, "username", None)
    return PASS, f"getMe ok (@{username})", {"username": username}


async def check_memory_headroom(ctx: PreflightContext, dry_run: bool) -> Outcome:
    from core.safety.watchdog import headroom_warnings

    rss = ctx.rss_mb if ctx.rss_mb is not None else psutil.Process().memory_info().rss / 2**20
    warnings = headroom_warnings(rss, ctx.settings)
    details = {"rss_mb": round(rss, 1)}
    return (WARN, "; ".join(warnings), details) if warnings else (
        PASS, f"RSS {rss:.0f} MB leaves headroom", details)


ORDER = ("environment", "secrets", "live_safety", "database", "data_at_rest", "redis", "exchange_health",
         "clock_skew", "key_permissions_binance", "key_permissions_upbit", "balances",
         "open_orders_venues", "open_positions_journal", "git_safety", "telegram",
         "memory_headroom")
CHECKS: tuple[tuple[str, Callable[[PreflightContext, bool], Awaitable[Outcome]]], ...] = tuple(
    (name, globals()[f"check_{name}"]) for name in ORDER)


def summarize(checks: list[dict[str, Any]], timestamp: str) -> dict[str, Any]:
    by = {c["name"]: c["status"] for c in checks}
    n = Counter(c["status"] for c in checks)
    # A SKIP among the required blocks; a FAIL anywhere blocks, even in an optional check.
    blocking = [x for x in REQUIRED_FOR_LIVE if by.get(x) not in (PASS, WARN)]
    blocking += [c["name"] for c in checks if c["status"] == FAIL and c["name"] not in blocking]
    summary = {"total_checks": len(checks), "passed": n[PASS], "failed": n[FAIL],
               "warnings": n[WARN], "skipped": n[SKIP], "ready_for_live": not blocking}
    return {"summary": summary, "checks": checks, "timestamp": timestamp,
            "required_for_live": list(REQUIRED_FOR_LIVE), "blocking": blocking}


async def run_preflight(ctx: PreflightContext, dry_run: bool) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for name, fn in CHECKS:  # sequential: the venue probes share one rate limit
        details: dict[str, Any]
        try:
            if dry_run and name in DRY_RUN_SKIPS:
                status, message, details = SKIP, f"dry run: {DRY_RUN_SKIPS[name]}", {}
            else:
                status, message, details = await fn(ctx, dry_run)
        except Exception as exc:  # noqa: BLE001 - fail closed, naming the check
            status, details = FAIL, {}
            message = f"error while checking: {type(exc).__name__}: {exc}"
        results.append(_result(ctx, name, status, message, details))
    report = summarize(results, _now_iso(ctx))
    report["dry_run"] = dry_run
    report["phase"] = ctx.phase
    return report


def write_report(report: dict[str, Any], path: Path) -> None:
    """`--output PATH`: atomic (temp file + fsync + rename), like the KPI files."""
    write_atomic(Path(path), report)


def exit_code(report: dict[str, Any]) -> int:
    return 0 if report.get("summary", {}).get("ready_for_live") is True else 1
