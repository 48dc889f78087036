"""All guards, evaluated on one snapshot (R-K3, R-K4).

Each check is a pure function of the snapshot and its own window state; the
book returns every verdict (OK included) so status can show the headroom.
"""
from __future__ import annotations

from guards.snapshot import Snapshot
from guards.thresholds import Thresholds
from guards.verdict import Action, Verdict
from guards.windows import CounterWindow, RollingMax, Sustained


def _v(action: Action, name: str, observed: float, threshold: float, window_s: float,
       reason: str) -> Verdict:
    return Verdict(action, name, float(observed), float(threshold), window_s, reason)


def _above(name: str, observed: float, threshold: float, action: Action, what: str,
           window_s: float = 0.0) -> Verdict:
    if observed > threshold:
        return _v(action, name, observed, threshold, window_s,
                  f"{what} {observed:.2f} > {threshold:g}")
    return _v(Action.OK, name, observed, threshold, window_s, "")


class GuardBook:
    def __init__(self, th: Thresholds) -> None:
        self.th = th
        self._latency = Sustained(th.latency_window_s)
        self._cpu = Sustained(th.cpu_window_s)
        self._errors = CounterWindow(60.0)
        self._rate_limits = CounterWindow(th.rate_limit_window_s)
        self._pnl_peak = RollingMax(th.pnl_fall_window_s)
        self._failed_seen = 0

    def evaluate(self, s: Snapshot) -> list[Verdict]:
        th = self.th
        out = [
            # §4.2 code-level guards
            _above("daily_loss", -s.daily_pnl_usd, th.daily_loss_usd, Action.KILL,
                   "daily loss $"),
            _above("single_trade_loss", -s.worst_trade_pnl_usd, th.single_trade_loss_usd,
                   Action.KILL, "single trade loss $"),
            _above("open_positions", s.open_positions, th.max_open_positions, Action.KILL,
                   "open positions"),
            _above("memory_kill", s.rss_mb, th.memory_kill_mb, Action.KILL, "RSS MB"),
            _above("consecutive_errors", s.consecutive_errors, th.max_consecutive_errors,
                   Action.KILL, "consecutive errors"),
            # §3.2 anomaly table
            _above("memory", s.rss_mb, th.memory_anomaly_mb, Action.KILL, "RSS MB"),
            _above("rss_growth", s.rss_mb - s.rss_baseline_mb, th.rss_growth_mb, Action.KILL,
                   "RSS growth since start MB"),
            _above("heartbeat", s.heartbeat_age_s, th.heartbeat_s, Action.KILL,
                   "engine heartbeat age s"),
            self._sustained("loop_latency", self._latency, s.loop_latency_ms, th.latency_ms, s,
                            "loop latency ms"),
            self._sustained("cpu", self._cpu, s.cpu_percent, th.cpu_percent, s, "CPU %"),
            self._pnl_fall(s),
            *self._errors_verdicts(s),
            self._rate_limit_hits(s),
            *self._inactivity(s),
            # §3.1 targets as alerts
            _above("rate_limit_wait", s.rate_limit_wait_s, th.rate_limit_wait_alert_s - 1e-12,
                   Action.ALERT, "rate-limit wait s"),
            self._failed_fills(s),
            _above("max_concurrent", s.open_positions, th.max_concurrent, Action.ALERT,
                   "open positions above max_concurrent"),
        ]
        if s.phase == 1 and s.unhandled_errors > 0:
            out.append(_v(Action.KILL, "phase1_exception", s.unhandled_errors, 0, 0.0,
                          f"phase 1 abort: {s.unhandled_errors} unhandled exception(s)"))
        return out

    def _sustained(self, name: str, window: Sustained, observed: float, threshold: float,
                   s: Snapshot, what: str) -> Verdict:
        held = window.update(observed > threshold, s.mono)
        if observed > threshold and held >= window.window_s:
            return _v(Action.KILL, name, observed, threshold, window.window_s,
                      f"{what} {observed:.1f} > {threshold:g} for {held:.0f} s")
        return _v(Action.OK, name, observed, threshold, window.window_s, "")

    def _pnl_fall(self, s: Snapshot) -> Verdict:
        th = self.th
        peak = self._pnl_peak.update(s.pnl_usd, s.mono)
        fall = peak - s.pnl_usd
        if fall > th.pnl_fall_usd:
            return _v(Action.KILL, "pnl_fall", fall, th.pnl_fall_usd, th.pnl_fall_window_s,
                      f"PnL fell ${fall:.2f} from its {th.pnl_fall_window_s / 60:.0f}-min peak "
                      f"${peak:.2f}")
        return _v(Action.OK, "pnl_fall", fall, th.pnl_fall_usd, th.pnl_fall_window_s, "")

    def _errors_verdicts(self, s: Snapshot) -> list[Verdict]:
        th = self.th
        per_min = self._errors.update(s.exchange_errors_total, s.mono)
        kill = _above("exchange_errors", per_min, th.exchange_errors_per_min, Action.KILL,
                      "exchange errors/min", 60.0)
        alert = (
            _v(Action.ALERT, "exchange_errors_target", per_min,
               th.exchange_errors_alert_per_min, 60.0,
               f"exchange errors/min {per_min} >= {th.exchange_errors_alert_per_min}")
            if per_min >= th.exchange_errors_alert_per_min
            else _v(Action.OK, "exchange_errors_target", per_min,
                    th.exchange_errors_alert_per_min, 60.0, "")
        )
        return [kill, alert]

    def _rate_limit_hits(self, s: Snapshot) -> Verdict:
        th = self.th
        hits = self._rate_limits.update(s.rate_limit_hits_total, s.mono)
        return _above("rate_limit_hits", hits, th.rate_limit_hits, Action.KILL,
                      f"rate-limit hits in {th.rate_limit_window_s / 60:.0f} min",
                      th.rate_limit_window_s)

    def _inactivity(self, s: Snapshot) -> list[Verdict]:
        th = self.th
        if s.run_started_mono is None:
            return []
        since_entry = s.mono - (s.last_entry_mono if s.last_entry_mono is not None
                                else s.run_started_mono)
        since_exit = s.mono - (s.last_exit_mono if s.last_exit_mono is not None
                               else s.run_started_mono)
        out = [
            _above("no_entry", since_entry, th.no_entry_alert_s, Action.ALERT,
                   "seconds without an entry"),
            _above("no_exit", since_exit, th.no_exit_alert_s, Action.ALERT,
                   "seconds without an exit"),
        ]
        if s.phase == 1 and s.last_entry_mono is None:
            out.append(_above("phase1_no_entry", since_entry, th.phase1_no_entry_kill_s,
                              Action.KILL, "phase 1 abort: seconds without an entry"))
        return out

    def _failed_fills(self, s: Snapshot) -> Verdict:
        new = s.failed_fills_total - self._failed_seen
        self._failed_seen = s.failed_fills_total
        if new > 0:
            return _v(Action.ALERT, "failed_fill", new, 0, 0.0, f"{new} failed fill(s)")
        return _v(Action.OK, "failed_fill", 0, 0, 0.0, "")


def worst(verdicts: list[Verdict]) -> Verdict | None:
    tripped = [v for v in verdicts if v.tripped]
    return max(tripped, key=lambda v: v.action) if tripped else None
