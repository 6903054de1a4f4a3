"""Start services as separate processes (``sagakit run MODULE:NAME``), wait until each is
healthy, and stop (or kill) them: for demos, local runs and end-to-end tests. Their
databases and topics are created first, from what the services declare."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sagakit.config import Settings
from sagakit.devstack import StackInfo
from sagakit.devstack.provision import ensure_databases, ensure_topics
from sagakit.errors import StackError
from sagakit.refs import load_as
from sagakit.runtime.service import Mode, Service, check_system

CONSOLE = "console"
"""The process name of the web console in a fleet."""


@dataclass
class ServiceProcess:
    name: str
    port: int
    log: Path
    service: str = ""
    """Name of the service it runs (``name`` without the replica suffix)."""
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    stack: StackInfo
    settings: Settings
    services: Mapping[str, str]
    """Process name -> ``MODULE:NAME`` of its :class:`Service`."""
    ports: Mapping[str, int]
    """Process name -> HTTP port."""
    mode: Mode = Mode.ORCHESTRATION
    log_dir: Path = Path(".sagakit/logs")
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for every service (failure rates, log level)."""
    replicas: Mapping[str, int] = field(default_factory=dict)
    """More than one process of a service: extra ones get the next ports."""
    console_port: int | None = None
    """Also serve the web console (``sagakit console``) for these services on this port,
    once they are up."""

    def __post_init__(self) -> None:
        self.processes: dict[str, ServiceProcess] = {}
        for name in self.services:
            for i in range(self.replicas.get(name, 1)):
                key = name if i == 0 else f"{name}-{i + 1}"
                port = self.ports[name] + 10 * i
                self.processes[key] = ServiceProcess(key, port, self.log_dir / f"{key}.log", name)

    def url(self, name: str) -> str:
        return self.processes[name].url

    # -- lifecycle -----------------------------------------------------------------------
    def declared(self) -> list[Service]:
        return [svc for ref in self.services.values() for svc in load_as(ref, Service)]

    def topics(self) -> tuple[str, ...]:
        """Every topic the fleet's services read or write."""
        ns = self.settings.namespace
        return tuple(dict.fromkeys(t for s in self.declared() for t in s.topics(self.mode, ns)))

    async def start(self, *, timeout: float = 60.0) -> None:
        s = self.settings
        services = self.declared()
        check_system(services, self.mode)  # a command nobody handles fails here, by name
        dbs = dict.fromkeys(s.database(svc.database) for svc in services)
        await ensure_databases(self.stack.database_url, dbs)
        await ensure_topics(
            self.stack.kafka_bootstrap,
            self.topics(),
            s.partitions,
            replication_factor=s.replication_factor,
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in self.processes:
                self._spawn(name)
            await asyncio.gather(*(self.wait_healthy(n, timeout=timeout) for n in self.processes))
            if self.console_port is not None:  # it reads the databases the services made
                await self._console_if_it_can(self.console_port, timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str) -> None:
        sp = self.processes[name]
        if sp.service == CONSOLE:
            argv = ["console", *self.services.values(), "--port", str(sp.port)]
        else:
            argv = ["run", self.services[sp.service]]
        env = {
            **os.environ,
            **self.env,
            "SAGAKIT_DATABASE_URL": self.stack.database_url,
            "SAGAKIT_KAFKA_BOOTSTRAP": self.stack.kafka_bootstrap,
            "SAGAKIT_MODE": self.mode.value,
            "SAGAKIT_PORT": str(sp.port),
            "SAGAKIT_NAMESPACE": self.settings.namespace,
            "SAGAKIT_PARTITIONS": str(self.settings.partitions),
            "SAGAKIT_REPLICATION_FACTOR": str(self.settings.replication_factor),
            "SAGAKIT_SESSION_TIMEOUT_MS": str(self.settings.session_timeout_ms),
            "SAGAKIT_FETCH_MAX_WAIT_MS": str(self.settings.fetch_max_wait_ms),
            "SAGAKIT_FETCH_IDLE_WAIT_MS": str(self.settings.fetch_idle_wait_ms),
        }
        with sp.log.open("ab") as out:
            sp.proc = subprocess.Popen(
                [sys.executable, "-m", "sagakit", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )

    async def wait_healthy(self, name: str, *, timeout: float = 60.0) -> None:
        sp = self.processes[name]
        async with httpx.AsyncClient(timeout=2) as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                if sp.proc is not None and sp.proc.poll() is not None:
                    raise StackError(
                        f"{name} service exited with {sp.proc.returncode}; see {sp.log}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{sp.url}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise StackError(f"{name} service not healthy within {timeout:.0f} s; see {sp.log}")

    async def start_console(self, port: int, *, timeout: float = 60.0) -> ServiceProcess:
        """Start the web console for the running services on ``port``."""
        log = self.log_dir / f"{CONSOLE}.log"
        self.processes[CONSOLE] = ServiceProcess(CONSOLE, port, log, CONSOLE)
        self._spawn(CONSOLE)
        await self.wait_healthy(CONSOLE, timeout=timeout)
        return self.processes[CONSOLE]

    async def _console_if_it_can(self, port: int, *, timeout: float) -> None:
        """The console is an aid: the services run without it when it cannot start (its
        port taken, say)."""
        try:
            await self.start_console(port, timeout=timeout)
        except StackError as exc:
            self.stop([CONSOLE])
            del self.processes[CONSOLE]
            print(f"the console did not start ({exc}); the services run without it", flush=True)

    def proceed(self, name: str) -> None:
        """SIGCONT a paused service's process group: it goes on where it stopped."""
        self._signal(name, signal.SIGCONT)

    def kill(self, name: str) -> None:
        """SIGKILL the service's process group: no cleanup, no goodbye to the broker."""
        self._signal(name, signal.SIGKILL)

    def pause(self, name: str) -> None:
        """SIGSTOP the service's process group: it holds what it has and answers nothing."""
        self._signal(name, signal.SIGSTOP)

    async def restart(self, name: str, *, timeout: float = 60.0) -> None:
        self._spawn(name)
        await self.wait_healthy(name, timeout=timeout)

    def stop(self, names: Sequence[str] | None = None, *, grace: float = 15.0) -> None:
        for name in names or list(self.processes):
            self._signal(name, signal.SIGTERM)
        for name in names or list(self.processes):
            proc = self.processes[name].proc
            if proc is None:
                continue
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(name, signal.SIGKILL)
                proc.wait(5)

    def _signal(self, name: str, sig: signal.Signals) -> None:
        proc = self.processes[name].proc
        if proc is None or proc.poll() is not None:
            if proc is not None and sig is signal.SIGKILL:
                proc.wait()
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig is signal.SIGKILL:
            proc.wait(10)


def run_until_stopped(fleet: Fleet, *, keep_stack: bool = False) -> int:
    """Print where everything runs, then wait for Ctrl-C, SIGTERM or a service exiting, and
    stop the services (and the dev stack unless ``keep_stack``)."""
    import time

    from sagakit.db.pool import redact
    from sagakit.devstack import DevStack

    print(f"up in {fleet.mode} mode")
    print(f"  PostgreSQL  {redact(fleet.stack.database_url)}")
    print(f"  Kafka       {fleet.stack.kafka_bootstrap}")
    for name, sp in fleet.processes.items():
        if name == CONSOLE:
            print(f"  {name:<13}{sp.url}  (the web console, log {sp.log})")
        else:
            print(f"  {name:<13}{sp.url}  (API docs {sp.url}/docs, log {sp.log})")
    print("Ctrl-C stops everything.")
    stopped = False

    def stop(*_: object) -> None:
        nonlocal stopped
        stopped = True

    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopped:
            time.sleep(0.5)
            for name, sp in fleet.processes.items():
                if sp.proc is not None and sp.proc.poll() is not None:
                    print(f"{name} exited with {sp.proc.returncode}; see {sp.log}")
                    stopped = True
    except KeyboardInterrupt:
        pass
    finally:
        fleet.stop()
        if not keep_stack:
            DevStack(fleet.settings).down()
    return 0
