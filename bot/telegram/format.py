"""HTML escaping, Telegram length limits and the status/result renderings."""
from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from typing import Any

from bot.views import kpi_lines, streams_line, tightest_guards, usd

MAX_TEXT = 4096
MAX_CAPTION = 1024
_TAG = re.compile(r"<[^>]+>")


def h(value: Any) -> str:
    """Escape anything for parse_mode=HTML (a reason with < or & must not break a send)."""
    return html.escape(str(value), quote=False)


def plain(text_html: str) -> str:
    """The visible text of our own HTML (tags dropped, entities decoded)."""
    return html.unescape(_TAG.sub("", text_html))


def fit(text_html: str, limit: int = MAX_TEXT) -> str:
    """Keep a message within Telegram's limit without cutting a tag or an entity."""
    if len(text_html) <= limit:
        return text_html
    suffix = "\n… (truncated)"
    visible = plain(text_html)
    budget = limit - len(suffix)
    cut = visible[:budget]
    while len(h(cut)) > budget:
        cut = cut[: max(0, len(cut) - max(1, (len(h(cut)) - budget)))]
    return h(cut) + suffix


def caption_parts(text: str) -> tuple[str, str | None]:
    """A photo's caption from plain `text`: (text, None) when it fits Telegram's 1024
    characters once escaped, else (its first line, the rest) - the rest goes in a
    text message after the photo."""
    if len(h(text)) <= MAX_CAPTION:
        return text, None
    title, _, rest = text.partition("\n")
    return title[:200], rest


def ts(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


def money(v: Any) -> str:
    return h(usd(v))


def lines_html(lines: list[str]) -> str:
    """Plain view lines (bot.views) as escaped message text."""
    return "\n".join(h(x) for x in lines)


def pre(lines: list[str]) -> str:
    """A table from bot.views in monospace, so its columns line up on a phone."""
    return "<pre>" + lines_html(lines) + "</pre>"


def status_text(st: dict[str, Any]) -> str:
    """`service.status()` for a phone: mode, state, ARM, run, PnL, latency, guards."""
    lines = [
        f"<b>{h(str(st.get('mode', '?')).upper())}</b> · state <b>{h(st.get('trading_state'))}</b>"
        f" · ARM {'<b>yes</b> ' + h(usd(st.get('arm_cap_usd'), signed=False)) + ' per leg' if st.get('armed') else 'no'}"
    ]
    if st.get("halted_reason"):
        lines.append(f"halted: {h(st['halted_reason'])}")
    run = st.get("run")
    if run:
        lat = run.get("loop_latency_ms") or {}
        lines.append(
            f"run <code>{h(run.get('run_id'))}</code>: {h(run.get('mode'))} phase "
            f"{h(run.get('phase'))} {h(run.get('universe'))} "
            f"{float(run.get('elapsed_s', 0)):.0f}/{float(run.get('duration_s') or float('inf')):.0f} s"
            + (" (closing)" if run.get("closing") else ""))
        lines.append(
            f"strategy PnL {money(run.get('pnl_usd'))} · inventory "
            f"{money(run.get('inventory_pnl_usd'))} · total {money(run.get('total_pnl_usd'))}")
        lines.append(
            f"round trips {h(run.get('round_trips'))} · "
            f"win {float(run.get('win_rate') or 0) * 100:.0f}% · open {h(run.get('open_positions'))}")
        streams = streams_line(run.get("venue_streams"))
        if streams:
            lines.append(h(streams))
        if lat:
            lines.append("latency ms: " + " ".join(
                f"{k} {float(v):.1f}" for k, v in lat.items() if isinstance(v, int | float)))
    else:
        lines.append("no run active")
        last = st.get("last_run")
        if last:
            gate = f", gate {h(last['gate'])}" if last.get("gate") else ""
            lines.append(f"last run <code>{h(last.get('run_id'))}</code>: "
                         f"{h(last.get('status') or 'ended')}, exit "
                         f"{h(last.get('exit_code') if last.get('exit_code') is not None else '-')}"
                         f"{gate}")
    lines.append(guards_line(st.get("guards") or {}))
    if st.get("rss_mb") is not None:
        lines.append(f"rss {h(st['rss_mb'])} MB")
    return "\n".join(lines)


def guards_line(g: dict[str, Any]) -> str:
    if not g.get("watchdog"):
        return "guards: watchdog not running"
    tripped = g.get("tripped") or []
    out = f"guards: {len(tripped)} tripped"
    if tripped:
        out += " (" + ", ".join(h(t.get("name")) for t in tripped) + ")"
    tight = tightest_guards(g)
    if tight:
        out += "; closest to their limits: " + h(", ".join(tight))
    return out


def kpi_text(result: dict[str, Any] | None) -> str:
    """The run-end card and /kpi: the figures, and each failed gate check with what was
    observed and what it needed."""
    lines = kpi_lines(result)
    return "\n".join([f"<b>{h(lines[0])}</b>", *(h(x) for x in lines[1:])])
