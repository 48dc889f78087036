"""Both ends of the control channel check the other's user (SO_PEERCRED and file
owners): a fake engine run by another local user cannot make `arbops kill` print
HALTED, and a client of another user is refused by the engine.

Another user is needed: these run as root and start real processes as `nobody`."""
from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from core.control_channel import ControlServer, request, socket_path_for
from core.errors import ExitCode, UntrustedListener
from tests.helpers.procs import arbops_env, run_cli, short_data_dir

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a process as another user"),
]

NOBODY = pwd.getpwnam("nobody").pw_uid if os.getuid() == 0 else -1
# The other user cannot enter root's home, where the venv lives: the system Python
# runs its stdlib-only scripts.
OTHER_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"

# A fake engine: answers every request as if it had halted.
FAKE_ENGINE = textwrap.dedent("""
    import json, os, socket, sys
    path = sys.argv[1]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    os.chmod(path, 0o777)
    s.listen(8)
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        c.recv(65536)
        c.sendall(json.dumps({"ok": True, "result": {"message": "HALTED", "stores": {},
                                                     "trading_state": "HALTED"}}).encode()
                  + b"\\n")
        c.close()
""")


@contextmanager
def fake_engine_as_nobody(sock: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([OTHER_PYTHON, "-c", FAKE_ENGINE, str(sock)], user=NOBODY,
                            stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_kill_refuses_a_data_dir_another_user_controls():
    with short_data_dir("aotr") as d:
        os.chown(d, NOBODY, -1)
        with fake_engine_as_nobody(socket_path_for(d)):
            r = run_cli(["kill", "--reason", "test"], d, arbops_env(d))
        assert r.returncode == ExitCode.REFUSED, r.stdout + r.stderr
        assert "NOT HALTED" in r.stderr and "belongs to nobody" in r.stderr
        assert "HALTED" not in r.stdout
        assert not (d / "trading_state.json").exists()  # nothing written in their dir


def test_status_refuses_a_listener_running_as_another_user():
    """The dir and the socket file are ours, the process behind it is not (it bound
    the socket in a dir it could write, then the file was handed to us): refused by
    the peer's credentials."""
    with short_data_dir("aotr") as d:
        d.chmod(0o777)
        sock = socket_path_for(d)
        with fake_engine_as_nobody(sock):
            os.chown(sock, 0, -1)
            d.chmod(0o700)
            r = run_cli(["status", "--json"], d, arbops_env(d))
            assert r.returncode == ExitCode.REFUSED, r.stdout + r.stderr
            assert "runs as nobody" in r.stderr and r.stdout == ""


async def test_the_engine_refuses_a_client_of_another_user(tmp_path):
    """Even with the socket's mode widened by mistake, a client running as another
    user gets a refusal, and the handler never runs."""
    d = Path(os.path.realpath("/tmp")) / f"aotr-{os.getpid()}"
    d.mkdir()
    d.chmod(0o755)  # whatever umask an earlier in-process CLI call left
    calls: list[str] = []

    async def handler(cmd: str, args: dict, actor: str) -> dict:
        calls.append(actor)
        return {"ok": 1}

    try:
        sock = d / "control.sock"
        async with ControlServer(sock, handler):
            sock.chmod(0o777)
            client = textwrap.dedent("""
                import socket, sys
                s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
                s.sendall(b'{"cmd": "kill", "args": {}}\\n')
                print(s.makefile().readline(), end="")
            """)
            out = await _run_as_nobody(client, str(sock))
            assert '"code": 2' in out and "not the engine's user" in out, out
            assert calls == []
            assert (await request(sock, "status"))["ok"] is True  # its own user: served
            assert calls == ["cli:root"]
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


async def _run_as_nobody(code: str, *args: str) -> str:
    import asyncio

    def run() -> str:
        r = subprocess.run([OTHER_PYTHON, "-c", code, *args], user=NOBODY, cwd="/",
                           capture_output=True, text=True, timeout=20, check=False)
        assert r.returncode == 0, r.stderr
        return r.stdout

    return await asyncio.to_thread(run)


async def test_request_refuses_a_socket_owned_by_another_user():
    with short_data_dir("aotr") as d:
        sock = socket_path_for(d)
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(sock))
        s.listen(1)
        try:
            os.chown(sock, NOBODY, -1)
            t0 = time.monotonic()
            with pytest.raises(UntrustedListener, match=r"control socket .* belongs to nobody"):
                await request(sock, "status")
            assert time.monotonic() - t0 < 1
        finally:
            s.close()
