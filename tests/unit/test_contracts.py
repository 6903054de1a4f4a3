"""Contracts are checked before anything runs: a handler that declares a reply its saga does
not know, or a command no service handles, is an error naming it; and at run time a handler
cannot send a reply it did not declare."""

from __future__ import annotations

from typing import Any

import pytest
from examples.trip import car, flight, hotel, trips
from examples.trip.saga import TRIP, Trip

from sagakit import (
    ConfigError,
    ContractError,
    MessageContext,
    MessageError,
    MigrationSet,
    Mode,
    Service,
    check_system,
    new_message,
)


def test_the_trip_system_is_consistent() -> None:
    check_system([flight.service, hotel.service, car.service, trips.service])


def test_a_misspelled_reply_type_is_named() -> None:
    svc = Service("flight", sagas=[TRIP])

    @svc.handles("flight.book", replies=("flight.booked", "flight.unavailible"))
    async def book(ctx: MessageContext, trip: Trip) -> None: ...

    with pytest.raises(ContractError) as err:
        svc.check()
    message = str(err.value)
    assert "'flight.unavailible'" in message
    assert "flight.book" in message
    assert "flight.unavailable" in message  # what the saga expects instead


def test_a_handler_taking_the_wrong_model_is_named() -> None:
    svc = Service("hotel", sagas=[TRIP])

    @svc.handles("hotel.book", dict)  # type: ignore[type-var]
    async def book(ctx: MessageContext, trip: Any) -> None: ...

    with pytest.raises(ContractError, match=r"'hotel\.book' takes dict.* sends Trip"):
        svc.check()


def test_a_command_nobody_handles_is_named() -> None:
    with pytest.raises(ContractError) as err:
        check_system([flight.service, hotel.service, trips.service])  # no car service
    message = str(err.value)
    assert "'car.rent' is handled by no service" in message
    assert "'car.cancel' is handled by no service" in message
    assert "flight" not in message


def test_a_command_handled_twice_is_named() -> None:
    twin = Service("flight-twin", sagas=[TRIP])

    @twin.handles("flight.cancel")
    async def cancel(ctx: MessageContext, ref: Any) -> None: ...

    with pytest.raises(ContractError, match=r"'flight\.cancel' is handled by flight and flight-"):
        check_system([flight.service, twin, hotel.service, car.service, trips.service])


def _context(svc: Service, command: str) -> tuple[MessageContext, Any]:
    """The context and parsed payload the runtime would give the handler of ``command``."""
    (route,) = [
        r for r in svc.router(Mode.ORCHESTRATION, "").routes.values() if r.message_type == command
    ]
    payload = {
        "saga_id": "s-1",
        "traveller": "Ada",
        "origin": "LHR",
        "destination": "LIS",
        "depart": "2030-06-01",
        "nights": 3,
    }
    envelope = new_message(command, payload, key="s-1")
    ctx = MessageContext(envelope, tx=None, group="g", replies=route.replies)  # type: ignore[arg-type]
    return ctx, route.parse(envelope)


async def test_reply_of_an_undeclared_type_raises() -> None:
    svc = Service("flight", sagas=[TRIP])

    @svc.handles("flight.book", replies=("flight.booked",))
    async def book(ctx: MessageContext, trip: Trip) -> None:
        await ctx.reply("flight.unavailable", {"reason": "full"})

    ctx, trip = _context(svc, "flight.book")
    with pytest.raises(MessageError, match=r"'flight\.unavailable' is not a reply to it"):
        await book(ctx, trip)
    assert ctx.outgoing == []


async def test_reply_of_another_steps_type_raises_without_declared_replies() -> None:
    """With no ``replies=``, a handler may send what the saga expects of its command."""
    svc = Service("flight", sagas=[TRIP])

    @svc.handles("flight.book")
    async def book(ctx: MessageContext, trip: Trip) -> None:
        await ctx.reply("flight.cancelled")

    ctx, trip = _context(svc, "flight.book")
    assert isinstance(trip, Trip)
    with pytest.raises(MessageError, match=r"expected flight\.booked, flight\.unavailable"):
        await book(ctx, trip)
    await ctx.reply("flight.booked", {"flight_ref": "FL-1"})
    assert [m.type for m in ctx.outgoing] == ["flight.booked"]


