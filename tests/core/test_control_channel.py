from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from core.control_channel import (
    ControlServer,
    local_actor,
    request,
    request_sync,
    socket_path_for,
)
from core.errors import (
    CommandError,
    ControlChannelBusy,
    EngineNotRunning,
    ExitCode,
    SocketPathTooLong,
)


@pytest.fixture
def sock_path():
    d = tempfile.mkdtemp(dir="/tmp", prefix="arbcc")
    yield Path(d) / "control.sock"
    shutil.rmtree(d, ignore_errors=True)


async def handler(cmd: str, args: dict, actor: str) -> dict:
    if cmd == "status":
        return {"state": "running", "args": args}
    if cmd == "whoami":
        return {"actor": actor}
    if cmd == "boom":
        raise RuntimeError("kaboom")
    if cmd == "refuse":
        raise CommandError("not now", code=ExitCode.REFUSED)
    if cmd == "slow":
        await asyncio.sleep(args.get("s", 0.05))
        return {"slept": args.get("s", 0.05), "n": args.get("n")}
    if cmd == "notdict":
        return ["x"]  # type: ignore[return-value]
    raise CommandError(f"unknown command {cmd!r}", code=2)


async def raw_exchange(path: Path, payload: bytes) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        out = []
        while line := await reader.readline():
            out.append(json.loads(line))
        return out
    finally:
        writer.close()
        await writer.wait_closed()


async def test_request_response_and_socket_mode(sock_path):
    server = ControlServer(sock_path, handler)
    await server.start()
    try:
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        reply = await request(sock_path, "status", {"verbose": True})
        assert reply == {"ok": True, "result": {"state": "running", "args": {"verbose": True}}}
        reply = await request(sock_path, "status")
        assert reply["result"]["args"] == {}
        reply = await request(sock_path, "refuse")
        assert reply == {"ok": False, "error": "not now", "code": 2}
    finally:
        await server.stop()
    assert not sock_path.exists()


async def test_handler_exception_becomes_error_and_server_survives(sock_path):
    async with ControlServer(sock_path, handler):
        reply = await request(sock_path, "boom")
        assert reply["ok"] is False
        assert "kaboom" in reply["error"]
        assert reply["code"] == ExitCode.FAILED
        reply = await request(sock_path, "notdict")
        assert reply["ok"] is False and reply["code"] == ExitCode.FAILED
        assert (await request(sock_path, "status"))["ok"] is True


async def test_malformed_lines_get_error_replies(sock_path):
    async with ControlServer(sock_path, handler):
        replies = await raw_exchange(
            sock_path,
            b"{not json\n"
            b"[1, 2]\n"
            b'{"args": {}}\n'
            b'{"cmd": "status", "args": [1]}\n'
            b"\xff\xfe\n"
            b'{"cmd": "status", "id": 42}\n',
        )
        assert [r["ok"] for r in replies] == [False, False, False, False, False, True]
        assert all(r["code"] == ExitCode.REFUSED for r in replies[:5])
        assert "malformed JSON" in replies[0]["error"]
        assert replies[5]["id"] == 42
        # still alive
        assert (await request(sock_path, "status"))["ok"] is True


async def test_oversized_line_rejected(sock_path):
    async with ControlServer(sock_path, handler, max_line_bytes=1024):
        big = json.dumps({"cmd": "status", "args": {"x": "a" * 5000}}).encode() + b"\n"
        replies = await raw_exchange(sock_path, big)
        assert len(replies) == 1
        assert replies[0]["ok"] is False and "too long" in replies[0]["error"]
        assert (await request(sock_path, "status"))["ok"] is True


async def test_engine_not_running_without_server(sock_path):
    with pytest.raises(EngineNotRunning):
        await request(sock_path, "status")


def test_engine_not_running_sync(sock_path):
    with pytest.raises(EngineNotRunning, match="not running"):
        request_sync(sock_path, "status")


async def test_request_sync_refuses_running_loop(sock_path):
    with pytest.raises(RuntimeError, match="running event loop"):
        request_sync(sock_path, "status")


