"""A service started while its database is down waits for it (bounded, logged) instead of
exiting, and comes up healthy once the database is there."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg
import httpx
import pytest

from sagakit.devstack import StackInfo, postgres
from sagakit.devstack.processes import free_port
from tests.conftest import _test_root


async def test_a_service_waits_for_its_database(stack: StackInfo, tmp_path: Path) -> None:
    data = Path(tempfile.mkdtemp(prefix="late-pg-", dir=_test_root())) / "pg"
    pg_port, http_port = free_port(), free_port()
    await asyncio.to_thread(postgres.start, data, pg_port)
    server = f"postgresql://postgres:secret-pw@127.0.0.1:{pg_port}/postgres"
    admin = await asyncpg.connect(server.replace(":secret-pw", ""))
    await admin.execute("CREATE DATABASE payments")
    await admin.close()
    await asyncio.to_thread(postgres.stop, data)  # down before the service starts
    log = tmp_path / "payment.log"
    env = {
        **os.environ,
        "SAGAKIT_DATABASE_URL": server,
        "SAGAKIT_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "SAGAKIT_PORT": str(http_port),
        "SAGAKIT_SESSION_TIMEOUT_MS": "3000",
    }
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sagakit",
            "run",
            "examples.shop.payment:service",
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        await asyncio.sleep(4)
        assert proc.returncode is None, log.read_text()
        await asyncio.to_thread(postgres.start, data, pg_port)
        async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(60):
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{http_port}/health")).is_success:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        text = log.read_text()
        assert "waiting" in text.lower() or "not reachable" in text.lower(), text
        assert "secret-pw" not in text, "the password never reaches the log"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 20)
        await asyncio.to_thread(postgres.stop, data)
        await asyncio.to_thread(postgres.wipe, data)


@pytest.mark.parametrize(
    ("ref", "named"),
    [
        ("tests.e2e.misfit:service", ["'flight.unavailible'", "flight.book"]),
        ("tests.e2e.misfit:broken_tables", ["broken", "TABLEE"]),
    ],
)
async def test_a_service_that_cannot_start_says_why_in_one_line(
    stack: StackInfo, ref: str, named: list[str]
) -> None:
    """A handler that does not fit its saga (found before anything starts) and a failure
    while starting (its tables) both end the process with one line naming the problem."""
    env = {
        **os.environ,
        "SAGAKIT_DATABASE_URL": stack.database_url,
        "SAGAKIT_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "SAGAKIT_PORT": str(free_port()),
    }
    env.pop("SAGAKIT_DEBUG", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sagakit",
        "run",
        ref,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    text = out.decode()
    assert proc.returncode not in (0, None), text
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if all(n in ln for n in named)]
    assert len(lines) == 1, text
