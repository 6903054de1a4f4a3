"""The trip example end to end, in both modes: its four services as processes on the
session's stack, in a namespace of their own. Success books all three (the flight and the
hotel at once); a car that cannot be had cancels the flight and the hotel; the command line
shows a saga's timeline; the same idempotency key starts one saga. (A refusal at each step,
and a participant killed mid-step, are in test_modes_matrix.py.)"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from sagakit import Mode, Service
from sagakit.dev import Fleet, database_url

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def request(car_class: str = "compact") -> dict[str, Any]:
    return {
        "traveller": "Ada Lovelace",
        "origin": "LHR",
        "destination": "LIS",
        "depart": "2030-06-01",
        "nights": 3,
        "car_class": car_class,
    }


class Agency:
    """A client of the trip fleet: the agency's HTTP API and each participant's database."""

    def __init__(self, fleet: Fleet, client: httpx.AsyncClient) -> None:
        self.fleet = fleet
        self.http = client
        self.url = fleet.url("trips")

    async def start(self, data: dict[str, Any], key: str | None = None) -> httpx.Response:
        headers = {"Idempotency-Key": key} if key else {}
        return await self.http.post(f"{self.url}/sagas/trip/start", json=data, headers=headers)

    async def book(self, data: dict[str, Any]) -> str:
        r = await self.start(data)
        assert r.status_code == 202, r.text
        return str(r.json()["saga_id"])

    async def saga(self, saga_id: str) -> dict[str, Any]:
        r = await self.http.get(f"{self.url}/sagas/{saga_id}")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    async def reaches(self, saga_id: str, *statuses: str, timeout: float = 40) -> dict[str, Any]:
        """Wait until the saga exists and is in one of ``statuses``; return its timeline."""
        async with asyncio.timeout(timeout):
            while True:
                r = await self.http.get(f"{self.url}/sagas/{saga_id}")
                if r.status_code == 200 and r.json()["saga"]["status"] in statuses:
                    body: dict[str, Any] = r.json()
                    return body
                await asyncio.sleep(0.05)

    async def settled(self, saga_id: str) -> dict[str, Any]:
        return await self.reaches(saga_id, "COMPLETED", "FAILED")

    async def row(self, service: str, table: str, trip_id: str) -> dict[str, Any] | None:
        """The participant's row for the trip, read from its own database."""
        (svc,) = [s for s in self.fleet.declared() if s.name == service]
        assert isinstance(svc, Service)
        name = self.fleet.settings.database(svc.database)
        conn = await asyncpg.connect(database_url(self.fleet.stack.database_url, name))
        try:
            found = await conn.fetchrow(f"SELECT * FROM {table} WHERE trip_id = $1", trip_id)
        finally:
            await conn.close()
        return dict(found) if found is not None else None

    async def replica_statuses(self, saga_id: str) -> dict[str, str | None]:
        """Choreography: each participant's own copy of the saga, from its database."""
        out = {}
        for svc in self.fleet.declared():
            name = self.fleet.settings.database(svc.database)
            conn = await asyncpg.connect(database_url(self.fleet.stack.database_url, name))
            try:
                status = await conn.fetchval("SELECT status FROM sagas WHERE saga_id = $1", saga_id)
            finally:
                await conn.close()
            out[svc.name] = status
        return out

    async def statuses(self, trip_id: str) -> dict[str, str | None]:
        out = {}
        for service, table in (("flight", "flights"), ("hotel", "rooms"), ("car", "rentals")):
            found = await self.row(service, table, trip_id)
            out[service] = found["status"] if found else None
        return out


def sent(timeline: dict[str, Any]) -> list[str]:
    """Every command the orchestrator sent for the saga, in order."""
    return [c for entry in timeline["log"] for c in entry["commands"]]


def steps(timeline: dict[str, Any]) -> list[str]:
    """The commands sent, in order, each once (a slow machine may see a re-send)."""
    return list(dict.fromkeys(sent(timeline)))


@pytest.fixture(params=list(Mode), ids=[m.value for m in Mode])
def trip_fleet(request: pytest.FixtureRequest, trip_fleets: dict[Mode, Fleet]) -> Fleet:
    return trip_fleets[request.param]


@pytest.fixture
async def agency(trip_fleet: Fleet) -> AsyncIterator[Agency]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield Agency(trip_fleet, client)


async def test_a_trip_books_a_flight_a_hotel_and_a_car(agency: Agency) -> None:
    saga_id = await agency.book(request())
    timeline = await agency.settled(saga_id)
    saga = timeline["saga"]
    assert saga["status"] == "COMPLETED", timeline
    assert steps(timeline) == ["flight.book", "hotel.book", "car.rent"]
    short = saga_id[:8]
    assert saga["data"]["flight_ref"] == f"FL-{short}"
    assert saga["data"]["hotel_ref"] == f"HT-{short}"
    assert saga["data"]["car_ref"] == f"CR-{short}"
    assert await agency.statuses(saga_id) == {
        "flight": "BOOKED",
        "hotel": "BOOKED",
        "car": "RENTED",
    }
    room = await agency.row("hotel", "rooms", saga_id)
    assert room is not None
    assert (room["check_out"] - room["check_in"]).days == 3


