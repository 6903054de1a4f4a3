"""Typed settings, read once from ``SAGAKIT_*`` environment variables.

A bad value fails loudly with the variable's name rather than surfacing later as an odd
connection error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sagakit.errors import ConfigError

DEFAULT_DATABASES: tuple[str, ...] = ()


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} must be <= {maximum}")
    return value


def _names(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if not raw:
        return default
    names = tuple(part.strip() for part in raw.split(",") if part.strip())
    for db in names:
        if not db.replace("_", "").isalnum():
            raise ConfigError(f"{name}: {db!r} is not a plain identifier")
    return names


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Where sagakit finds (or starts) its infrastructure."""

    database_url: str | None = None
    """A PostgreSQL *server* URL. Unset: an embedded server is started under ``home``."""
    kafka_bootstrap: str | None = None
    """Kafka bootstrap servers. Unset: the bundled Tansu broker is started."""
    home: Path = field(default_factory=lambda: Path(".sagakit"))
    """Folder for the embedded stack's data, logs and state file."""
    partitions: int = 3
    """Partition count of every topic the stack creates."""
    replication_factor: int = 1
    """Replication factor of every topic created (3 on a production cluster is usual)."""
    databases: tuple[str, ...] = DEFAULT_DATABASES
    """Extra databases ``sagakit dev up`` creates (each service creates its own at start-up
    when it may, and ``dev up MODULE:NAME`` those of the services named)."""
    fetch_max_wait_ms: int = 20
    """Consumer fetch max-wait: the broker answers an idle fetch only after this long."""
    fetch_idle_wait_ms: int = 250
    """The fetch max-wait of a consumer that has had nothing for 5 s: fewer empty fetches at
    rest (a broker like Tansu answers each only at its max-wait), at the price of up to this
    long per hop for the first saga after a quiet spell."""
    session_timeout_ms: int = 6000
    """Consumer group session timeout: how long a dead consumer holds its partitions."""
    heartbeat_interval_ms: int = 500
    """Consumer heartbeat interval."""
    inbox_retention_hours: int = 168
    """How long the inbox remembers handled message ids: the window in which a redelivered
    message is still recognised as a duplicate. Keep it longer than any redelivery can take."""
    saga_retention_hours: int = 720
    """How long a finished saga and its log are kept before pruning."""
    namespace: str = ""
    """Prefix of topic, consumer group and database names: several deployments (or test
    runs) can share one cluster and one PostgreSQL server."""

    def database(self, name: str) -> str:
        """The namespaced name of a service database."""
        return f"{self.namespace}_{name}" if self.namespace else name

    def group(self, name: str) -> str:
        """The namespaced name of a consumer group."""
        return group_name(self.namespace, name)

    @property
    def database_names(self) -> tuple[str, ...]:
        return tuple(self.database(d) for d in self.databases)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("SAGAKIT_DATABASE_URL") or None,
            kafka_bootstrap=env.get("SAGAKIT_KAFKA_BOOTSTRAP") or None,
            home=Path(env.get("SAGAKIT_HOME") or ".sagakit"),
            partitions=_int(env, "SAGAKIT_PARTITIONS", 3, minimum=1),
            replication_factor=_int(env, "SAGAKIT_REPLICATION_FACTOR", 1, minimum=1),
            databases=_names(env, "SAGAKIT_DATABASES", DEFAULT_DATABASES),
            fetch_max_wait_ms=_int(env, "SAGAKIT_FETCH_MAX_WAIT_MS", 20, minimum=1),
            # (under the client's request timeout, 15 s, or idle fetches would time out)
            fetch_idle_wait_ms=_int(
                env, "SAGAKIT_FETCH_IDLE_WAIT_MS", 250, minimum=1, maximum=5000
            ),
            session_timeout_ms=_int(env, "SAGAKIT_SESSION_TIMEOUT_MS", 6000, minimum=1000),
            heartbeat_interval_ms=_int(env, "SAGAKIT_HEARTBEAT_INTERVAL_MS", 500, minimum=100),
            namespace=_names(env, "SAGAKIT_NAMESPACE", ("",))[0],
            inbox_retention_hours=_int(env, "SAGAKIT_INBOX_RETENTION_HOURS", 168, minimum=1),
            saga_retention_hours=_int(env, "SAGAKIT_SAGA_RETENTION_HOURS", 720, minimum=1),
        )


def database_url(server_url: str, database: str) -> str:
    """The URL of ``database`` on the server that ``server_url`` points at."""
    scheme, sep, rest = server_url.partition("://")
    if not sep:
        raise ConfigError("database URL has no scheme (postgresql://...)")
    authority, _, tail = rest.partition("/")
    query = ""
    if "?" in tail:
        query = "?" + tail.split("?", 1)[1]
    return f"{scheme}://{authority}/{database}{query}"


def group_name(namespace: str, name: str) -> str:
    """The consumer group of service ``name`` in ``namespace``."""
    return f"{namespace}.{name}" if namespace else name
