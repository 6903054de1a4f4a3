from pathlib import Path

import pytest

from sagakit.config import Settings, database_url
from sagakit.errors import ConfigError


def test_defaults() -> None:
    s = Settings.from_env({})
    assert s.database_url is None and s.kafka_bootstrap is None
    assert s.partitions == 3 and s.replication_factor == 1 and s.home == Path(".sagakit")
    assert s.databases == ()


def test_values_are_read_and_checked() -> None:
    s = Settings.from_env({"SAGAKIT_PARTITIONS": "6", "SAGAKIT_DATABASES": "a, b_2"})
    assert s.partitions == 6 and s.databases == ("a", "b_2")
    with pytest.raises(ConfigError, match="SAGAKIT_PARTITIONS"):
        Settings.from_env({"SAGAKIT_PARTITIONS": "many"})
    with pytest.raises(ConfigError, match="must be >= 1"):
        Settings.from_env({"SAGAKIT_PARTITIONS": "0"})
    with pytest.raises(ConfigError, match="identifier"):
        Settings.from_env({"SAGAKIT_DATABASES": "x; DROP"})
    assert Settings.from_env({"SAGAKIT_REPLICATION_FACTOR": "3"}).replication_factor == 3
    with pytest.raises(ConfigError, match="SAGAKIT_REPLICATION_FACTOR=0 must be >= 1"):
        Settings.from_env({"SAGAKIT_REPLICATION_FACTOR": "0"})


def test_database_url_swaps_the_database() -> None:
    assert database_url("postgresql://u:p@h:5/postgres?sslmode=off", "orders") == (
        "postgresql://u:p@h:5/orders?sslmode=off"
    )
    assert database_url("postgresql://h", "x") == "postgresql://h/x"


def test_the_idle_fetch_wait_stays_under_the_request_timeout() -> None:
    assert Settings.from_env({"SAGAKIT_FETCH_IDLE_WAIT_MS": "5000"}).fetch_idle_wait_ms == 5000
    with pytest.raises(ConfigError, match="<= 5000"):
        Settings.from_env({"SAGAKIT_FETCH_IDLE_WAIT_MS": "20000"})
