"""Starting a saga from application code, inside the caller's own transaction."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from sagakit import tracing
from sagakit.config import Settings
from sagakit.db import Connection
from sagakit.messaging import derived_id, new_message, outbox
from sagakit.saga import SagaDefinition
from sagakit.topics import topic_name

if TYPE_CHECKING:
    from sagakit.orchestration import Orchestrator


def saga_id_for(definition: SagaDefinition, key: str) -> str:
    """The saga id an idempotency key stands for: the same key, the same saga."""
    return str(derived_id("saga", definition.name, key))


def start_data(definition: SagaDefinition, data: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as the saga will hold it, validated against ``definition.data`` (raises
    pydantic's ``ValidationError``, a ``ValueError``, when it does not fit).

    The saga holds the data as the model reads it (defaults filled in, values in their JSON
    form), so that the same start written two ways is the same saga; the form is checked
    to read back, as every participant will read it."""
    if isinstance(data, BaseModel):
        body = data.model_dump(mode="json", by_alias=True, round_trip=True)
    else:
        body = dict(data)
    model = definition.data
    if model is not None:
        body = model.model_validate(body).model_dump(mode="json", by_alias=True, round_trip=True)
        model.model_validate(body)
    return body


async def start_saga(
    tx: Connection,
    definition: SagaDefinition,
    data: BaseModel | Mapping[str, Any],
    *,
    saga_id: str | None = None,
    key: str | None = None,
    namespace: str | None = None,
    choreography: bool | None = None,
    keep_copy: bool = False,
    orchestrator: Orchestrator | None = None,
) -> str:
    """Start a saga of ``definition`` if and only if ``tx`` commits, and return its id.

    ``tx`` is a connection of a service (its database has the framework's outbox) inside a
    transaction the caller opened and will commit; the start message is written to the
    outbox there, and the orchestrator (or, in choreography, the first participant) picks it
    up once it is published. Nothing is committed or retried here.

    The saga id is ``saga_id`` if given, else derived from the idempotency ``key`` (the same
    key always names the same saga, and a second start with it is ignored by the
    orchestrator, whatever its data), else new.

    ``namespace`` prefixes the start message's topic; by default the one the process is
    configured with (``SAGAKIT_NAMESPACE``), as the service's own topics are. In
    choreography (by default: ``SAGAKIT_MODE``) the start goes to the definition's saga
    topic, where every service taking part follows it (``keep_copy``: the caller's database
    keeps copies of these sagas, and records this one's now).

    ``orchestrator``: one that hosts ``definition`` on ``tx``'s database (the caller's
    process orchestrates it): the saga begins in ``tx`` itself, its state and first commands,
    on the newest version hosted, without a start message to publish and read back (the
    same start again changes nothing; other data for a started id is noted and ignored,
    as the orchestrator does with a start message).
    """
    from sagakit.choreography import Choreographer

    if orchestrator is not None:  # new sagas start on the newest version, as messages do
        definition = orchestrator.latest[definition.name]
    body = start_data(definition, data)
    if namespace is None:
        namespace = Settings.from_env().namespace
    if choreography is None:
        choreography = os.environ.get("SAGAKIT_MODE") == "choreography"
    if saga_id is None:
        saga_id = saga_id_for(definition, key) if key is not None else str(uuid.uuid4())
    with tracing.span(
        f"start {definition.name}",
        kind=SpanKind.PRODUCER,
        attributes={"sagakit.saga_id": saga_id, "sagakit.definition": definition.name},
    ):  # the saga's trace: every message it causes carries it on
        if choreography:
            await Choreographer([definition], {}, namespace=namespace).begin(
                tx, definition, saga_id, body, record=keep_copy
            )
            return saga_id
        if orchestrator is not None:
            await orchestrator.start(tx, definition, saga_id, body)
            return saga_id
        message = new_message(
            definition.starts_on,
            body,
            key=saga_id,
            topic=topic_name(namespace, definition.starts_on),
            message_id=derived_id(saga_id, definition.starts_on),
        )
        await outbox.add(tx, message)
    return saga_id
