"""Local control channel: CLI commands reach a running engine over a unix socket.

No Telegram, no Redis: ``arbops status`` / ``arbops stop`` / ``arbops kill`` talk to the
engine through ``<data_dir>/control.sock`` (mode 0600, so only the owning user can
connect).

Protocol: one JSON object per line (UTF-8, ``\\n`` terminated), in both directions.

* request:  ``{"cmd": "status", "args": {...}}`` (``args`` optional; an optional
  ``"id"`` is echoed back in the reply)
* reply:    ``{"ok": true, "result": {...}}``
  or        ``{"ok": false, "error": "message", "code": 2}`` (an ExitCode)

A connection may carry several requests; each gets exactly one reply, in order.
Both ends check the other. The server serves only its own user (or root), read
from the socket (SO_PEERCRED). The client believes an answer only when the data dir
and the socket belong to the user running it and the listening process runs as that
user (SO_PEERCRED again); anything else is UntrustedListener, a refusal (exit 2).
Who asked is not taken from the request: the server reads the peer's uid from the
socket and names it ``cli:<user>``, the same actor the CLI uses when
it acts in its own process (`local_actor`). At most MAX_CONNECTIONS clients are
served at once; more are answered with an error and closed, so idle connections
cannot exhaust the engine's file descriptors.

This module is imported by the fast CLI paths: stdlib only (loguru is imported lazily,
on the server's error path only).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import pwd
import socket
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

from core.errors import (
    CommandError,
    ControlChannelBusy,
    ControlChannelError,
    ControlTimeout,
    EngineNotRunning,
    ExitCode,
    SocketPathTooLong,
    UntrustedListener,
)

SOCKET_NAME = "control.sock"
MAX_LINE_BYTES = 64 * 1024  # request line cap (server side)
MAX_REPLY_BYTES = 16 * 1024 * 1024  # reply line cap (client side; status can be big)
MAX_CONNECTIONS = 32  # clients served at once; the CLI opens one per command
# sun_path is 108 bytes on Linux including the terminating NUL (104 on BSD/macOS).
_MAX_SUN_PATH = 107

# handler(cmd, args, actor) -> result
Handler = Callable[[str, dict[str, Any], str], Awaitable[dict[str, Any]]]


def local_actor(uid: int | None = None) -> str:
    """The audit name of a local user: what the server derives from a peer's uid and
    what the CLI records when it acts in its own process."""
    uid = os.getuid() if uid is None else uid
    try:
        return f"cli:{pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"cli:uid{uid}"


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def verify_listener_path(path: Path) -> None:
    """Refuse a control socket that another user could have put there: the data dir
    and the socket must belong to the user running this command."""
    uid = os.getuid()
    for target, what in ((path.parent, "data dir"), (path, "control socket")):
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return  # nothing listening there: the connection says so
        if st.st_uid != uid:
            raise UntrustedListener(
                f"refusing to trust the {what} {target}: it belongs to {_user(st.st_uid)}, "
                f"not to you ({_user(uid)}); an engine you run keeps its data dir and "
                "control socket under your own user")
        if what == "control socket" and not stat.S_ISSOCK(st.st_mode):
            raise UntrustedListener(f"refusing {target}: it is not a socket")


def verify_listener_peer(writer: asyncio.StreamWriter, path: Path) -> None:
    """Refuse the answer of a process that runs as another user (SO_PEERCRED)."""
    uid = _peer_uid(writer)
    if uid != os.getuid():
        who = "an unknown user" if uid is None else _user(uid)
        raise UntrustedListener(
            f"refusing the engine on {path}: the process listening there runs as {who}, "
            f"not as you ({_user(os.getuid())}); its answer is not trusted")


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


def socket_path_for(data_dir: Path) -> Path:
    """``<data_dir>/control.sock``."""
    return Path(data_dir) / SOCKET_NAME


def _check_path_length(path: Path) -> None:
    n = len(os.fsencode(path))
    if n > _MAX_SUN_PATH:
        raise SocketPathTooLong(
            f"control socket path is {n} bytes, AF_UNIX allows at most {_MAX_SUN_PATH}: "
            f"{path} (use a shorter data_dir)"
        )


def _encode(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _error(message: str, code: int) -> dict:
    return {"ok": False, "error": message, "code": code}


def _probe(path: Path, timeout: float = 1.0) -> bool:
    """True if some process accepts connections on ``path``; False if refused/absent."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError as e:
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            return False
        if isinstance(e, TimeoutError) or e.errno == errno.EAGAIN:
            # Backlog full / slow: somebody is there.
            return True
        raise
    else:
        return True
    finally:
        s.close()


