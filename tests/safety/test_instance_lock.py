from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import InstanceLocked
from core.safety.instance_lock import InstanceLock, lock_path_for, probe_holder

# A separate interpreter tries the lock: prints {"ok": true, "pid": ...} or the holder.
TRY_LOCK = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    from core.safety.instance_lock import InstanceLock, InstanceLocked
    try:
        lock = InstanceLock(Path(sys.argv[1]))
        lock.acquire()
    except InstanceLocked as e:
        print(json.dumps({"ok": False, "holder": e.holder, "msg": str(e)}))
    else:
        print(json.dumps({"ok": True, "pid": os.getpid()}))
        lock.release()
    """
)

# Holds the lock until stdin closes.
HOLD_LOCK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from core.safety.instance_lock import InstanceLock
    lock = InstanceLock(Path(sys.argv[1]))
    lock.acquire()
    print("held", flush=True)
    sys.stdin.read()
    """
)


def try_in_subprocess(path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def test_second_process_sees_holder(tmp_path):
    path = lock_path_for(tmp_path)
    with InstanceLock(path) as lock:
        assert lock.held
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid()
        assert info["host"] == socket.gethostname()
        assert info["since"].endswith("+00:00")
        res = try_in_subprocess(path)
        assert res["ok"] is False
        assert res["holder"]["pid"] == os.getpid()
        assert str(os.getpid()) in res["msg"]
        assert socket.gethostname() in res["msg"]
        assert info["since"] in res["msg"]
        assert probe_holder(path)["pid"] == os.getpid()
    assert probe_holder(path) is None
    res = try_in_subprocess(path)
    assert res["ok"] is True


def test_lock_dies_with_holder_process(tmp_path):
    path = lock_path_for(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(InstanceLocked) as ei:
            InstanceLock(path).acquire()
        assert ei.value.holder["pid"] == proc.pid
        assert f"pid={proc.pid}" in str(ei.value)
    finally:
        proc.kill()  # no clean release: the kernel must drop the flock
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()
    assert path.exists()  # stale file left behind, that's fine
    lock = InstanceLock(path)
    lock.acquire()
    try:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_same_process_second_instance_and_reacquire(tmp_path):
    a = InstanceLock(tmp_path)  # a data dir works too
    assert a.path == tmp_path / "engine.lock"
    a.acquire()
    with pytest.raises(RuntimeError):
        a.acquire()
    with pytest.raises(InstanceLocked):
        InstanceLock(tmp_path / "engine.lock").acquire()
    a.release()
    a.release()  # idempotent
    with InstanceLock(tmp_path):
        pass


def test_locked_message_without_info():
    e = InstanceLocked({})
    assert "unknown holder" in str(e)
