"""`python -m bot.drill.emulator [--port 8765] [--seed 7] [--top-n 50] ...`"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from bot.drill.emulator.server import serve_forever


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bot.drill.emulator", description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--top-n", type=int, default=50)
    ap.add_argument("--interval", type=float, default=0.1, help="sim step seconds")
    ap.add_argument("--no-autostep", action="store_true", help="step only via POST /admin/step")
    ap.add_argument("--manual-clock", action="store_true",
                    help="the market moves only with POST /admin/advance (a shared data clock)")
    ap.add_argument("--faults", default=None, help="JSON list of fault specs applied at start-up")
    ap.add_argument("--limits", default=None,
                    help='JSON request-limit overrides, e.g. {"enforce": false}')
    ap.add_argument("--jump-rate", type=float, default=1.0,
                    help="premium jumps per minute (more jumps, more entries)")
    ap.add_argument("--bnb-discount", action="store_true",
                    help="Binance charges fees in BNB (the account's discount on)")
    args = ap.parse_args(argv)
    faults = json.loads(args.faults) if args.faults else None
    limits = json.loads(args.limits) if args.limits else None
    try:
        asyncio.run(
            serve_forever(
                host=args.host,
                port=args.port,
                seed=args.seed,
                top_n=args.top_n,
                interval_s=args.interval,
                autostep=not args.no_autostep,
                faults=faults,
                limits=limits,
                bnb_discount=args.bnb_discount,
                manual_clock=args.manual_clock,
                jump_rate_per_min=args.jump_rate,
            )
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
