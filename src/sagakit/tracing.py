"""Traces with OpenTelemetry. Every record carries the W3C trace context (``traceparent``)
in its headers, so one saga is one trace across every service: its start, each handler
(with the commands, replies and compensations it writes), each relay publish.

Only the OpenTelemetry API is used here: with no SDK configured it is a no-op, and the
context still flows through the headers. ``configure()`` (run by ``sagakit run``) sets the
SDK up from the standard ``OTEL_*`` variables when ``OTEL_TRACES_EXPORTER`` names an
exporter (``otlp``, ``console``, ...) and ``opentelemetry-sdk`` is installed
(``pip install 'sagakit[otel]'``), exactly as ``opentelemetry-instrument`` would.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

TRACER = trace.get_tracer("sagakit")
_W3C = TraceContextTextMapPropagator()
FIELDS = frozenset(_W3C.fields)
"""The headers that carry the trace context."""

exporting = False
"""Whether an SDK exports spans (publish spans are only made then)."""


def configure() -> None:
    """The SDK from the ``OTEL_*`` variables, if ``OTEL_TRACES_EXPORTER`` asks for one."""
    global exporting
    wanted = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if wanted in ("", "none"):
        return
    for signal in ("OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"):  # traces only here
        os.environ.setdefault(signal, "none")
    try:
        from opentelemetry.sdk._configuration import _OTelSDKConfigurator
    except ImportError:
        log.warning("OTEL_TRACES_EXPORTER=%s, but opentelemetry-sdk is not installed", wanted)
        return
    _OTelSDKConfigurator().configure()  # type: ignore[no-untyped-call]
    exporting = True


def flush() -> None:
    """Export what is buffered (at shutdown)."""
    force_flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if force_flush is not None:
        force_flush()


def inject(headers: Mapping[str, str]) -> dict[str, str]:
    """``headers`` carrying the current span's context (when there is one) instead of the
    context they came with."""
    out = dict(headers)
    if trace.get_current_span().get_span_context().is_valid:
        for name in FIELDS:
            out.pop(name, None)
        _W3C.inject(out)
    return out


def traceparent() -> str | None:
    """The current span's context as a ``traceparent`` value (None outside a span)."""
    return inject({}).get("traceparent")


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: Mapping[str, str] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """A span, current within the block; a child of the context in ``parent`` (headers)
    when they carry one."""
    ctx = _W3C.extract(dict(parent)) if parent else None
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with TRACER.start_as_current_span(name, context=ctx, kind=kind, attributes=attrs):
        yield


def start_publish(topic: str, headers: Mapping[str, str]) -> tuple[Span, dict[str, str]]:
    """A publish span (a child of the context ``headers`` carry; end it once sent) and the
    headers to send instead, carrying it."""
    parent = _W3C.extract(dict(headers))
    started = TRACER.start_span(f"publish {topic}", context=parent, kind=SpanKind.PRODUCER)
    carried = {k: v for k, v in headers.items() if k not in FIELDS}
    _W3C.inject(carried, context=trace.set_span_in_context(started))
    return started, carried
