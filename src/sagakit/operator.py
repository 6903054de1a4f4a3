"""What an operator can do to a saga, the same from ``sagakit sagas`` and the console. Each
action is a decision of the saga's own engine, taken in the mode the service keeping the
sagas recorded (orchestrated: the orchestrator applies it; choreographed: it goes out as an
event every copy applies), and its log line says who did it and why."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sagakit.db import Connection
from sagakit.errors import SagakitError
from sagakit.orchestration import store
from sagakit.runtime.service import Mode, Service


@dataclass(frozen=True)
class Action:
    name: str
    help: str
    wanted: str
    """The state the saga must be in, for the refusal's message."""
    done: str
    """What happened, once it did."""


ACTIONS = {
    a.name: a
    for a in (
        Action(
            "retry-step",
            "send the commands the saga waits on again now (an attempt, as a timer's would be)",
            "running or compensating, and not parked",
            "the commands it waits on are sent again",
        ),
        Action(
            "cancel",
            "compensate a running saga from where it is (refused past its pivot)",
            "running, before its pivot, and not parked",
            "cancelled: it compensates from where it was",
        ),
        Action(
            "resume",
            "take a parked saga back (re-sends its step)",
            "parked",
            "resumed, the commands it waits on are sent again",
        ),
        Action(
            "retry",
            "send the failed compensations of a COMPENSATION_FAILED saga again",
            "in COMPENSATION_FAILED",
            "its failed compensations are sent again, each with a new budget",
        ),
        Action(
            "resolve",
            "close a COMPENSATION_FAILED saga as FAILED, saying what was done by hand",
            "in COMPENSATION_FAILED",
            "resolved, now FAILED (the note is in its log)",
        ),
    )
}


class Refused(SagakitError):
    """The saga is not in a state the action is for; nothing was done."""


async def act(
    tx: Connection,
    service: Service,
    mode: Mode,
    saga_id: str,
    action: str,
    *,
    by: str,
    note: str,
    namespace: str = "",
) -> str:
    """Carry out ``action`` on saga ``saga_id`` in ``tx`` (it takes effect when ``tx``
    commits); what was done. Raises :class:`Refused` saying why when it does not apply."""
    from sagakit.choreography import Choreographer
    from sagakit.orchestration import Orchestrator

    what = ACTIONS.get(action)
    if what is None:
        raise Refused(f"no action {action!r}; one of {', '.join(ACTIONS)}")
    if service.choreographs(mode):
        choreo = Choreographer(service.followed, {}, namespace=namespace)
        done = await choreo.operate(tx, saga_id, action, by=by, note=note)
    else:
        o = Orchestrator(service.orchestrates, namespace=namespace)
        match action:
            case "retry-step":
                done = await o.retry_now(tx, saga_id, by=by, note=note)
            case "cancel":
                done = await o.cancel(tx, saga_id, note, by=by)
            case "resume":
                done = await o.resume(tx, saga_id, by=by, note=note)
            case "retry":
                done = await o.retry(tx, saga_id, by=by, note=note)
            case _:
                done = await o.resolve(tx, saga_id, note, by=by)
    if not done:
        state, parked_for = await store.load_parked(tx, saga_id)
        if state is None:
            raise Refused(f"no saga {saga_id}")
        parked = " (parked)" if parked_for else ""
        raise Refused(
            f"saga {saga_id} is {state.status}{parked}: {action} is for a saga {what.wanted}"
        )
    return what.done


def local_operator() -> str:
    """Who acts from this machine: ``SAGAKIT_OPERATOR``, else the login name."""
    import getpass

    try:
        return os.environ.get("SAGAKIT_OPERATOR") or getpass.getuser()
    except (OSError, KeyError):
        return "unknown operator"
