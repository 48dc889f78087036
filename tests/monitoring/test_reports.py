"""R-O4: daily, weekly and run reports from a hand-built journal (values computed by
hand in journal_fixture.py), and `arbops report` (the charts themselves:
test_charts.py).
"""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.cli.reports import cmd_report
from core.config.settings import Settings
from core.errors import ArbopsError
from core.monitoring.charts.worker import HANG_ENV
from core.monitoring.reports import build_report, default_date, resolve_date
from core.monitoring.reports.compute import daily_report, weekly_report
from core.monitoring.reports.run_report import format_run, run_report
from tests.monitoring.journal_fixture import KST, build_journal, kst

NOW = kst(12, 12)  # Monday 2026-01-12 12:00 KST: the whole week is over


@pytest.fixture
async def journal(tmp_path: Path) -> Path:
    return await build_journal(tmp_path)


def test_day_with_trades(journal: Path) -> None:
    r = daily_report(journal, date(2026, 1, 5), KST, NOW)
    assert r.complete
    assert r.start == "2026-01-05T00:00:00+09:00" and r.end == "2026-01-06T00:00:00+09:00"
    assert r.runs == 3  # R1 (from the day before), R2, R3 (crashed)
    assert r.runtime_hours == pytest.approx(2 + 1.5 + 1)
    assert r.round_trips == 5 and r.wins == 2  # a 0.0 trade is not a win; flat/open ignored
    assert r.total_pnl_usd == pytest.approx(-1.0)  # 3 - 5 + 2 - 1 + 0
    assert r.win_rate == pytest.approx(0.4)
    assert r.max_drawdown_usd == pytest.approx(5.0)  # peak +3 -> -2
    assert r.exchange_errors == 7  # R1: +3 at 01:00, +1 at 02:00; R2: +3
    assert r.rate_limit_hits == 3  # R1: +1; R2: +2
    assert [p for _, p in r.equity] == pytest.approx([3.0, -2.0, 0.0, -1.0, -1.0])


def test_day_without_trades_and_days_without_runs(journal: Path) -> None:
    r = daily_report(journal, date(2026, 1, 6), KST, NOW)
    assert (r.runs, r.round_trips, r.wins, r.total_pnl_usd) == (1, 0, 0, 0.0)
    assert r.runtime_hours == pytest.approx(0.5)  # the crashed R3 until its last snapshot
    assert r.win_rate is None and r.max_drawdown_usd == 0.0
    assert (r.exchange_errors, r.rate_limit_hits) == (4, 0)
    empty = daily_report(journal, date(2026, 1, 8), KST, NOW)
    assert (empty.runs, empty.runtime_hours, empty.round_trips) == (0, 0.0, 0)
    assert (empty.exchange_errors, empty.rate_limit_hits) == (0, 0)
    # R4's snapshots do not carry the counters: "not journaled", not zero.
    r7 = daily_report(journal, date(2026, 1, 7), KST, NOW)
    assert (r7.runs, r7.round_trips, r7.total_pnl_usd, r7.win_rate) == (1, 2, 6.0, 1.0)
    assert r7.exchange_errors is None and r7.rate_limit_hits is None
    # The day before: R1's first 2 hours and its +10 trade, counters up to 23:59.
    r4 = daily_report(journal, date(2026, 1, 4), KST, NOW)
    assert (r4.runtime_hours, r4.round_trips, r4.total_pnl_usd) == (2.0, 1, 10.0)
    assert (r4.exchange_errors, r4.rate_limit_hits) == (2, 0)


def test_running_run_counts_until_now(journal: Path) -> None:
    now = kst(6, 1)
    r5 = daily_report(journal, date(2026, 1, 5), KST, now, frozenset({"R3"}))
    assert r5.runtime_hours == pytest.approx(4.5)
    r6 = daily_report(journal, date(2026, 1, 6), KST, now, frozenset({"R3"}))
    assert not r6.complete and r6.runtime_hours == pytest.approx(1.0)


def test_week_with_a_losing_day(journal: Path) -> None:
    w = weekly_report(journal, date(2026, 1, 8), KST, NOW)  # any day of the week
    assert (w.week_start, w.week_end, w.complete) == ("2026-01-05", "2026-01-11", True)
    assert w.weekly_pnl_usd == pytest.approx(2.0)  # -1 + 0 + 6 + 0 - 3
    assert w.avg_win_rate == pytest.approx((0.4 + 1.0 + 0.0) / 3, abs=1e-6)
    assert w.pooled_win_rate == pytest.approx(4 / 8)
    assert w.round_trips == 8
    assert w.best_day == {"date": "2026-01-07", "pnl_usd": 6.0, "round_trips": 2}
    assert w.worst_day == {"date": "2026-01-09", "pnl_usd": -3.0, "round_trips": 1}
    assert w.runtime_hours == pytest.approx(4.5 + 0.5 + 1 + 1)
    assert (w.exchange_errors, w.rate_limit_hits) == (11, 3)
    assert next(d["date"] for d in w.days) == "2026-01-05" and len(w.days) == 7


