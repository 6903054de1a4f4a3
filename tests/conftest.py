"""Shared fixtures. Integration and e2e tests use a real PostgreSQL server and a real
Kafka-protocol broker: the configured ones (SAGAKIT_DATABASE_URL, SAGAKIT_KAFKA_BOOTSTRAP)
or a private embedded stack started once per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from sagakit.config import Settings, database_url
from sagakit.db import MigrationSet, migrate
from sagakit.devstack import DevStack, StackInfo
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport

LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its layer, from the folder it lives in."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for layer in LAYERS:
            if layer in parts:
                item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture(scope="session")
def stack() -> Iterator[StackInfo]:
    home = Path(tempfile.mkdtemp(prefix="sagakit-test-", dir=_test_root()))
    settings = Settings.from_env()
    dev = DevStack(
        Settings(
            database_url=settings.database_url,
            kafka_bootstrap=settings.kafka_bootstrap,
            home=home,
            partitions=settings.partitions,
        )
    )
    info = dev.up(timeout=60)
    try:
        yield info
    finally:
        dev.down(wipe=True)
        shutil.rmtree(home, ignore_errors=True)


def _test_root() -> str:
    root = Path(os.environ.get("SAGAKIT_TEST_HOME", ".sagakit/test"))
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


MESSAGING = MigrationSet.from_package("messaging", "sagakit.messaging")


@pytest.fixture
async def fresh_db(stack: StackInfo) -> AsyncIterator[str]:
    """URL of a new, migrated database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database_url(stack.database_url, name)
    conn = await asyncpg.connect(url)
    await migrate(conn, MESSAGING)
    await conn.close()
    try:
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def kafka(stack: StackInfo) -> KafkaTransport:
    return KafkaTransport(
        KafkaOptions(
            bootstrap=stack.kafka_bootstrap,
            fetch_max_wait_ms=20,
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
        )
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
