"""Small process helpers: free ports, readiness polling, process-group shutdown."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from sagakit.errors import StackError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def wait_until(
    ready: Callable[[], bool], *, what: str, timeout: float, log: Path | None = None
) -> None:
    """Poll ``ready`` until it answers True; fail naming ``what`` and its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.02)
    where = f"; see its log at {log}" if log else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f} s{where}")


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        status: str = psutil.Process(pid).status()
    except psutil.Error:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def stop_group(pid: int, *, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid``, then SIGKILL whatever is left."""
    try:
        members = [psutil.Process(pid)]
        members += members[0].children(recursive=True)
    except psutil.NoSuchProcess:
        members = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        _, still = psutil.wait_procs(members, timeout=timeout)
        if not still:
            return
        members = still
    raise StackError(f"processes {[p.pid for p in members]} survived SIGKILL")


_SPAWN = """
import subprocess, sys
with open(sys.argv[1], "ab") as out:
    child = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
print(child.pid)
"""


def spawn_detached(argv: list[str], log: Path) -> int:
    """Start ``argv`` as a daemon: its own session and process group (pgid == pid), not a
    child of this process, output appended to ``log``. Returns its pid."""
    out = subprocess.run(
        [sys.executable, "-c", _SPAWN, str(log), *argv],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return int(out.stdout.strip())
