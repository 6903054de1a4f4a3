"""Start the order flow's services as separate processes, wait until each is healthy, and
stop (or kill) them. Used by ``sagakit up``, the demo and the end-to-end tests."""

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
from sagakit.services.host import Mode
from sagakit.topics import declared_topics

DEFAULT_PORTS: Mapping[str, int] = {
    "order": 8001,
    "inventory": 8002,
    "payment": 8003,
    "orchestrator": 8004,
}


def services_for(mode: Mode) -> tuple[str, ...]:
    names = ("order", "inventory", "payment")
    return (*names, "orchestrator") if mode is Mode.ORCHESTRATION else names


@dataclass
class ServiceProcess:
    name: str
    port: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Fleet:
    stack: StackInfo
    settings: Settings
    mode: Mode = Mode.ORCHESTRATION
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    log_dir: Path = Path(".sagakit/logs")
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for every service (failure rates, log level)."""
    replicas: Mapping[str, int] = field(default_factory=dict)
    """More than one process of a service: extra ones get the next ports."""

    def __post_init__(self) -> None:
        self.processes: dict[str, ServiceProcess] = {}
        for name in services_for(self.mode):
            for i in range(self.replicas.get(name, 1)):
                key = name if i == 0 else f"{name}-{i + 1}"
                port = self.ports[name] + 10 * i
                self.processes[key] = ServiceProcess(key, port, self.log_dir / f"{key}.log")

    def url(self, name: str) -> str:
        return self.processes[name].url

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, *, timeout: float = 60.0) -> None:
        s = self.settings
        await ensure_databases(self.stack.database_url, s.database_names)
        await ensure_topics(self.stack.kafka_bootstrap, declared_topics(s.namespace), s.partitions)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for name in self.processes:
                self._spawn(name)
            await asyncio.gather(*(self.wait_healthy(n, timeout=timeout) for n in self.processes))
        except BaseException:
            self.stop()
            raise

    def _spawn(self, name: str) -> None:
        sp = self.processes[name]
        module = name.split("-")[0]
        env = {
            **os.environ,
            **self.env,
            "SAGAKIT_DATABASE_URL": self.stack.database_url,
            "SAGAKIT_KAFKA_BOOTSTRAP": self.stack.kafka_bootstrap,
            "SAGAKIT_MODE": self.mode.value,
            "SAGAKIT_PORT": str(sp.port),
            "SAGAKIT_NAMESPACE": self.settings.namespace,
            "SAGAKIT_PARTITIONS": str(self.settings.partitions),
            "SAGAKIT_SESSION_TIMEOUT_MS": str(self.settings.session_timeout_ms),
            "SAGAKIT_FETCH_MAX_WAIT_MS": str(self.settings.fetch_max_wait_ms),
        }
        with sp.log.open("ab") as out:
            sp.proc = subprocess.Popen(
                [sys.executable, "-m", f"sagakit.services.{module}"],
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

    def kill(self, name: str) -> None:
        """SIGKILL the service's process group: no cleanup, no goodbye to the broker."""
        self._signal(name, signal.SIGKILL)

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
