"""R-O2 / R-K4: docs/prometheus rules and the Grafana dashboard, checked with the
real promtool.

- `promtool check rules` and `check config` on the shipped files;
- `promtool test rules` with synthetic series: every alert fires after its
  `for:` (or window) and not before, just past its threshold and not at/below;
- every Grafana panel's PromQL parses (wrapped as recording rules) and names
  only metrics the service exports (taken from a real scrape).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from core.monitoring.metrics import ArbMetrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docs" / "prometheus" / "alerts.yml"
PROM_CONFIG = ROOT / "docs" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "docs" / "grafana" / "arbops.json"
TARGET = {"job": "arbops", "instance": "localhost:9100"}


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: run scripts/test-services.sh (apt-get install prometheus)"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          check=False)


def sel(name: str, **labels: str) -> str:
    all_labels = {**TARGET, **labels}
    inner = ", ".join(f'{k}="{v}"' for k, v in all_labels.items())
    return f"{name}{{{inner}}}"


@dataclass
class Case:
    alert: str
    severity: str
    action: str
    interval: str
    series: dict[str, str]
    checks: list[tuple[str, bool]]  # (eval time, firing?)
    labels: dict[str, str] = field(default_factory=lambda: dict(TARGET))


LAT_SUM, LAT_COUNT = "arbitrage_loop_latency_ms_sum", "arbitrage_loop_latency_ms_count"
# Latency series: 15 ticks per 15 s, so rate(count[1m]) is exactly 1.0 and the average
# is exactly the per-tick value (no float noise at the threshold).
CASES = [
    # --- §3.2 anomaly table (kill) ---
    # rate() needs two samples (t=15s): active from 15s, fires 1m later.
    Case("ArbitrageLoopLatencyHigh", "critical", "kill", "15s",
         {sel(LAT_SUM): "0+1515x30", sel(LAT_COUNT): "0+15x30"},  # avg 101 ms
         [("1m", False), ("1m15s", True)]),
    Case("ArbitrageLoopLatencyHigh", "critical", "kill", "15s",
         {sel(LAT_SUM): "0+1500x30", sel(LAT_COUNT): "0+15x30"},  # avg 100 ms: at threshold
         [("2m", False), ("5m", False)]),
    Case("ArbitrageCpuHigh", "critical", "kill", "15s", {sel("arbitrage_cpu_percent"): "81x20"},
         [("1m45s", False), ("2m", True)]),
    Case("ArbitrageCpuHigh", "critical", "kill", "15s", {sel("arbitrage_cpu_percent"): "80x20"},
         [("5m", False)]),
    Case("ArbitrageMemoryHigh", "critical", "kill", "15s", {sel("arbitrage_memory_mb"): "301x8"},
         [("0s", True), ("1m", True)]),
    Case("ArbitrageMemoryHigh", "critical", "kill", "15s", {sel("arbitrage_memory_mb"): "300x8"},
         [("0s", False), ("1m", False)]),
    Case("ArbitragePnlFall", "critical", "kill", "1m",
         {sel("arbitrage_pnl_usd_total"): "60 60 60 9x40"},  # falls $51 at 3m
         [("2m", False), ("3m", True), ("32m", True), ("33m", False)]),  # peak leaves 30m window
    Case("ArbitragePnlFall", "critical", "kill", "1m",
         {sel("arbitrage_pnl_usd_total"): "60 60 60 10x10"},  # falls exactly $50
         [("3m", False), ("5m", False)]),
    Case("ArbitragePnlFall", "critical", "kill", "1m",  # a restart resets the gauge: no fall
         {sel("arbitrage_pnl_usd_total"): "60 60 60 0x10",
          sel("process_start_time_seconds"): "100 100 100 400x10"},
         [("3m", False), ("10m", False)]),
    Case("ArbitrageExchangeErrors", "critical", "kill", "15s",  # 11/min over both venues
         {sel("arbitrage_exchange_errors_total", exchange="upbit"): "0+1.5x20",
          sel("arbitrage_exchange_errors_total", exchange="binance"): "0+1.25x20"},
         [("45s", False), ("1m", True), ("3m", True)]),
    Case("ArbitrageExchangeErrors", "critical", "kill", "15s",  # exactly 10/min
         {sel("arbitrage_exchange_errors_total", exchange="upbit"): "0+1.25x20",
          sel("arbitrage_exchange_errors_total", exchange="binance"): "0+1.25x20"},
         [("1m", False), ("3m", False)]),
    Case("ArbitrageRateLimitHits", "critical", "kill", "1m",
         {sel("arbitrage_rate_limit_hits_total", exchange="binance"): "0 0 0 6x20"},
         [("2m", False), ("3m", True), ("12m", True), ("14m", False)]),
    Case("ArbitrageRateLimitHits", "critical", "kill", "1m",
         {sel("arbitrage_rate_limit_hits_total", exchange="binance"): "0 0 0 5x20"},
         [("3m", False), ("8m", False)]),
    Case("ArbitrageHeartbeatStale", "critical", "kill", "15s",
         {sel("arbitrage_heartbeat_age_seconds"): "1 5.5x4"}, [("0s", False), ("15s", True)]),
    Case("ArbitrageHeartbeatStale", "critical", "kill", "15s",
         {sel("arbitrage_heartbeat_age_seconds"): "5x4"}, [("15s", False)]),
    Case("ArbitrageTargetDown", "critical", "alert", "15s", {sel("up"): "0x10"},
         [("15s", False), ("30s", True)]),
    Case("ArbitrageTargetDown", "critical", "alert", "15s", {sel("up"): "1x10"},
         [("1m", False)]),
    Case("ArbitrageNoEntry", "warning", "alert", "15s",
         {sel("arbitrage_seconds_since_entry"): "285 300 315"}, [("15s", False), ("30s", True)]),
    Case("ArbitrageNoExit", "warning", "alert", "15s",
         {sel("arbitrage_seconds_since_exit"): "585 600 615"}, [("15s", False), ("30s", True)]),
    # --- §4.2 code guards (kill) ---
    Case("ArbitrageDailyLoss", "critical", "kill", "15s",
         {sel("arbitrage_daily_pnl_usd"): "-299 -300 -301"}, [("15s", False), ("30s", True)]),
    Case("ArbitrageOpenPositionsKill", "critical", "kill", "15s",
         {sel("arbitrage_open_positions"): "10 11"}, [("0s", False), ("15s", True)]),
    Case("ArbitrageMemoryKill", "critical", "kill", "15s",
         {sel("arbitrage_memory_mb"): "500 501"}, [("0s", False), ("15s", True)]),
    # --- §3.1 targets ---
    Case("ArbitrageLatencyTarget", "warning", "target", "15s",
         {sel(LAT_SUM): "0+750x40", sel(LAT_COUNT): "0+15x40"},  # avg exactly 50 ms
         [("5m", False), ("5m15s", True)]),
    Case("ArbitrageLatencyTarget", "warning", "target", "15s",
         {sel(LAT_SUM): "0+742.5x40", sel(LAT_COUNT): "0+15x40"}, [("8m", False)]),
    Case("ArbitrageWinRateLow", "warning", "target", "1m",
         {sel("arbitrage_win_rate"): "0.49x30", sel("arbitrage_round_trips_total"): "0+1x30"},
         [("14m", False), ("15m", True)]),  # 5 round trips at 5m, then 10 min
    Case("ArbitrageWinRateLow", "warning", "target", "1m",
         {sel("arbitrage_win_rate"): "0.5x30", sel("arbitrage_round_trips_total"): "0+1x30"},
         [("20m", False)]),
    Case("ArbitrageCpuTarget", "warning", "target", "15s", {sel("arbitrage_cpu_percent"): "50x30"},
         [("4m45s", False), ("5m", True)]),
    Case("ArbitrageCpuTarget", "warning", "target", "15s",
         {sel("arbitrage_cpu_percent"): "49.9x30"}, [("6m", False)]),
    Case("ArbitrageMemoryTarget", "warning", "target", "15s",
         {sel("arbitrage_memory_mb"): "200x30"}, [("4m45s", False), ("5m", True)]),
    Case("ArbitrageMemoryTarget", "warning", "target", "15s",
         {sel("arbitrage_memory_mb"): "199x30"}, [("6m", False)]),
    Case("ArbitrageExchangeErrorsTarget", "warning", "alert", "15s",  # exactly 5/min
         {sel("arbitrage_exchange_errors_total", exchange="upbit"): "0+1.25x20"},
         [("45s", False), ("1m", True)]),
    Case("ArbitrageExchangeErrorsTarget", "warning", "alert", "15s",  # 4/min
         {sel("arbitrage_exchange_errors_total", exchange="upbit"): "0+1x20"}, [("2m", False)]),
    Case("ArbitrageRateLimitWait", "warning", "alert", "15s",
         {sel("arbitrage_rate_limit_wait_seconds", exchange="upbit"): "0.99 1"},
         [("0s", False), ("15s", True)]),
    Case("ArbitrageFailedFill", "warning", "alert", "15s",
         {sel("arbitrage_failed_fills_total"): "0 0 0 1x30"}, [("30s", False), ("45s", True)]),
    Case("ArbitrageFailedFill", "warning", "alert", "15s",
         {sel("arbitrage_failed_fills_total"): "0x30"}, [("5m", False)]),
    Case("ArbitrageOpenPositionsAboveMax", "warning", "alert", "15s",
         {sel("arbitrage_open_positions"): "5 6"}, [("0s", False), ("15s", True)]),
]


def _strip_annotations(text: str) -> str:
    """The rules without their (static) annotations, so expectations need only labels."""
    out, skip_indent = [], None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip_indent is not None and (not line.strip() or indent > skip_indent):
            continue
        skip_indent = None
        if line.strip() == "annotations:":
            skip_indent = indent
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _alert_names(text: str) -> set[str]:
    return set(re.findall(r"^\s*- alert: (\S+)", text, re.MULTILINE))


def test_shipped_rules_and_config_are_valid() -> None:
    rules = promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = promtool("check", "config", str(PROM_CONFIG))
    assert config.returncode == 0, config.stdout + config.stderr
    assert "localhost:9100" in PROM_CONFIG.read_text()


def test_every_alert_fires_after_its_duration_and_only_past_its_threshold(
        tmp_path: Path) -> None:
    text = RULES.read_text()
    assert {c.alert for c in CASES} == _alert_names(text), "every alert has a case"
    for name in _alert_names(text):
        assert any(c.alert == name and not all(f for _, f in c.checks) for c in CASES), name
        assert any(c.alert == name and any(f for _, f in c.checks) for c in CASES), name
    (tmp_path / "alerts.yml").write_text(_strip_annotations(text))
    assert promtool("check", "rules", str(tmp_path / "alerts.yml")).returncode == 0
    tests = []
    for case in CASES:
        tests.append({
            "interval": case.interval,
            "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
            "alert_rule_test": [{
                "eval_time": t, "alertname": case.alert,
                "exp_alerts": [{"exp_labels": {**case.labels, "severity": case.severity,
                                               "action": case.action}}] if firing else [],
            } for t, firing in case.checks],
        })
    doc = {"rule_files": ["alerts.yml"], "evaluation_interval": "15s", "tests": tests}
    (tmp_path / "tests.yml").write_text(json.dumps(doc, indent=1))  # JSON is YAML
    result = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana -------------------------------------------------------------------------
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "offset", "bool", "inf", "nan", "le",
}


def _panel_exprs(dash: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def _grafana_to_promql(expr: str) -> str:
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
            .replace("$__range", "1h"))


def _metric_names(expr: str) -> set[str]:
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        rest = e[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if m.group(0).lower() in PROMQL_WORDS:
            continue
        names.add(m.group(0))
    return names


def _exported_names() -> set[str]:
    class Idle:  # a service with no run: every always-present family
        current = None
        clock = type("C", (), {"time": staticmethod(lambda: 0.0),
                               "monotonic": staticmethod(lambda: 0.0)})()
        state = type("S", (), {"state": "ACTIVE"})()

        def daily_pnl(self, now: float, pnl: float) -> float:
            return pnl

        def is_armed(self) -> bool:
            return False

    text = ArbMetrics(Idle()).generate().decode()
    names = set()
    for fam in text_string_to_metric_families(text):
        names.update(s.name for s in fam.samples)
    # Families present only while a run is active.
    names |= {"arbitrage_run_info", "arbitrage_seconds_since_entry",
              "arbitrage_seconds_since_exit", "arbitrage_heartbeat_age_seconds"}
    return names


def test_dashboard_promql_parses_and_names_only_exported_metrics(tmp_path: Path) -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = _panel_exprs(dash)
    assert len(exprs) >= 15
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for needed in ("pnl", "latency histogram", "latency quantiles", "cpu", "memory",
                   "exchange api errors", "rate-limit", "open positions", "trading state",
                   "arm", "alert history"):
        assert needed in titles, needed
    assert any(a.get("expr", "").startswith("ALERTS{") for a in dash["annotations"]["list"])
    rules = "\n".join(
        f"      - record: grafana:panel_{i}\n        expr: {json.dumps(_grafana_to_promql(e))}"
        for i, (_, e) in enumerate(exprs))
    (tmp_path / "panels.yml").write_text(f"groups:\n  - name: grafana\n    rules:\n{rules}\n")
    result = promtool("check", "rules", str(tmp_path / "panels.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    exported = _exported_names()
    for title, expr in exprs:
        unknown = _metric_names(_grafana_to_promql(expr)) - exported
        assert not unknown, f"panel {title!r} names {unknown}"
    # The alert rules too name only exported metrics (plus Prometheus' own `up`).
    for expr in re.findall(r"expr: (?:>-\n)?(.+?)\n\s+(?:for|labels):", RULES.read_text(),
                           re.DOTALL):
        unknown = _metric_names(" ".join(expr.split())) - exported - {"up"}
        assert not unknown, f"rule {expr!r} names {unknown}"


def test_metric_name_extraction_sees_names_and_skips_syntax() -> None:
    names = _metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="y"}[1m])))'
                          ' / on (job) b_total > bool 3 unless c')
    assert names == {"a_bucket", "b_total", "c"}
