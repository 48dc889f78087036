"""Issue #18: charts drawn by matplotlib in a worker process, from hand-built journals
and hand-built backtest data, checked pixel by pixel; a hung render is cut off.

One worker process draws every chart of this module (a module fixture, one start-up
of about a second); the tests then read the images it returned. The plot areas come
from the worker itself (each axes' box in pixels), so "non-blank" means the plot
area, not the title or the labels.
"""
from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from core.errors import ChartFailed, ChartTimeout
from core.monitoring.charts.data import (
    BLUE,
    GREEN,
    ORANGE,
    PURPLE,
    RED,
    RUN_SHADE,
    BacktestChart,
    phone_pixels,
    rgb,
    usd,
)
from core.monitoring.charts.render import ChartJob, render_charts
from core.monitoring.charts.worker import HANG_ENV
from core.monitoring.reports.chart_data import daily_chart, run_chart, weekly_chart
from core.monitoring.reports.compute import daily_report, weekly_report
from core.monitoring.reports.run_report import run_report
from tests.monitoring.journal_fixture import (
    KST,
    build_inventory_journal,
    build_journal,
    kst,
)

NOW = kst(14, 12)  # both journals' days are over


def backtest_data() -> BacktestChart:
    """Three days of 1-minute data with a 6-hour hole, two round trips (one won, one
    lost), inventory and total lines."""
    t0 = kst(5, 0)
    times = [t0 + 60 * i for i in range(3 * 1440) if not 1800 <= i < 2160]
    premium = [(t, 150.0 + 12.0 * ((i % 240) / 240.0 - 0.5)) for i, t in enumerate(times)]
    baseline = [(t, 150.0) for t in times]
    equity = [(t, 0.0 if t < kst(5, 10) else 2.5 if t < kst(6, 14) else -1.0) for t in times]
    inventory = [(t, -3.0 + i / 1000.0) for i, t in enumerate(times)]
    total = [(t, e + v) for (t, e), (_, v) in zip(equity, inventory, strict=True)]
    markers: list[Any] = [{"ts": kst(5, 9), "value": 156.0, "kind": "entry"},
                          {"ts": kst(5, 10), "value": 150.0, "kind": "exit"},
                          {"ts": kst(6, 13), "value": 144.0, "kind": "entry"},
                          {"ts": kst(6, 14), "value": 150.5, "kind": "exit"}]
    return {"title": "Backtest <BTC> & co", "subtitle": "hand-built data",
            "timezone": "Asia/Seoul", "equity": equity, "inventory": inventory,
            "total": total, "premium": {"label": "BTC premium", "points": premium,
                                        "baseline": baseline},
            "markers": markers,
            "days": [{"date": "2026-01-05", "pnl_usd": 2.5, "round_trips": 1, "ran": True},
                     {"date": "2026-01-06", "pnl_usd": -3.5, "round_trips": 1, "ran": True},
                     {"date": "2026-01-07", "pnl_usd": 0.0, "round_trips": 0, "ran": True}],
            "summary": [["strategy PnL", "-$1.00"], ["fees <all legs>", "$0.64"]]}


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every chart of this module, drawn by one worker process."""
    base = tmp_path_factory.mktemp("charts")
    (base / "a").mkdir()
    (base / "b").mkdir()
    db = asyncio.run(build_journal(base / "a"))
    inv_db = asyncio.run(build_inventory_journal(base / "b"))
    reports = {
        "trades": daily_report(db, date(2026, 1, 5), KST, NOW),
        "no_trades": daily_report(db, date(2026, 1, 6), KST, NOW),
        "no_run": daily_report(db, date(2026, 1, 8), KST, NOW),
        "losing": daily_report(db, date(2026, 1, 9), KST, NOW),
        "inventory": daily_report(inv_db, date(2026, 1, 13), KST, NOW),
    }
    charts: dict[str, ChartJob] = {k: ChartJob("timeline", daily_chart(r, NOW))
                                   for k, r in reports.items()}
    week = weekly_report(db, date(2026, 1, 5), KST, NOW)
    charts["week"] = ChartJob("weekly", weekly_chart(week))
    charts["run"] = ChartJob("timeline", run_chart(run_report(inv_db, "R6", KST, NOW), NOW))
    bt = backtest_data()
    charts.update(backtest=ChartJob("backtest", bt), svg=ChartJob("backtest", bt, "svg"),
                  html=ChartJob("backtest", bt, "html"))
    result = render_charts(list(charts.values()), timeout_s=60)
    return {"images": dict(zip(charts, result.images, strict=True)),
            "axes": dict(zip(charts, result.stats["axes"], strict=True)),
            "reports": reports, "week": week, "stats": result.stats}


def image(drawn: dict[str, Any], name: str) -> Image.Image:
    data = drawn["images"][name]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()  # decodes every byte: a truncated or corrupt PNG fails here
    return img.convert("RGB")


def colours(img: Image.Image, box: list[int]) -> dict[tuple[int, int, int], int]:
    """Pixel counts per colour inside a plot area (a 2-pixel inset off the spines)."""
    left, top, right, bottom = box
    crop = img.crop((left + 2, top + 2, right - 2, bottom - 2))
    return {c: n for n, c in crop.getcolors(maxcolors=1 << 22)}


def near(counts: dict[tuple[int, int, int], int], hex_colour: str, tol: int = 10) -> int:
    r0, g0, b0 = rgb(hex_colour)
    return sum(n for (r, g, b), n in counts.items()
               if abs(r - r0) <= tol and abs(g - g0) <= tol and abs(b - b0) <= tol)


def tint(hex_colour: str, alpha: float) -> str:
    """The colour of `hex_colour` at `alpha` over white (how the fills come out)."""
    return "#" + "".join(f"{round(c * alpha + 255 * (1 - alpha)):02x}" for c in rgb(hex_colour))


def blank_share(counts: dict[tuple[int, int, int], int]) -> float:
    return counts.get((255, 255, 255), 0) / sum(counts.values())


def test_daily_charts_are_phone_sized_pngs_with_their_lines(drawn: dict[str, Any]) -> None:
    for name in ("trades", "no_trades", "no_run", "losing", "inventory", "run"):
        img = image(drawn, name)
        assert img.size == phone_pixels("timeline") == (1080, 720), name
        (box,) = drawn["axes"][name]
        assert box[2] - box[0] > 700 and box[3] - box[1] > 250, (name, box)  # room to read
        counts = colours(img, box)
        assert blank_share(counts) < 0.97, name
        assert near(counts, BLUE) > 400, name  # the strategy equity line
    trades = colours(image(drawn, "trades"), drawn["axes"]["trades"][0])
    assert near(trades, tint(RED, 0.16), tol=4) > 5000  # the drawdown, shaded
    assert near(trades, RUN_SHADE, tol=3) > 2000  # R1 (from the day before) and R2
    assert near(trades, ORANGE) > 300  # fees
    assert near(trades, PURPLE) == 0  # no inventory figure journaled: no line
    no_trades = colours(image(drawn, "no_trades"), drawn["axes"]["no_trades"][0])
    assert near(no_trades, RUN_SHADE, tol=3) > 1000  # R3, crashed: until its last snapshot
    assert near(no_trades, tint(RED, 0.16), tol=4) == 0  # no drawdown
    no_run = colours(image(drawn, "no_run"), drawn["axes"]["no_run"][0])
    assert near(no_run, RUN_SHADE, tol=3) == 0


def test_a_losing_day_falls_from_zero(drawn: dict[str, Any]) -> None:
    """R5 lost $3 at 12:30: the line is at $0 before and at -$3 after, with the fall
    shaded; the blue pixels are at two heights, the lower one right of 12:30."""
    report = drawn["reports"]["losing"]
    assert (report.total_pnl_usd, report.max_drawdown_usd, report.runs) == (-3.0, 3.0, 1)
    img = image(drawn, "losing")
    left, top, right, bottom = drawn["axes"]["losing"][0]
    blue = rgb(BLUE)

    def blue_rows(x0: int, x1: int) -> list[int]:
        return [y for y in range(top + 2, bottom - 2)
                if any(_close(img.getpixel((x, y)), blue) for x in range(x0, x1, 3))]

    width = right - left
    early = blue_rows(left + 10, left + width // 3)  # 00:00-08:00: still at $0
    late = blue_rows(left + 2 * width // 3, right - 10)  # 16:00-24:00: at -$3
    assert early and late and min(late) > max(early) + 100
    counts = colours(img, drawn["axes"]["losing"][0])
    assert near(counts, tint(RED, 0.16), tol=4) > 5000


def _close(p: Any, q: tuple[int, int, int], tol: int = 10) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(p, q, strict=True))


def test_inventory_revaluation_is_drawn_when_journaled(drawn: dict[str, Any]) -> None:
    report = drawn["reports"]["inventory"]
    assert report.inventory == [(kst(13, 10), 0.0), (kst(13, 10, 30), -2.0),
                                (kst(13, 11), 3.0), (kst(13, 23, 30), 4.0)]
    assert report.fees_usd == pytest.approx(0.4) and report.total_pnl_usd == pytest.approx(1.0)
    counts = colours(image(drawn, "inventory"), drawn["axes"]["inventory"][0])
    assert near(counts, PURPLE) > 300
    run = colours(image(drawn, "run"), drawn["axes"]["run"][0])
    assert near(run, PURPLE) > 300 and near(run, BLUE) > 300


def test_the_week_has_its_bars_its_gaps_and_its_total(drawn: dict[str, Any]) -> None:
    week = drawn["week"]
    assert [d["runs"] > 0 for d in week.days] == [True, True, True, False, True, False, False]
    img = image(drawn, "week")
    assert img.size == phone_pixels("weekly")
    counts = colours(img, drawn["axes"]["week"][0])
    assert near(counts, GREEN) > 2000  # Wednesday +$6
    assert near(counts, RED) > 1000  # Monday -$1, Friday -$3
    assert near(counts, BLUE) > 1000  # the week: +$2
    data = weekly_chart(week)
    assert [d["ran"] for d in data["days"]] == [True, True, True, False, True, False, False]
    assert data["total_usd"] == pytest.approx(2.0) and "week +$2.00" in data["subtitle"]


def test_backtest_chart_png_svg_and_html(drawn: dict[str, Any]) -> None:
    img = image(drawn, "backtest")
    assert img.size == phone_pixels("backtest") == (1080, 1620)
    boxes = drawn["axes"]["backtest"]
    assert len(boxes) == 4  # equity, premium, drawdown, days
    assert all(b[1] < n[1] for b, n in itertools.pairwise(boxes))  # top to bottom
    equity, premium, drawdown, days = (colours(img, b) for b in boxes)
    assert near(equity, BLUE) > 300 and near(equity, PURPLE) > 300
    assert near(premium, GREEN) > 20 and near(premium, RED) > 20  # entries and exits
    assert near(drawdown, RED) > 300
    assert near(days, GREEN) > 500 and near(days, RED) > 500
    svg = drawn["images"]["svg"]
    assert svg.startswith(b"<?xml") and b"<svg" in svg and b"</svg>" in svg
    page = drawn["images"]["html"].decode()
    assert page.startswith("<!doctype html>") and "<svg" in page and "<?xml" not in page
    assert "<title>Backtest &lt;BTC&gt; &amp; co</title>" in page
    assert "<th>fees &lt;all legs&gt;</th><td>$0.64</td>" in page


def test_the_premium_line_is_not_drawn_across_a_hole_in_the_data(
        drawn: dict[str, Any]) -> None:
    """06:00-12:00 on 01-06 has no data: no premium pixels in the middle of that hole."""
    img = image(drawn, "backtest")
    left, top, right, bottom = drawn["axes"]["backtest"][1]
    t0, t1 = kst(5, 0), kst(7, 23, 59)
    x = round(left + (kst(6, 9) - t0) / (t1 - t0) * (right - left))
    column = [img.getpixel((x, y)) for y in range(top + 2, bottom - 2)]
    assert not any(_close(p, rgb("#6f8fc4"), 25) for p in column)
    x_data = round(left + (kst(5, 12) - t0) / (t1 - t0) * (right - left))
    column = [img.getpixel((x_data, y)) for y in range(top + 2, bottom - 2)]
    assert any(_close(p, rgb("#6f8fc4"), 25) for p in column)  # and there where there is


def test_one_worker_drew_them_all_within_its_memory(drawn: dict[str, Any]) -> None:
    stats = drawn["stats"]
    assert len(stats["render_s"]) == len(drawn["images"])
    assert 40 < stats["peak_rss_mb"] < 400


def test_money_is_written_with_separators_and_a_real_minus() -> None:
    assert usd(1234567.891) == "$1,234,567.89"
    assert usd(-3.0) == "\u2212$3.00" and usd(2.0, signed=True) == "+$2.00"
    assert usd(-0.001) == "$0.00" and usd(0.0, signed=True) == "$0.00"


def test_bad_jobs_are_refused_before_a_process_starts() -> None:
    with pytest.raises(ValueError, match="unknown chart"):
        ChartJob("pie", {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown format"):
        ChartJob("weekly", {}, "gif")  # type: ignore[arg-type]
    assert render_charts([]).images == []


def test_a_hung_render_is_cut_off_and_its_process_killed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(HANG_ENV, "1")
    t0 = time.monotonic()
    with pytest.raises(ChartTimeout) as exc:
        render_charts([ChartJob("weekly", {})], timeout_s=1.0)
    assert 0.9 < time.monotonic() - t0 < 5.0
    assert exc.value.pid and "killed" in str(exc.value)
    with pytest.raises(ProcessLookupError):
        os.kill(exc.value.pid, 0)  # reaped: no process left behind


def test_a_worker_that_fails_is_a_chart_failure_naming_why() -> None:
    with pytest.raises(ChartFailed, match="No module named"):
        render_charts([ChartJob("weekly", {})], timeout_s=20,
                      module="core.monitoring.charts.no_such_worker")
    with pytest.raises(ChartFailed, match="KeyError"):  # data without its fields
        render_charts([ChartJob("weekly", {})], timeout_s=20)


def test_the_service_process_never_loads_matplotlib(tmp_path: Path) -> None:
    """A report with its chart, built the way the service builds it: the chart comes
    back, and neither matplotlib nor numpy is in the building process afterwards."""
    asyncio.run(build_journal(tmp_path))
    script = (
        "import json, sys\n"
        "from datetime import date\n"
        "from pathlib import Path\n"
        "from zoneinfo import ZoneInfo\n"
        "from core.monitoring.reports import build_report\n"
        f"b = build_report('daily', Path({str(tmp_path / 'arbops.sqlite3')!r}), "
        f"date(2026, 1, 5), ZoneInfo('Asia/Seoul'), {NOW}, chart=True)\n"
        "print(json.dumps({'png': len(b.png or b''), 'error': b.chart_error,"
        " 'loaded': sorted(m for m in ('matplotlib', 'numpy', 'PIL') if m in sys.modules)}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).resolve().parents[2], check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] is None and result["png"] > 10_000
    assert result["loaded"] == []


def test_the_worker_reports_its_own_peak_not_the_callers() -> None:
    """A caller holding 600 MB (a test run, a long-lived serve) starts the worker: the
    worker's peak is its own address space's, not the caller's inherited figure."""
    ballast = bytearray(600 * 2**20)
    ballast[:: 4096] = b"\x01" * len(range(0, len(ballast), 4096))  # resident, not just mapped
    result = render_charts([ChartJob("backtest", backtest_data())], timeout_s=60)
    assert len(ballast) == 600 * 2**20  # still held while the worker ran
    assert 40 < result.stats["peak_rss_mb"] < 400