def test_request_sync_roundtrip(sock_path):
    # Server runs in its own loop in a thread; the CLI-style sync call runs in ours.
    import threading

    ready = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []

    def serve() -> None:
        async def main() -> None:
            async with ControlServer(sock_path, handler):
                ready.set()
                while not done.is_set():
                    await asyncio.sleep(0.01)

        try:
            asyncio.run(main())
        except BaseException as e:  # noqa: BLE001  # pragma: no cover
            errors.append(e)
            ready.set()

    t = threading.Thread(target=serve)
    t.start()
    try:
        assert ready.wait(5)
        assert request_sync(sock_path, "status", {"a": 1})["result"]["args"] == {"a": 1}
    finally:
        done.set()
        t.join(5)
    assert not errors


async def test_stale_socket_removed(sock_path):
    # A socket file bound by a process that is gone: nothing listens -> ECONNREFUSED.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock_path))
    s.close()
    assert sock_path.exists()
    with pytest.raises(EngineNotRunning):
        await request(sock_path, "status")
    async with ControlServer(sock_path, handler):
        assert (await request(sock_path, "status"))["ok"] is True


async def test_second_server_is_busy(sock_path):
    async with ControlServer(sock_path, handler):
        other = ControlServer(sock_path, handler)
        with pytest.raises(ControlChannelBusy):
            await other.start()
        # the live socket was not disturbed
        assert (await request(sock_path, "status"))["ok"] is True


async def test_refuses_to_replace_non_socket(sock_path):
    sock_path.write_text("precious")
    with pytest.raises(Exception, match="not a socket"):
        await ControlServer(sock_path, handler).start()
    assert sock_path.read_text() == "precious"


async def test_concurrent_clients(sock_path):
    async with ControlServer(sock_path, handler):
        replies = await asyncio.gather(
            *(request(sock_path, "slow", {"s": 0.05, "n": i}) for i in range(30))
        )
        assert sorted(r["result"]["n"] for r in replies) == list(range(30))


async def test_stop_with_idle_client_connected(sock_path):
    server = ControlServer(sock_path, handler)
    await server.start()
    reader, writer = await asyncio.open_unix_connection(str(sock_path))
    try:
        await asyncio.sleep(0.01)
        await asyncio.wait_for(server.stop(), 2)
        assert await reader.read() == b""
    finally:
        writer.close()
        await writer.wait_closed()
    assert not sock_path.exists()


async def test_path_too_long_is_clear(tmp_path):
    long_path = Path("/tmp") / ("x" * 120) / "control.sock"
    with pytest.raises(SocketPathTooLong, match="AF_UNIX"):
        await ControlServer(long_path, handler).start()
    with pytest.raises(SocketPathTooLong):
        await request(long_path, "status")
    assert not long_path.parent.exists()


def test_socket_path_for():
    assert socket_path_for(Path("/data")) == Path("/data/control.sock")


async def test_the_actor_is_the_peer_uid_never_what_the_client_says(sock_path):
    """Who asked comes from the socket (SO_PEERCRED), so a client cannot pose as another
    operator in the audit by sending an actor of its choosing."""
    async with ControlServer(sock_path, handler):
        reply = await request(sock_path, "whoami", {"actor": "telegram:1-admin"})
    assert reply == {"ok": True, "result": {"actor": local_actor()}}
    assert local_actor().startswith("cli:")


async def test_connections_beyond_the_cap_are_refused_and_closed(sock_path):
    """Idle connections cannot pile up: past the cap a client gets an error and is
    closed, and the server keeps serving once the others go."""
    async with ControlServer(sock_path, handler, max_connections=3):
        held = [await asyncio.open_unix_connection(str(sock_path)) for _ in range(3)]
        await asyncio.sleep(0.05)
        reply = await request(sock_path, "status")
        assert reply["ok"] is False and "busy" in reply["error"]
        for _, w in held:
            w.close()
            await w.wait_closed()
        await asyncio.sleep(0.05)
        assert (await request(sock_path, "status"))["ok"] is True
