"""Choreography: the sagas of the same definitions, run by the services taking part, with
no orchestrator (see :mod:`.choreographer`)."""

from sagakit.choreography.choreographer import (
    Choreographer,
    Participation,
    event_types,
    saga_topic,
)

__all__ = ["Choreographer", "Participation", "event_types", "saga_topic"]
