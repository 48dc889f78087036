"""Shared helpers for the LIVE safety tests (imported as tests.safety.safety_support).

Real parts: a redis-server subprocess on a free loopback port in a tmp dir, real git
repositories, real SQLite files. Nothing here talks to a real venue or Telegram.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.config.settings import Settings

TG_TOKEN = "123456789:" + "A" * 35
GOOD_SECRETS: dict[str, Any] = {
    "upbit_access_key": "upbit-test-key",
    "upbit_secret_key": "upbit-test-secret",
    "binance_api_key": "binance-test-key",
    "binance_api_secret": "binance-test-secret",
    "telegram_bot_token": TG_TOKEN,
    "telegram_chat_id": 42,
}


def make_settings(tmp: Path, **over: Any) -> Settings:
    """Settings with every runbook field given explicitly (the caller's env cannot leak)."""
    fields: dict[str, Any] = {
        "arbitrage_env": "live", "live_arm_ack": None, "live_arm_at": None,
        "live_max_notional_usd": None, "redis_url": None, "data_dir": tmp,
        **GOOD_SECRETS,
    }
    fields.update(over)
    return Settings(_env_file=None, **fields)  # type: ignore[call-arg]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("redis-server")
        assert exe, "redis-server is not installed (apt-get install -y redis-server)"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
             "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            assert self.proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer PING"
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def git_repo(path: Path, gitignore: str = ".env.live\n*.key\n") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q")
    (path / ".gitignore").write_text(gitignore)
    (path / "README.md").write_text("x\n")
    git(path, "add", ".gitignore", "README.md")
    return path
