"""``GET /metrics`` after a small run, in both modes: the exposition parses with the
Prometheus text parser, and its saga counts match the sagas run (counted once, by the
service that orchestrates or tracks them, however many services keep a copy)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sagakit import Mode
from sagakit.dev import Fleet
from tests.e2e.test_trip import Agency, request

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    r = await client.get(f"{url}/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):  # raises on a malformed line
        assert family.documentation, f"{family.name} has no HELP"
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
async def test_saga_counts_match_the_sagas_run(mode: Mode, trip_fleets: dict[Mode, Fleet]) -> None:
    fleet = trip_fleets[mode]
    async with httpx.AsyncClient(timeout=30) as client:
        agency = Agency(fleet, client)
        urls = {name: fleet.url(name) for name in ("trips", "flight", "hotel", "car")}
        before = {n: await scrape(client, u) for n, u in urls.items()}
        ok = [await agency.book(request()) for _ in range(4)]
        no_car = [await agency.book(request(car_class="limousine")) for _ in range(3)]
        await asyncio.gather(*(agency.settled(s) for s in (*ok, *no_car)))
        if mode is Mode.CHOREOGRAPHY:  # every copy has applied the last events too
            await asyncio.sleep(1.0)
        after = {n: await scrape(client, u) for n, u in urls.items()}

    def delta(service: str, name: str, **labels: str) -> float:
        labels = {"service": service, **labels}
        return value(after[service], name, **labels) - value(before[service], name, **labels)

    assert delta("trips", "sagakit_sagas_started_total", definition="trip") == 7
    ended = "sagakit_sagas_ended_total"
    assert delta("trips", ended, definition="trip", outcome="COMPLETED") == 4
    assert delta("trips", ended, definition="trip", outcome="FAILED") == 3
    took = "sagakit_saga_duration_seconds_count"
    assert delta("trips", took, definition="trip", outcome="FAILED") == 3
    commands = "sagakit_saga_commands_total"
    assert delta("trips", commands, definition="trip", command="car.rent") == 7
    assert delta("trips", commands, definition="trip", command="flight.cancel") == 3
    # Step latency: each step's command answered, by what the answer meant.
    steps = "sagakit_step_seconds_count"
    assert delta("trips", steps, definition="trip", step="rent_car", outcome="done") == 4
    assert delta("trips", steps, definition="trip", step="rent_car", outcome="failed") == 3
    assert delta("trips", steps, definition="trip", step="book_flight", outcome="undone") == 3
    # Participants keep copies in choreography, but never count the sagas.
    for participant in ("flight", "hotel", "car"):
        assert delta(participant, "sagakit_sagas_started_total", definition="trip") == 0
    # Handler latency, by the type of the message handled: the command orchestrated; the
    # saga event that runs it (the start: the flight is booked in the first stage)
    # choreographed.
    handled = "flight.book" if mode is Mode.ORCHESTRATION else "trip.start"
    assert delta("flight", "sagakit_handler_seconds_count", type=handled) == 7
    assert delta("trips", "sagakit_messages_handled_total") > 0
    assert ("sagakit_outbox_backlog", (("service", "trips"),)) in after["trips"]
    lags = [k for k in after["trips"] if k[0] == "sagakit_consumer_lag"]
    assert lags and all(dict(labels)["topic"] for _, labels in lags), "a series per partition"
