"""R-O4: daily and weekly reports from a hand-built journal (values computed by
hand in journal_fixture.py), the PNG charts, and `arbops report`.
"""
from __future__ import annotations

import json
import struct
import zlib
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from bot.cli.reports import cmd_report
from core.monitoring.reports import build_report, default_date, resolve_date
from core.monitoring.reports.compute import daily_report, weekly_report
from core.monitoring.reports.png import Canvas
from core.settings import Settings
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


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.setdefault(kind, b"")
        chunks[kind] += body
        pos += 12 + length
    assert next(iter(chunks)) == b"IHDR" and b"IEND" in chunks
    w, h, depth, ctype, _, _, _ = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert (depth, ctype) == (8, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    assert len(raw) == h * (1 + 3 * w)
    return w, h, raw


def _colors(w: int, h: int, raw: bytes) -> set[tuple[int, int, int]]:
    out = set()
    for y in range(h):
        row = raw[y * (1 + 3 * w) + 1:(y + 1) * (1 + 3 * w)]
        out.update(tuple(row[i:i + 3]) for i in range(0, len(row), 3))
    return out


def test_charts_are_valid_non_blank_pngs(journal: Path, tmp_path: Path) -> None:
    daily = build_report("daily", journal, date(2026, 1, 5), KST, NOW,
                         png_path=tmp_path / "d.png")
    w, h, raw = _png_pixels(daily.png_path.read_bytes())
    colors = _colors(w, h, raw)
    assert (w, h) == (640, 320) and len(colors) >= 3
    assert (40, 90, 200) in colors  # the equity curve
    weekly = build_report("weekly", journal, date(2026, 1, 5), KST, NOW,
                          png_path=tmp_path / "w.png")
    colors = _colors(*_png_pixels(weekly.png_path.read_bytes()))
    assert {(30, 150, 60), (200, 40, 40)} <= colors  # a green and a red bar
    empty = build_report("daily", journal, date(2026, 1, 8), KST, NOW,
                         png_path=tmp_path / "e.png")
    assert len(_colors(*_png_pixels(empty.png_path.read_bytes()))) >= 3  # axes, zero line


def test_canvas_primitives() -> None:
    c = Canvas(5, 4)
    c.line(0, 0, 4, 3, (1, 2, 3))
    assert c.get(0, 0) == (1, 2, 3) and c.get(4, 3) == (1, 2, 3)
    c.rect(1, 1, 2, 2, (9, 9, 9))
    assert c.get(2, 2) == (9, 9, 9)
    w, h, _raw = _png_pixels(c.png())
    assert (w, h) == (5, 4)


def test_text_report_and_dates(journal: Path) -> None:
    text = build_report("daily", journal, date(2026, 1, 5), KST, NOW).text
    assert "Daily report 2026-01-05 (Asia/Seoul)" in text
    for line in ("Total runtime: 4.50 h", "Round trips: 5", "Total PnL: $-1.00",
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
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = SimpleNamespace(kind="daily", date="2026-01-05", png=None, json_output=False)
    assert cmd_report(settings, args, now=NOW) == 0
    out = capsys.readouterr().out
    assert out.startswith("Daily report 2026-01-05") and "Win rate: 40.0%" in out


def test_cli_report_refuses_bad_input(tmp_path: Path) -> None:
    from core.errors import ArbopsError

    settings = Settings(data_dir=tmp_path / "nothing")
    with pytest.raises(ArbopsError) as bad_date:
        cmd_report(settings, SimpleNamespace(kind="daily", date="2026-13-01"), now=NOW)
    assert bad_date.value.code == 2
    with pytest.raises(ArbopsError) as no_db:
        cmd_report(settings, SimpleNamespace(kind="daily", date=None), now=NOW)
    assert no_db.value.code == 1
