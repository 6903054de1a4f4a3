"""The dev stack itself: start, connect, provision, round trip, stop without leftovers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from sagakit.config import Settings
from sagakit.devstack import DevStack
from sagakit.messaging.transport.kafka import KafkaOptions, KafkaTransport
from sagakit.topics import DEAD_LETTERS
from tests.contract.transport import drain, rec


def _alive(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAKIT_")}
    env["SAGAKIT_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "sagakit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(180)
def test_embedded_stack_lifecycle(tmp_path: Path) -> None:
    home = tmp_path / "stack"
    up = _cli(home, "dev", "up", "examples.shop.system:SERVICES")  # their databases and topics
    assert up.returncode == 0, up.stderr
    status = _cli(home, "dev", "status", "--json")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert info["database_url"].startswith("postgresql://")
    assert info["kafka_bootstrap"].startswith("127.0.0.1:")
    pids = [info["postgres_pid"], info["broker_pid"]]
    assert all(_alive(p) for p in pids)

    async def exercise() -> None:
        conn = await asyncpg.connect(info["database_url"].rsplit("/", 1)[0] + "/orders")
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        transport = KafkaTransport(KafkaOptions(bootstrap=info["kafka_bootstrap"]))
        admin = AIOKafkaAdminClient(bootstrap_servers=info["kafka_bootstrap"])
        await admin.start()
        try:
            described = await admin.describe_topics(["inventory.reserve", DEAD_LETTERS])
        finally:
            await admin.close()
        assert [len(t["partitions"]) for t in described] == [3, 3]  # declared, not auto-made
        topic = DEAD_LETTERS
        async with transport.producer() as producer:
            await producer.send_many([rec(topic, "k", "hello")])
        async with transport.consumer(f"g-{uuid.uuid4().hex}", [topic]) as consumer:
            got = await drain(consumer, 1)
        assert got[0].value == b"hello"

    asyncio.run(exercise())

    again = _cli(home, "dev", "up")  # idempotent: reuses what runs
    assert again.returncode == 0
    assert json.loads(_cli(home, "dev", "status", "--json").stdout)["broker_pid"] == pids[1]

    down = _cli(home, "dev", "down", "--wipe")
    assert down.returncode == 0, down.stderr
    assert not any(_alive(p) for p in pids)
    leftovers = [
        p.info
        for p in psutil.process_iter(["pid", "cmdline", "status"])
        if str(home) in " ".join(p.info["cmdline"] or []) and p.info["status"] != "zombie"
    ]
    assert leftovers == []
    assert _cli(home, "dev", "status").returncode == 1


def test_configured_servers_start_nothing(tmp_path: Path, stack: object) -> None:
    from sagakit.devstack import StackInfo

    assert isinstance(stack, StackInfo)
    settings = Settings(
        database_url=stack.database_url,
        kafka_bootstrap=stack.kafka_bootstrap,
        home=tmp_path / "configured",
    )
    info = DevStack(settings).up()
    assert info.postgres_pid is None and info.broker_pid is None
    assert info.database_url == stack.database_url
    assert DevStack(settings).down() == []


def test_unreachable_broker_fails_naming_it(tmp_path: Path, stack: object) -> None:
    from sagakit.devstack import StackInfo
    from sagakit.errors import StackError

    assert isinstance(stack, StackInfo)
    settings = Settings(
        database_url=stack.database_url, kafka_bootstrap="127.0.0.1:1", home=tmp_path / "x"
    )
    with pytest.raises(StackError, match=re.escape("Kafka at 127.0.0.1:1")):
        DevStack(settings).up(timeout=5)
