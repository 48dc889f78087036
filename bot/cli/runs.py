"""`arbops run`, `demo` and `serve`: a phase in this process, or in the running service.

One engine per data dir: with a service up, `run` starts the phase inside it and
follows it; otherwise the phase runs here in the foreground, started the same way
as `serve` (bot/bootstrap.py).
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from typing import TYPE_CHECKING

from bot.cli.client import EngineClient
from core.commands import DemoArgs, NoArgs, RunArgs
from core.config.settings import Settings
from core.errors import BadInput, EngineNotRunning, ExitCode, ServiceError

if TYPE_CHECKING:
    from core.service import OperatorService



def cmd_run(settings: Settings, args: RunArgs) -> int:
    return _run(settings, args, show_progress=sys.stderr.isatty())


def cmd_demo(settings: Settings, args: DemoArgs) -> int:
    # On the calibrated market the strategy holds for hours and a 75-second demo would
    # show nothing trading; the demo rehearses on the "rehearsal" profile and says so.
    if settings.sim_profile != "rehearsal" and "sim_profile" not in settings.model_fields_set:
        from core.config.settings import load_settings

        settings = load_settings(sim_profile="rehearsal")
    print(f"arbops demo: paper phase 1 on the simulated market ({args.universe}, "
          f"{args.seconds:.0f} s, seed {args.seed if args.seed is not None else settings.sim_seed})")
    if settings.sim_profile == "rehearsal":
        print("sim profile: REHEARSAL - a jumpy premium (about one "
              f"{settings.sim_jump_bps:.0f}-bps jump a minute per symbol) and a "
              f"{settings.baseline_halflife_s:.0f}-s baseline, made to trade at once. It shows "
              "the machinery; its PnL says nothing about the real market (see docs/strategy.md "
              "and `arbops backtest` on real recordings).")
    run_args = RunArgs(phase=1, mode="paper", universe=args.universe,
                       duration_seconds=args.seconds, seed=args.seed)
    code = _run(settings, run_args, show_progress=True)
    if settings.sim_profile == "rehearsal":
        print("(rehearsal profile: the figures above are the machinery's, not a forecast)")
    print(demo_epilogue(settings))
    return code


def demo_epilogue(settings: Settings) -> str:
    """Where the demo's journal went and how to look at it (`make demo` sets the data
    dir to .arbops/demo, which `arbops status` alone would not read)."""
    import os
    from pathlib import Path

    shown = os.path.relpath(settings.data_dir, Path.cwd())
    if shown.startswith(".."):
        shown = str(settings.data_dir)
    env = f"ARBOPS_DATA_DIR={shown} "
    return (f"The demo's journal, KPI and logs are in {settings.data_dir}. Look at them with:\n"
            f"  {env}.venv/bin/arbops status\n"
            f"  {env}.venv/bin/arbops report daily --date today\n"
            f"  {env}.venv/bin/arbops kpi")


def _run(settings: Settings, args: RunArgs, show_progress: bool) -> int:
    from core.files import check_writable

    if args.kpi_output_path is not None:
        problem = check_writable(args.kpi_output_path)
        if problem:
            raise BadInput(f"--kpi-output-path: {problem}")
    try:
        return _run_in_service(settings, args)
    except EngineNotRunning:
        pass
    return asyncio.run(_run_here(settings, args, show_progress))


def _run_in_service(settings: Settings, args: RunArgs) -> int:
    """One engine per data dir: with `arbops serve` up, the phase runs inside it."""
    from bot.progress import summary_table
    from bot.views import usd

    client = EngineClient(settings)
    started = client.ask("run", args)
    print(f"run {started['run_id']} started in the running service; following it "
          "(Ctrl+C stops following, not the run)")
    while True:
        time.sleep(1.0)
        run = client.ask("progress").get("run")
        if run is None or run.get("run_id") != started["run_id"]:
            break
        print(f"  {run['elapsed_s']:.0f}/{run['duration_s'] or float('inf'):.0f}s  round trips "
              f"{run['round_trips']}  strategy PnL {usd(run['pnl_usd'])}", file=sys.stderr)
    last = client.ask("last_run")
    if not last or last["run_id"] != started["run_id"]:
        raise ServiceError("the run ended without a result; see `arbops logs errors`",
                           ExitCode.FAILED)
    print(summary_table(last["kpi"], last["kpi_path"]))
    return int(last["exit_code"])


async def _run_here(settings: Settings, args: RunArgs, show_progress: bool) -> int:
    """The phase in this process, in the foreground, started like `serve`."""
    from bot.bootstrap import engine_process
    from bot.progress import ProgressLine, summary_table

    async with engine_process(settings, console_log=not show_progress,
                              fast=settings.sim_fast) as service:
        spec = service.plan_run(args)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, _on_signal, service, sig)
        progress = ProgressLine() if show_progress else None
        outcome = await service.run_phase(spec, progress)
        if progress:
            progress.finish()
        print(summary_table(outcome.kpi, str(outcome.kpi_path)))
        print(f"KPI JSON: {outcome.kpi_path}")
        return outcome.exit_code


def _on_signal(service: OperatorService, sig: signal.Signals) -> None:
    run = service.current
    if run is None:
        return
    first = not run.closing
    what = run.request_stop(f"signal {sig.name}")
    if first and what == "closing":
        print(f"\n{sig.name}: stopping gracefully: no new entries, positions close, then the "
              "final KPI. Ctrl+C again halts at once WITHOUT flattening (HALTED until "
              "`arbops reset`); `arbops kill` halts and flattens.", file=sys.stderr, flush=True)
    elif what == "emergency":
        print(f"\n{sig.name} again: emergency halt: orders cancelled, positions left as they "
              "are, HALTED until `arbops reset`.", file=sys.stderr, flush=True)


def cmd_serve(settings: Settings, args: NoArgs) -> int:
    from bot.serve import serve

    return asyncio.run(serve(settings))
