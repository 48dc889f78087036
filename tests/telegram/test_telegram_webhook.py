"""Webhook mode (issue #6): refuses to start without a secret token, checks it on
every request, and otherwise behaves exactly like long polling. The real aiogram
app of `arbops serve` takes updates POSTed by the Bot API stand-in (as Telegram would,
through a TLS proxy) and talks back to it over HTTP."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.drill.emulator.telegram_api import TOKEN
from core.config.settings import load_settings
from core.errors import SettingsError
from tests.helpers.procs import arbops_env, run_cli, short_data_dir
from tests.telegram.tg_support import VIEWER, Env, telegram_env

pytestmark = [pytest.mark.timeout(60)]

SECRET = "w3bh00k-Secret_token-0123456789abcdef"
HOOK = "https://bot.example.com/tg/hook-7f3a"


def _webhook_kw() -> dict[str, Any]:
    return {"telegram_webhook_url": HOOK, "telegram_webhook_secret": SECRET,
            "telegram_webhook_port": 0}


def _target(env: Env) -> str:
    return f"http://127.0.0.1:{env.app.webhook.port}/tg/hook-7f3a"


async def _post(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
    async with aiohttp.ClientSession() as http, http.post(url, json=update,
                                                          headers=headers) as resp:
        return resp.status


async def test_webhook_registers_with_its_secret_and_serves_commands(tmp_path: Path) -> None:
    async with telegram_env(tmp_path, settings_kw=_webhook_kw()) as env:
        fake = env.fake
        await fake.wait_for(lambda: fake.calls_to("setWebhook"), what="setWebhook")
        call = fake.calls_to("setWebhook")[0]
        assert fake.webhook == HOOK and fake.webhook_secret == SECRET
        assert "callback_query" in str(call.params.get("allowed_updates"))
        assert not fake.calls_to("deleteWebhook"), "webhook mode must not drop its webhook"
        fake.webhook_target = _target(env)  # the proxy in front of the listener
        fake.send_text(VIEWER, "/status")
        assert "ACTIVE" in await fake.wait_text(VIEWER, "ACTIVE")
        await asyncio.sleep(0.2)
        assert not fake.calls_to("getUpdates", ok_only=False), "webhook mode never polls"
        assert fake.pushed and all(status == 200 for _uid, status in fake.pushed)


async def test_a_request_without_the_right_secret_changes_nothing(tmp_path: Path) -> None:
    async with telegram_env(tmp_path, settings_kw=_webhook_kw()) as env:
        fake, service = env.fake, env.service
        url = _target(env)
        env.app.webhook.refusals.interval_s = 0.2  # summaries come quickly here
        kill = fake.text_update(VIEWER, "/kill forged")
        kill["update_id"] = 9001
        assert await _post(url, kill, None) == 401
        assert await _post(url, kill, "w3bh00k-Secret_token-0123456789abcdeX") == 401
        assert await _post(url, kill, SECRET.upper()) == 401
        assert await _post(url, kill, "") == 401
        assert await _post(url.replace("hook-7f3a", "other"), kill, SECRET) == 404
        await asyncio.sleep(0.5)
        assert str(service.state.state) == "ACTIVE"
        assert not fake.calls_to("sendMessage"), "a refused request gets no reply"
        # the first refusal at once, the rest of the interval as one summary
        rows = [r for r in env.audit() if r["command"] == "webhook"]
        assert [r["outcome"] for r in rows] == [
            "denied: refused 1 request(s): 1 missing secret token (from 127.0.0.1)",
            "denied: refused 3 request(s): 3 wrong secret token (from 127.0.0.1)"]
        assert dict(service.webhook_refusals) == {"missing secret token": 1,
                                                  "wrong secret token": 3}
        assert all(SECRET not in str(r) for r in env.audit())
        # the same update with the registered secret is a command like any other
        assert await _post(url, kill, SECRET) == 200
        await fake.wait_for(lambda: str(service.state.state) == "HALTED", timeout=5, what="HALT")
        await fake.wait_text(VIEWER, "HALTED")


async def _raw_post(url: str, body: bytes, secret: bytes | None) -> int:
    """An HTTP POST written by hand: headers a client library would refuse to send."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()
    if secret is not None:
        head += b"X-Telegram-Bot-Api-Secret-Token: " + secret + b"\r\n"
    writer.write(head + b"\r\n" + body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    await writer.wait_closed()
    return status


async def test_malformed_requests_are_4xx_never_500(tmp_path: Path) -> None:
    async with telegram_env(tmp_path, settings_kw=_webhook_kw()) as env:
        url, good = _target(env), env.fake.text_update(VIEWER, "/status")
        good["update_id"] = 9100
        body = json.dumps(good).encode()
        assert await _raw_post(url, body, "sécret-ü".encode()) == 401
        assert await _raw_post(url, body, SECRET.encode() + b"\xff\xfe") == 401
        assert await _raw_post(url, b"{not json", SECRET.encode()) == 400
        assert await _raw_post(url, b"\xff\xfe", SECRET.encode()) == 400
        assert await _raw_post(url, b"[1, 2]", SECRET.encode()) == 400
        assert await _raw_post(url, b'{"message": {}}', SECRET.encode()) == 400
        assert dict(env.service.webhook_refusals) == {"wrong secret token": 2,
                                                      "not a JSON update": 4}
        assert await _raw_post(url, body, SECRET.encode()) == 200  # still serving


async def test_a_flood_of_refused_requests_costs_no_journal_row_each(tmp_path: Path) -> None:
    """Unauthenticated requests are counted; within an interval they leave one audit
    row and one log line, not a synchronous, fsynced row each."""
    async with telegram_env(tmp_path, settings_kw=_webhook_kw()) as env:
        url = _target(env)
        update = env.fake.text_update(VIEWER, "/kill forged")
        update["update_id"] = 9200
        audit_before = len(env.audit())
        async with aiohttp.ClientSession() as http:
            async def one(i: int) -> int:
                async with http.post(url, json=update, headers={
                        "X-Telegram-Bot-Api-Secret-Token": f"guess-{i}"}) as resp:
                    return resp.status

            statuses = await asyncio.gather(*(one(i) for i in range(300)))
        assert set(statuses) == {401}
        await asyncio.sleep(0.2)
        rows = env.audit()[audit_before:]
        assert len(rows) == 1 and "refused 1 request(s)" in rows[0]["outcome"], rows
        assert env.service.webhook_refusals["wrong secret token"] == 300
        assert str(env.service.state.state) == "ACTIVE"


def test_serve_refuses_a_webhook_without_a_secret() -> None:
    with short_data_dir() as root:
        data_dir = root / "d"
        env = arbops_env(data_dir, {"TELEGRAM_BOT_TOKEN": TOKEN,
                                    "ARBOPS_TELEGRAM_WEBHOOK_URL": HOOK})
        proc = run_cli(["serve"], data_dir, env, cwd=root)
        assert proc.returncode == 2, proc.stderr
        assert "ARBOPS_TELEGRAM_WEBHOOK_SECRET" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not data_dir.exists(), "nothing may start: no journal, lock or socket"


@pytest.mark.parametrize(("field", "value", "why"), [
    ("telegram_webhook_url", "http://bot.example.com/tg", "https"),
    ("telegram_webhook_url", "https:///no-host", "https"),
    ("telegram_webhook_secret", "short-secret", "16-256"),
    ("telegram_webhook_secret", "has spaces in it but long enough", "16-256"),
    ("telegram_webhook_secret", "x" * 257, "16-256"),
    ("telegram_webhook_port", -1, "greater than or equal"),
])
def test_bad_webhook_settings_are_refused_by_name(tmp_path: Path, field: str, value: Any,
                                                  why: str) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path, **{field: value})
    text = str(err.value)
    assert f"ARBOPS_{field.upper()}" in text and why in text
    assert str(value) not in text, "the refused value (maybe a secret) is never echoed"