def test_text_report_and_dates(journal: Path) -> None:
    text = build_report("daily", journal, date(2026, 1, 5), KST, NOW).text
    assert "Daily report 2026-01-05 (Asia/Seoul)" in text
    for line in ("Total runtime: 4.50 h", "Round trips: 5", "Strategy PnL (closed round trips): $-1.00",
                 "Win rate: 40.0%", "Max drawdown: $5.00", "Exchange API errors: 7",
                 "Rate-limit hits: 3"):
        assert line in text
    weekly = build_report("weekly", journal, date(2026, 1, 5), KST, NOW).text
    assert "Weekly PnL: $+2.00" in weekly and "Worst day: 2026-01-09 $-3.00" in weekly
    assert "Best day: 2026-01-07 $+6.00" in weekly and "Avg win rate: 46.7%" in weekly
    assert default_date("daily", NOW, KST) == date(2026, 1, 11)
    assert default_date("weekly", NOW, KST) == date(2026, 1, 5)
    assert resolve_date("today", "daily", NOW, KST) == date(2026, 1, 12)
    assert resolve_date("2026-01-07", "daily", NOW, KST) == date(2026, 1, 7)


def test_cli_report_prints_the_same_report(journal: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=journal.parent)
    png = tmp_path / "out" / "weekly.png"
    args = SimpleNamespace(kind="weekly", date="2026-01-07", png=str(png), json_output=True)
    assert cmd_report(settings, args, now=NOW) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["weekly_pnl_usd"] == pytest.approx(2.0)
    assert data["best_day"]["date"] == "2026-01-07" and data["png_path"] == str(png)
    assert data["chart_error"] is None
    head = png.read_bytes()[:24]  # the signature, then IHDR's width and height
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert head[16:24] == (1080).to_bytes(4, "big") + (720).to_bytes(4, "big")
    args = SimpleNamespace(kind="daily", date="2026-01-05", png=None, json_output=False)
    assert cmd_report(settings, args, now=NOW) == 0
    out = capsys.readouterr().out
    assert out.startswith("Daily report 2026-01-05") and "Win rate: 40.0%" in out


def test_cli_report_refuses_bad_input(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "nothing")
    with pytest.raises(ArbopsError) as bad_date:
        cmd_report(settings, SimpleNamespace(kind="daily", date="2026-13-01"), now=NOW)
    assert bad_date.value.code == 2
    with pytest.raises(ArbopsError) as no_db:
        cmd_report(settings, SimpleNamespace(kind="daily", date=None), now=NOW)
    assert no_db.value.code == 1


def test_run_reports(journal: Path) -> None:
    r2 = run_report(journal, "R2", KST, NOW)
    assert (r2.status, r2.finished, r2.running, r2.duration_hours) == ("completed", True,
                                                                        False, 1.5)
    assert (r2.round_trips, r2.wins, r2.pnl_usd, r2.fees_usd) == (3, 1, 1.0, 0.3)
    assert r2.max_drawdown_usd == pytest.approx(1.0)  # +2 -> +1
    assert r2.win_rate == pytest.approx(1 / 3)
    assert [v for _, v in r2.equity] == [2.0, 1.0, 1.0]  # the flat/open rows are not trades
    assert r2.kpi is not None and r2.kpi["exchange_errors"] == 3 and not r2.kpi["final"]
    assert r2.kpi["total_pnl_usd"] is None and r2.mtm == []  # these snapshots carry no PnL
    text = format_run(r2)
    for line in ("Run report R2", "paper, phase 1, top10, sim: completed (duration_elapsed)",
                 "Start 2026-01-05 10:00, end 2026-01-05 11:30 (Asia/Seoul): 1.50 h",
                 "Round trips: 3 (wins 1)", "Closed-trade PnL: $+1.00 (fees $0.30 included)",
                 "Win rate: 33.3%", "Max drawdown (closed trades): $1.00",
                 "KPI (checkpoint 2026-01-05 11:30): strategy PnL n/a marked to market",
                 "Exchange API errors: 3; rate-limit hits: 2"):
        assert line in text, line
    crashed = run_report(journal, "R3", KST, NOW)  # never finished: until its last snapshot
    assert (crashed.finished, crashed.end_ts, crashed.round_trips) == (False, kst(6, 0, 30), 0)
    assert "never finished" in format_run(crashed) and "last seen 2026-01-06 00:30" in (
        format_run(crashed))
    running = run_report(journal, "R3", KST, kst(6, 1), frozenset({"R3"}))
    assert running.running and running.end_ts == kst(6, 1) and "so far" in format_run(running)
    r5 = run_report(journal, "R5", KST, NOW)
    assert r5.kpi is None and "KPI: no snapshot journaled" in format_run(r5)
    assert run_report(journal, "last", KST, NOW).run_id == "R5"  # the newest start
    with pytest.raises(ArbopsError) as missing:
        run_report(journal, "R9", KST, NOW)
    assert missing.value.code == 2 and "no run 'R9'" in str(missing.value)
    with pytest.raises(ArbopsError):
        run_report(journal, "../../etc/passwd", KST, NOW)


def test_cli_report_run_with_its_chart(journal: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(data_dir=journal.parent)
    png = tmp_path / "r2.png"
    args = SimpleNamespace(kind="run", run_id="R2", png=str(png), json_output=False)
    assert cmd_report(settings, args, now=NOW) == 0
    out = capsys.readouterr().out
    assert out.startswith("Run report R2") and f"Chart: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_report_when_the_chart_hangs(journal: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The worker hangs: it is cut off at the time limit, the report is still printed,
    the reason goes to stderr and the exit code says the file is missing (1)."""
    monkeypatch.setenv(HANG_ENV, "1")
    settings = Settings(data_dir=journal.parent, report_chart_timeout_s=1.0)
    png = tmp_path / "d.png"
    args = SimpleNamespace(kind="daily", date="2026-01-05", png=str(png), json_output=False)
    assert cmd_report(settings, args, now=NOW) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("Daily report 2026-01-05") and "Chart:" not in captured.out
    assert "no chart written: chart not drawn within 1 s" in captured.err
    assert not png.exists()
