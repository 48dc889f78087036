"""Small window states the guards keep between samples. Pure: time comes in."""
from __future__ import annotations

from collections import deque


class Sustained:
    """True once a condition has held on every sample for `window_s`.

    A single sample that does not breach resets the streak, so a spike shorter
    than the window never counts.
    """

    __slots__ = ("since", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self.since: float | None = None

    def update(self, breach: bool, mono: float) -> float:
        """Seconds the current breach has held (0 when not breaching)."""
        if not breach:
            self.since = None
            return 0.0
        if self.since is None:
            self.since = mono
        return mono - self.since


class CounterWindow:
    """How much a cumulative counter rose over the last `window_s`."""

    __slots__ = ("_points", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._points: deque[tuple[float, int]] = deque()

    def update(self, total: int, mono: float) -> int:
        self._points.append((mono, total))
        while len(self._points) > 1 and mono - self._points[1][0] >= self.window_s:
            self._points.popleft()
        # The oldest point kept is the last one at or before the window's start
        # (or the first sample ever): the count at the window's start.
        return total - self._points[0][1]


class RollingMax:
    """Peak of a series over the last `window_s` (monotonic deque)."""

    __slots__ = ("_q", "window_s")

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._q: deque[tuple[float, float]] = deque()

    def update(self, value: float, mono: float) -> float:
        while self._q and self._q[-1][1] <= value:
            self._q.pop()
        self._q.append((mono, value))
        while mono - self._q[0][0] > self.window_s:
            self._q.popleft()
        return self._q[0][1]