def test_a_saga_orchestrated_by_two_services_is_named() -> None:
    twin = Service("trips-twin", orchestrates=[TRIP])
    with pytest.raises(ContractError, match=r"trip: orchestrated by trips and trips-twin"):
        check_system([flight.service, hotel.service, car.service, trips.service, twin])


def test_the_frameworks_migration_components_are_reserved() -> None:
    with pytest.raises(ConfigError, match="'orchestrator' is the framework's"):
        Service("orchestrator", migrations=MigrationSet("orchestrator", ()))


def test_sagakit_up_names_a_missing_handler_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sagakit.cli import main

    code = main(["up", "examples.trip.flight:service", "examples.trip.trips:service"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and "'hotel.book' is handled by no service" in err, err


def test_in_choreography_each_saga_needs_its_tracker() -> None:
    check_system([flight.service, hotel.service, car.service, trips.service], Mode.CHOREOGRAPHY)
    with pytest.raises(ContractError, match="trip: no service tracks it"):
        check_system([flight.service, hotel.service, car.service], Mode.CHOREOGRAPHY)


def test_in_choreography_a_handler_outside_its_saga_is_named() -> None:
    stray = Service("hotel")  # handles the hotel's commands without sagas=[TRIP]

    @stray.handles("hotel.book")
    async def book(ctx: MessageContext, trip: Any) -> None: ...

    @stray.handles("hotel.cancel")
    async def cancel(ctx: MessageContext, ref: Any) -> None: ...

    with pytest.raises(ContractError, match=r"hotel handles 'hotel\.book' of trip but does not"):
        check_system([flight.service, stray, car.service, trips.service], Mode.CHOREOGRAPHY)


def _two_sagas_sharing(done_a: str, done_b: str) -> Service:
    from sagakit import Action, SagaDefinition, Step

    def saga(name: str, done: str) -> SagaDefinition:
        return SagaDefinition(
            name, steps=(Step("first"), Step("act", Action("x.do", done), failure=("x.no",)))
        )

    svc = Service("x", sagas=[saga("a", done_a), saga("b", done_b)])

    @svc.handles("x.do")
    async def do(ctx: MessageContext, cmd: Any) -> None: ...

    return svc


def test_a_command_two_sagas_send_alike_serves_both() -> None:
    svc = _two_sagas_sharing("x.done", "x.done")
    svc.check()
    (route,) = [
        r for r in svc.router(Mode.ORCHESTRATION, "").routes.values() if r.message_type == "x.do"
    ]
    assert route.replies == ("x.done", "x.no")


def test_a_command_two_sagas_expect_different_replies_to_is_named() -> None:
    """No reply could mean success to both: the handler would fail one saga every time."""
    svc = _two_sagas_sharing("x.done", "x.ok")
    with pytest.raises(ContractError) as err:
        svc.check()
    assert "a (x.done)" in str(err.value) and "b (x.ok)" in str(err.value)


def test_a_type_is_routed_by_its_topic_too() -> None:
    """In choreography two sagas' topics may carry the same reply type; each topic's record
    goes to that topic's handler, and a type on a topic with no handler for it is refused."""
    from sagakit import Router

    async def on_a(ctx: MessageContext, body: Any) -> None: ...
    async def on_b(ctx: MessageContext, body: Any) -> None: ...

    r = Router("ns")
    r.add("x.done", on_a, topic="ns.saga.a")
    r.add("x.done", on_b, topic="ns.saga.b")
    with pytest.raises(ValueError, match="already registered"):
        r.add("x.done", on_b, topic="ns.saga.b")
    assert r.types == ("x.done",) and r.topics == ("ns.saga.a", "ns.saga.b")
    for topic, handler in (("ns.saga.a", on_a), ("ns.saga.b", on_b)):
        assert r.route(new_message("x.done", {}, key="k", topic=topic)).handler is handler
    with pytest.raises(MessageError, match=r"on ns\.x\.done"):
        r.route(new_message("x.done", {}, key="k", topic="ns.x.done"))


def test_a_saga_that_starts_with_a_local_step_is_not_started_over_http() -> None:
    """The shop's order sagas start with the order service's own transaction: an
    orchestrator's POST /sagas/{name}/start would run one on an order that does not exist."""
    from examples.shop.saga import FLOWS

    from sagakit.orchestration.api import routes

    paths = {getattr(r, "path", "") for r in routes([*FLOWS, TRIP]).routes}
    assert "/sagas/trip/start" in paths
    assert not {"/sagas/order/start", "/sagas/order_pay_first/start"} & paths