async def test_no_car_cancels_the_flight_and_the_hotel(agency: Agency) -> None:
    saga_id = await agency.book(request(car_class="limousine"))
    timeline = await agency.settled(saga_id)
    saga = timeline["saga"]
    assert saga["status"] == "FAILED", timeline
    assert saga["reason"] == "no limousine cars at LIS"
    log = timeline["log"]
    assert log[0]["commands"] == ["flight.book", "hotel.book"], "the stay is booked at once"
    assert steps(timeline) == [
        "flight.book",
        "hotel.book",
        "car.rent",
        "flight.cancel",
        "hotel.cancel",
    ]
    undo = next(e for e in log if e["event"] == "car.unavailable")
    assert undo["commands"] == ["flight.cancel", "hotel.cancel"], "the group is undone at once"
    events = [(e["event"], e["status"]) for e in log[-2:]]
    assert sorted(e for e, _ in events) == ["flight.cancelled", "hotel.cancelled"]
    assert [s for _, s in events] == ["COMPENSATING", "FAILED"], "failed once both answered"
    if agency.fleet.mode is Mode.CHOREOGRAPHY:
        # No orchestrator: every service followed the saga's events and reached the same end.
        async with asyncio.timeout(10):
            while set((await agency.replica_statuses(saga_id)).values()) != {"FAILED"}:
                await asyncio.sleep(0.05)
    # Nothing stays booked; the refused car left nothing behind.
    assert await agency.statuses(saga_id) == {
        "flight": "CANCELLED",
        "hotel": "CANCELLED",
        "car": None,
    }


async def test_the_command_line_shows_a_saga_timeline(agency: Agency) -> None:
    fleet = agency.fleet
    saga_id = await agency.book(request(car_class="limousine"))
    await agency.settled(saga_id)
    env = {
        **os.environ,
        "SAGAKIT_DATABASE_URL": fleet.stack.database_url,
        "SAGAKIT_KAFKA_BOOTSTRAP": fleet.stack.kafka_bootstrap,
        "SAGAKIT_NAMESPACE": fleet.settings.namespace,
    }

    def sagakit(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "sagakit", *args, "--service", "examples.trip.trips:service"],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    shown = await asyncio.to_thread(sagakit, "sagas", "show", saga_id)
    lines = shown.splitlines()
    assert lines[0] == f"saga {saga_id} (trip v1)"
    assert "FAILED (no limousine cars at LIS)" in lines[1]
    assert "timeline" in shown
    timeline = [line for line in lines if " ms " in line]
    assert "on start -> flight.book, hotel.book" in timeline[0], shown
    undo = "COMPENSATING book_stay        on car.unavailable -> flight.cancel, hotel.cancel"
    assert undo in timeline[-3], shown
    assert "COMPENSATING book_stay        on " in timeline[-2], shown
    assert "FAILED       book_stay        on " in timeline[-1], shown
    listed = await asyncio.to_thread(sagakit, "sagas", "list")
    assert saga_id in listed


async def test_the_same_idempotency_key_starts_one_saga(agency: Agency) -> None:
    key = f"k-{uuid.uuid4().hex}"
    first = await agency.start(request(), key=key)
    assert first.status_code == 202, first.text
    if agency.fleet.mode is Mode.CHOREOGRAPHY:  # the tracker knows a saga once it started
        await agency.reaches(first.json()["saga_id"], "RUNNING", "COMPLETED")
    again = await agency.start(request(), key=key)
    assert again.status_code == 200, again.text
    assert first.json()["saga_id"] == again.json()["saga_id"]
    assert (first.json()["created"], again.json()["created"]) == (True, False)
    reused = await agency.start({**request(), "nights": 9}, key=key)
    assert reused.status_code == 409, reused.text
    assert "other data" in reused.json()["detail"]
    timeline = await agency.settled(first.json()["saga_id"])
    assert timeline["saga"]["status"] == "COMPLETED"
    assert timeline["saga"]["data"]["nights"] == request()["nights"]
    # The body is checked against the saga's data model as JSON, strictly: a date is a
    # string, but a number is not.
    bad = await agency.start({**request(), "nights": "3"}, key=f"k-{uuid.uuid4().hex}")
    assert bad.status_code == 422, bad.text
    assert bad.json()["detail"][0]["loc"] == ["body", "nights"]
    assert steps(timeline) == ["flight.book", "hotel.book", "car.rent"]


async def test_starting_from_application_code_is_idempotent(agency: Agency) -> None:
    """POST /trips starts the saga inside the agency's own transaction (start_saga)."""
    key = f"k-{uuid.uuid4().hex}"
    ids = []
    for _ in range(2):
        r = await agency.http.post(
            f"{agency.url}/trips", json=request(), headers={"Idempotency-Key": key}
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["saga_id"])
    assert ids[0] == ids[1]
    timeline = await agency.settled(ids[0])
    assert timeline["saga"]["status"] == "COMPLETED"
    assert [e["event"] for e in timeline["log"]].count("start") == 1
    assert steps(timeline) == ["flight.book", "hotel.book", "car.rent"]
    # The key names the same saga whichever way it is started.
    r = await agency.start(request(), key=key)
    assert (r.status_code, r.json()["saga_id"]) == (200, ids[0])
    # A start that does not fit the saga's data model is refused before anything is written.
    bad = await agency.http.post(
        f"{agency.url}/trips", json={**request(), "nights": 0}, headers={"Idempotency-Key": key}
    )
    assert bad.status_code == 422
