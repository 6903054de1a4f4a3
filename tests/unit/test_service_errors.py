"""Service HTTP errors: an unreachable database is a 503 with a reason, not a crash."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import APIRouter

from sagakit.db import MigrationSet
from sagakit.runtime import Service
from sagakit.runtime.host import create_app

routes = APIRouter()


@routes.post("/boom/{kind}")
async def boom(kind: str) -> None:
    raise {
        "refused": ConnectionRefusedError(111, "refused"),
        "starting": asyncpg.CannotConnectNowError("the database system is starting up"),
        "closed": asyncpg.ConnectionDoesNotExistError("connection was closed"),
    }[kind]


@pytest.mark.parametrize("kind", ["refused", "starting", "closed"])
async def test_database_unavailable_is_503(kind: str) -> None:
    spec = Service("test", migrations=MigrationSet("test", ()), routes=routes)
    app = create_app(spec)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post(f"/boom/{kind}")
    assert r.status_code == 503
    assert "database unavailable" in r.json()["detail"]
    assert r.headers["retry-after"] == "1"
