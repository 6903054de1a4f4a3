"""Log records that say which message they are about.

The consumer runtime sets the message being handled in a context variable; the filter stamps
``message_id``, ``message_type`` and ``saga_id`` on every log record made meanwhile, however
deep in a handler it was made.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

from sagakit.messaging.envelope import Envelope

_current: ContextVar[Envelope | None] = ContextVar("sagakit_message", default=None)

FORMAT = (
    "%(asctime)s %(levelname)s %(name)s [saga=%(saga_id)s msg=%(message_type)s"
    " %(message_id)s] %(message)s"
)


@contextlib.contextmanager
def handling(envelope: Envelope) -> Iterator[None]:
    token = _current.set(envelope)
    try:
        yield
    finally:
        _current.reset(token)


class MessageContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        env = _current.get()
        record.saga_id = (env.correlation_id or env.key) if env else "-"
        record.message_id = str(env.message_id) if env else "-"
        record.message_type = env.type if env else "-"
        return True


def configure(level: str, prefix: str = "") -> None:
    """Log to stderr with the message context on every line."""
    handler = logging.StreamHandler()
    handler.addFilter(MessageContextFilter())
    handler.setFormatter(logging.Formatter(prefix + FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
