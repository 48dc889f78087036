"""Fault injection for crash tests: die with SIGKILL at a named point of the
order path (the crash harness). Off unless ARBOPS_FAULT_CRASH_AT is set,
e.g. `after_send:3` = the third time an order has been sent but its ack not
yet recorded; `raise:run_loop:50` raises "Too many open files" in the run loop's
50th pass instead (an unexpected exception inside a running phase, which must end
in a kill). Never set it outside tests and drills.

The points: before_send / after_send (around an order's send), after_fill (a fill
seen, its journal record only queued), in_flush (the write-behind's batch written
but not committed), in_recovery (start-up recovery between two intents, and
between a cancel and its record), in_kill (the kill procedure: the HALT kept, then
the cancels done), in_close (the run's end, resolving its intents), run_loop.
"""
from __future__ import annotations

import errno
import os
import signal

POINTS = ("before_send", "after_send", "after_fill", "in_flush", "in_recovery", "in_kill",
          "in_close", "run_loop")


class CrashPoints:
    def __init__(self, spec: str | None) -> None:
        self.point: str | None = None
        self.at = 0
        self.seen = 0
        self.raises = False
        if spec:
            self.raises = spec.startswith("raise:")
            point, _, n = spec.removeprefix("raise:").partition(":")
            if point not in POINTS or not n.isdigit() or int(n) < 1:
                raise ValueError(f"crash point {spec!r}: expected one of {POINTS} and :N >= 1")
            self.point, self.at = point, int(n)

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        self.seen += 1
        if self.seen == self.at:
            if self.raises:
                raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
            os.kill(os.getpid(), signal.SIGKILL)


NO_CRASH = CrashPoints(None)
