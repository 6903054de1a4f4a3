"""The development stack: configured servers where given, embedded ones otherwise.

``up`` is idempotent: parts recorded in the state file and still alive are reused.
``down`` stops only what this stack started.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sagakit.config import Settings
from sagakit.db.pool import redact
from sagakit.devstack import broker, postgres
from sagakit.devstack.processes import alive, free_port, port_open
from sagakit.devstack.provision import ensure_databases, ensure_topics
from sagakit.errors import StackError
from sagakit.topics import DEAD_LETTERS, topic_name


@dataclass(frozen=True)
class StackInfo:
    database_url: str
    kafka_bootstrap: str
    postgres_pid: int | None = None
    postgres_log: str | None = None
    broker_pid: int | None = None
    broker_log: str | None = None
    started_in: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class DevStack:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.home = self.settings.home.resolve()
        self.state_file = self.home / "stack.json"
        self.pgdata = self.home / "pgdata"

    # -- state ---------------------------------------------------------------------------
    def _load(self) -> StackInfo | None:
        try:
            return StackInfo(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def _save(self, info: StackInfo) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(info.to_json(), indent=2))

    def status(self) -> StackInfo | None:
        """What runs where, or None if nothing recorded is alive."""
        info = self._load()
        if info is None:
            return None
        pg_ok = info.postgres_pid is None or _serving(info.postgres_pid, info.database_url)
        broker_ok = info.broker_pid is None or _serving(info.broker_pid, info.kafka_bootstrap)
        return info if pg_ok and broker_ok else None

    # -- lifecycle -----------------------------------------------------------------------
    def up(
        self,
        *,
        timeout: float = 30.0,
        databases: Sequence[str] = (),
        topics: Sequence[str] = (),
    ) -> StackInfo:
        """Start (or reuse) the stack, then create ``databases`` (namespaced here) and
        ``topics`` (namespaced already), with the dead-letter topic and the databases
        listed in the settings."""
        begun = time.monotonic()
        previous = self._load()
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        pg_pid = pg_log = broker_pid = broker_log = None

        if s.database_url:
            database_url = s.database_url
        elif previous and _serving(previous.postgres_pid, previous.database_url):
            database_url, pg_pid, pg_log = (
                previous.database_url,
                previous.postgres_pid,
                previous.postgres_log,
            )
        else:
            pg = postgres.start(self.pgdata, free_port(), timeout=timeout)
            database_url, pg_pid, pg_log = pg.url, pg.pid, str(pg.log)

        if s.kafka_bootstrap:
            bootstrap = s.kafka_bootstrap
        elif previous and _serving(previous.broker_pid, previous.kafka_bootstrap):
            bootstrap, broker_pid, broker_log = (
                previous.kafka_bootstrap,
                previous.broker_pid,
                previous.broker_log,
            )
        else:
            try:
                b = broker.start(free_port(), self.home / "broker.log", timeout=timeout)
            except StackError:
                if pg_pid and not (previous and previous.postgres_pid == pg_pid):
                    postgres.stop(self.pgdata)
                raise
            bootstrap, broker_pid, broker_log = b.bootstrap, b.pid, str(b.log)

        info = StackInfo(
            database_url=database_url,
            kafka_bootstrap=bootstrap,
            postgres_pid=pg_pid,
            postgres_log=pg_log,
            broker_pid=broker_pid,
            broker_log=broker_log,
        )
        self._save(info)
        try:
            asyncio.run(self._provision(info, timeout, databases, topics))
        except Exception as exc:
            raise StackError(f"stack started but provisioning failed: {exc!r}") from exc
        info = StackInfo(**{**info.to_json(), "started_in": round(time.monotonic() - begun, 3)})
        self._save(info)
        return info

    async def _provision(
        self, info: StackInfo, limit: float, databases: Sequence[str], topics: Sequence[str]
    ) -> None:
        s = self.settings
        names = (*s.database_names, *(s.database(d) for d in databases))
        try:
            await asyncio.wait_for(ensure_databases(info.database_url, names), limit)
        except Exception as exc:
            raise StackError(
                f"PostgreSQL at {redact(info.database_url)} unreachable: {exc!r}"
            ) from exc
        try:
            await asyncio.wait_for(
                ensure_topics(
                    info.kafka_bootstrap,
                    (*topics, topic_name(s.namespace, DEAD_LETTERS)),
                    s.partitions,
                    replication_factor=s.replication_factor,
                ),
                limit,
            )
        except Exception as exc:
            raise StackError(f"Kafka at {info.kafka_bootstrap} unreachable: {exc!r}") from exc

    def down(self, *, wipe: bool = False) -> list[str]:
        """Stop what this stack started; return the names of the parts stopped."""
        info = self._load()
        stopped = []
        if info and info.broker_pid and alive(info.broker_pid):
            broker.stop(info.broker_pid)
            stopped.append("broker")
        if info and info.postgres_pid:
            if alive(info.postgres_pid):
                stopped.append("postgres")
            postgres.stop(self.pgdata)
        self.state_file.unlink(missing_ok=True)
        if wipe:
            postgres.wipe(self.pgdata)
            for log in self.home.glob("*.log"):
                log.unlink()
        return stopped


def _serving(pid: int | None, address: str) -> bool:
    """The recorded process is alive and its port answers (a pid alone may have been reused
    by an unrelated process since, e.g. after a reboot)."""
    hostport = address.split("@")[-1].split("/")[0]
    host, _, port = hostport.rpartition(":")
    return alive(pid) and port.isdigit() and port_open(host or "127.0.0.1", int(port))
