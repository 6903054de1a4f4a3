"""Prometheus metrics of a service process, with ``prometheus-client``; ``GET /metrics``
serves them in the text format (HELP and TYPE lines, labelled by service).

Three kinds:

- **Observed as they happen**: handler latency per message type; sagas started and ended
  (by definition and outcome), their duration, and the commands they sent (compensations
  included). Sagas are counted by the service that orchestrates them (in choreography: that
  tracks them), once per saga, not by every copy.
- **Read from the runtime at each scrape**: the consumer's, the relay's and the
  supervisor's counters (messages handled, duplicate, retried, dead-lettered; published).
- **Read from the database at each scrape**: the outbox's backlog and the age of its oldest
  row, parked and failed sagas, a service's own ``gauges=``.

Add your own metrics to :data:`REGISTRY` and they are served with these.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from sagakit.runtime.host import Runtime
    from sagakit.saga import SagaDefinition, SagaState

Lag = Mapping[tuple[str, int], int]
"""Records after a consumer's position, per (topic, partition)."""

REGISTRY = CollectorRegistry(auto_describe=True)
"""sagakit's metrics, and yours if you register them here."""

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SLOW = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)

HANDLER_SECONDS = Histogram(
    "sagakit_handler_seconds",
    "Time a message's handler took (inside its transaction), by message type.",
    ["service", "type"],
    buckets=_FAST,
    registry=REGISTRY,
)
SAGAS_STARTED = Counter(
    "sagakit_sagas_started",
    "Sagas started, by definition.",
    ["service", "definition"],
    registry=REGISTRY,
)
SAGAS_ENDED = Counter(
    "sagakit_sagas_ended",
    "Sagas that ended, by definition and outcome (COMPLETED or FAILED).",
    ["service", "definition", "outcome"],
    registry=REGISTRY,
)
SAGA_SECONDS = Histogram(
    "sagakit_saga_duration_seconds",
    "From a saga's start to its end, by definition and outcome.",
    ["service", "definition", "outcome"],
    buckets=_SLOW,
    registry=REGISTRY,
)
SAGA_COMMANDS = Counter(
    "sagakit_saga_commands",
    "Commands sagas sent (compensations and re-sends included), by definition and command.",
    ["service", "definition", "command"],
    registry=REGISTRY,
)

STEP_SECONDS = Histogram(
    "sagakit_step_seconds",
    "From a step's command (or compensation) being sent to its reply, by definition, step"
    " and what the reply meant (done, failed, undone, undo_failed).",
    ["service", "definition", "step", "outcome"],
    buckets=_FAST,
    registry=REGISTRY,
)

_service = "-"
_counted: set[str] = set()


def serving(service: str, sagas: Iterable[str] = ()) -> None:
    """This process runs ``service``, and counts the sagas of the definitions named in
    ``sagas`` (it orchestrates, or in choreography tracks, them)."""
    global _service
    _service = service
    _counted.update(sagas)


def handled(type: str, seconds: float) -> None:
    HANDLER_SECONDS.labels(_service, type).observe(seconds)


def saga_saved(state: SagaState, commands: Sequence[str], *, started: bool) -> None:
    """A saga's new state was stored, with the commands it sent (called by the store). A
    transaction rolled back after that (a failed commit, rare) counts it again when the
    event is handled again: the counts are at least the truth, seldom above it."""
    d = state.definition
    if d not in _counted:
        return
    if started:
        SAGAS_STARTED.labels(_service, d).inc()
    for c in commands:
        SAGA_COMMANDS.labels(_service, d, c).inc()
    if state.status.terminal:
        outcome = state.status.value
        SAGAS_ENDED.labels(_service, d, outcome).inc()
        SAGA_SECONDS.labels(_service, d, outcome).observe(max(0.0, time.time() - state.started_at))


def step_answered(definition: SagaDefinition, before: SagaState, reply: str, now: float) -> None:
    """A reply changed a saga: how long its step's command waited for it."""
    if definition.name not in _counted:
        return
    found = definition.reply_of(reply)
    member = before.members.get(found[0].name) if found else None
    if found is None or member is None or member.sent_at is None or not member.progress.in_flight:
        return
    STEP_SECONDS.labels(_service, definition.name, found[0].name, found[2]).observe(
        max(0.0, now - member.sent_at)
    )


class Runtimes(Collector):
    """The counters of each service runtime in this process (one, but for tests), and the
    values read from its database for the scrape in progress."""

    def __init__(self) -> None:
        self.running: dict[int, tuple[Runtime, Mapping[str, float], Lag]] = {}

    def add(self, rt: Runtime) -> None:
        self.running[id(rt)] = (rt, {}, {})

    def remove(self, rt: Runtime) -> None:
        self.running.pop(id(rt), None)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        lags = GaugeMetricFamily(
            "sagakit_consumer_lag",
            "Records on a partition after this consumer's position, read at this scrape.",
            labels=["service", "topic", "partition"],
        )
        for rt, read, lag in self.running.values():
            service = rt.service.name
            for name, (text, value) in _counters(rt).items():
                family = families.setdefault(
                    name, CounterMetricFamily(name, text, labels=["service"])
                )
                family.add_metric([service], value)
            for name, reading in read.items():
                text = f"{name.removeprefix('sagakit_')}, read at this scrape."
                gauge = gauges.setdefault(name, GaugeMetricFamily(name, text, labels=["service"]))
                gauge.add_metric([service], reading)
            for (topic, partition), n in sorted(lag.items()):
                lags.add_metric([service, topic, str(partition)], n)
        yield from families.values()
        yield from gauges.values()
        yield lags


COUNTERS = {
    "sagakit_messages_handled": "Messages handled.",
    "sagakit_messages_duplicate": "Messages dropped as already handled.",
    "sagakit_messages_retried": "Failed attempts that were retried.",
    "sagakit_messages_dead_lettered": "Messages dead-lettered.",
    "sagakit_messages_skipped": "Records neither handled nor parked.",
    "sagakit_outbox_published": "Outbox rows published.",
    "sagakit_outbox_send_failures": "Failed sends of outbox rows.",
    "sagakit_task_restarts": "Background tasks restarted after a failure.",
}
"""The runtime's own counters, read at each scrape."""


def _counters(rt: Runtime) -> dict[str, tuple[str, float]]:
    s, relay = rt.consumer.stats, rt.relay.stats
    values = (
        s.handled,
        s.duplicates,
        s.retries,
        s.dead_lettered,
        s.skipped,
        relay.published,
        relay.failed_sends,
        sum(rt.supervisor.restarts.values()),
    )
    return {name: (COUNTERS[name], v) for name, v in zip(COUNTERS, values, strict=True)}


RUNTIMES = Runtimes()
REGISTRY.register(RUNTIMES)


def exposition(rt: Runtime, read: Mapping[str, float], lag: Lag) -> bytes:
    """The text format, with ``read`` as ``rt``'s values read from its database and
    ``lag`` its consumer's, both for this scrape."""
    RUNTIMES.running[id(rt)] = (rt, read, lag)
    return generate_latest(REGISTRY)