class ControlServer:
    """Serve ``handler(cmd, args, actor) -> result dict`` on a unix socket.

    ``await start()`` binds ``socket_path`` (mode 0600) and starts accepting;
    ``await stop()`` closes every client connection and removes the socket file.
    A stale socket left by a dead process is removed at start; a live one raises
    :class:`ControlChannelBusy`.
    """

    def __init__(
        self,
        socket_path: Path,
        handler: Handler,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        self.socket_path = Path(socket_path)
        self._handler = handler
        self._max_line = max_line_bytes
        self._max_conns = max_connections
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._ino: tuple[int, int] | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("ControlServer already started")
        path = self.socket_path
        _check_path_length(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale(path)

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)
            try:
                sock.bind(os.fspath(path))
            finally:
                os.umask(old_umask)
            os.chmod(path, 0o600)  # belt and braces; still before listen()
            st = os.stat(path)
            self._ino = (st.st_dev, st.st_ino)
            sock.listen(64)
            sock.setblocking(False)
            self._server = await asyncio.start_unix_server(
                self._on_client, sock=sock, limit=self._max_line
            )
        except BaseException:
            sock.close()
            self._unlink_own()
            raise

    def _remove_stale(self, path: Path) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlChannelError(f"{path} exists and is not a socket; refusing to replace it")
        if _probe(path):
            raise ControlChannelBusy(
                f"another process is serving the control socket {path} (is an engine running?)"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def _unlink_own(self) -> None:
        """Remove the socket file, but only if it is still the one we bound."""
        if self._ino is None:
            return
        try:
            st = os.lstat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._ino:
                os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        self._ino = None

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            self._unlink_own()
            return
        server.close()
        for w in list(self._writers):
            w.close()
        tasks = list(self._conns)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        self._unlink_own()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= self._max_conns:
            # Refuse rather than queue: every held connection is a file descriptor the
            # engine may need for its journal and venues.
            writer.write(_encode(_error(f"control channel busy ({self._max_conns} clients "
                                        "connected); try again", ExitCode.FAILED)))
            with contextlib.suppress(Exception):
                await writer.drain()
            writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        self._writers.add(writer)
        uid = _peer_uid(writer)
        actor = local_actor(uid) if uid is not None else "cli:unknown"
        try:
            if uid is None or uid not in (os.getuid(), 0):
                # The socket is 0600; this holds even if its mode or dir were widened.
                # The request is read (and dropped) first, so the refusal is its reply
                # rather than a broken pipe.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):
                        await reader.readline()
                writer.write(_encode(_error(
                    f"refused: {actor} is not the engine's user (or root)", ExitCode.REFUSED)))
                await writer.drain()
                return
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(_encode(_error(
                        f"request line too long (max {self._max_line} bytes)", ExitCode.REFUSED)))
                    await writer.drain()
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                reply = await self._dispatch(line, actor)
                writer.write(_encode_reply(reply))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            if task is not None:
                self._conns.discard(task)

    async def _dispatch(self, line: bytes, actor: str) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            return _error(f"malformed JSON request: {e}", ExitCode.REFUSED)
        if not isinstance(req, dict):
            return _error("request must be a JSON object", ExitCode.REFUSED)
        cmd = req.get("cmd")
        args = req.get("args")
        if args is None:
            args = {}
        rid = req.get("id")
        if not isinstance(cmd, str) or not cmd:
            reply = _error("request needs a non-empty string 'cmd'", ExitCode.REFUSED)
        elif not isinstance(args, dict):
            reply = _error("'args' must be a JSON object", ExitCode.REFUSED)
        else:
            reply = await self._call(cmd, args, actor)
        if rid is not None:
            reply["id"] = rid
        return reply

    async def _call(self, cmd: str, args: dict[str, Any], actor: str) -> dict[str, Any]:
        try:
            result = await self._handler(cmd, args, actor)
        except CommandError as e:
            return _error(e.message, e.code)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a handler bug must not kill the server
            _log_handler_failure(cmd, e)
            return _error(f"{type(e).__name__}: {e}", ExitCode.FAILED)
        if result is None:
            result = {}
        if not isinstance(result, dict):
            return _error(
                f"handler for {cmd!r} returned {type(result).__name__}, not a dict", ExitCode.FAILED
            )
        return {"ok": True, "result": result}


def _encode_reply(reply: dict) -> bytes:
    try:
        return _encode(reply)
    except (TypeError, ValueError) as e:
        return _encode(_error(f"reply is not JSON-serialisable: {e}", ExitCode.FAILED))


def _log_handler_failure(cmd: str, exc: Exception) -> None:
    try:
        from loguru import logger  # lazy: keep the CLI import path stdlib-only
    except ImportError:  # pragma: no cover
        return
    logger.opt(exception=exc).error("control command {!r} failed: {}", cmd, exc)


async def request(
    socket_path: Path,
    cmd: str,
    args: dict | None = None,
    timeout: float = 5.0,
) -> dict:
    """Send one command; return the reply envelope.

    Returns ``{"ok": True, "result": {...}}`` or ``{"ok": False, "error": str, "code": int}``
    (check ``reply["ok"]``). Raises :class:`EngineNotRunning` when the socket is missing or
    refuses connections, :class:`ControlTimeout` when no reply arrives within ``timeout``
    seconds, :class:`SocketPathTooLong` for an unusable path, :class:`ControlChannelError`
    for a broken/garbled reply.
    """
    path = Path(socket_path)
    _check_path_length(path)
    verify_listener_path(path)
    payload: dict[str, Any] = {"cmd": cmd, "args": args or {}}
    line = _encode(payload)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(
                    os.fspath(path), limit=MAX_REPLY_BYTES
                )
            except (FileNotFoundError, ConnectionRefusedError) as e:
                raise EngineNotRunning(
                    f"engine not running (no control socket listening at {path})"
                ) from e
            except PermissionError as e:
                raise ControlChannelError(
                    f"permission denied on control socket {path} (run as the engine's user)"
                ) from e
            verify_listener_peer(writer, path)
            writer.write(line)
            await writer.drain()
            raw = await reader.readline()
    except TimeoutError as e:
        raise ControlTimeout(f"engine did not answer {cmd!r} within {timeout:g}s") from e
    except ValueError as e:  # reply over MAX_REPLY_BYTES
        raise ControlChannelError(f"reply to {cmd!r} too large: {e}") from e
    except ConnectionError as e:
        raise ControlChannelError(f"connection to engine lost during {cmd!r}: {e}") from e
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    if not raw:
        raise ControlChannelError(f"engine closed the connection without replying to {cmd!r}")
    try:
        reply = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ControlChannelError(f"garbled reply from engine: {e}") from e
    if not isinstance(reply, dict) or "ok" not in reply:
        raise ControlChannelError(f"unexpected reply shape from engine: {reply!r:.200}")
    return reply


def request_sync(
    socket_path: Path,
    cmd: str,
    args: dict | None = None,
    timeout: float = 5.0,
) -> dict:
    """Blocking :func:`request` for the CLI (runs its own event loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("request_sync() called inside a running event loop; await request()")
    return asyncio.run(request(socket_path, cmd, args, timeout))


def ask(socket_path: Path, cmd: str, args: dict[str, Any] | None = None,
        timeout: float = 5.0) -> dict[str, Any]:
    """The engine's result for one command, or CommandError carrying its exit code."""
    reply = request_sync(socket_path, cmd, args, timeout)
    if not reply.get("ok"):
        code = reply.get("code")
        raise CommandError(str(reply.get("error")),
                           code if code in tuple(ExitCode) else ExitCode.FAILED)
    result: dict[str, Any] = reply["result"]
    return result
