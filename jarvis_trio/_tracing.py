"""OpenTelemetry traces of messages, through the API only (the ``otel`` extra).

What a user gets, once they configure an OpenTelemetry SDK in their process: a *client* span
for every ``request`` / ``notify`` / ``broadcast`` / ``ask_async`` / ``mailbox.send`` and a
*server* span for the handler that serves it, the second a child of the first whichever route
the message took. The W3C ``traceparent`` travels in the message itself -- the envelope on
ZeroMQ, the stream entry in Redis, the message object on the same node -- never in the user's
``context`` dict.

Cost when nothing is configured: one function call and a clock read per message, whether the
API is installed or not (jarvis_trio does not import it; the provider is asked at most once a
second, see :data:`RECHECK_SECONDS`), and no span object is ever made. Once a
real provider is set (OpenTelemetry allows that once per process) the answer is remembered.
A node without an SDK does not forward the traceparent it received.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "OTEL_TRACE",
    "active",
    "client_span",
    "format_traceparent",
    "parse_traceparent",
    "server_span",
]

_SCOPE = "jarvis_trio"
RECHECK_SECONDS = 1.0
"""How long a "no SDK" answer is trusted: asking OpenTelemetry for the global provider reads
``os.environ`` and costs about a microsecond, too much for every message; so an SDK
configured while nodes run is noticed within a second."""
_configured = False
_tracer: Any = None
_trace: Any = None  # opentelemetry.trace, once an SDK is found
_otel_context: Any = None  # opentelemetry.context, likewise
_next_check = 0.0
_monotonic = time.monotonic
_modules = sys.modules
OTEL_TRACE = "opentelemetry.trace"
"""The module whoever configures an SDK has imported: while it is absent from
``sys.modules``, :func:`active` is False (hot paths test this first, saving the call)."""


def active() -> bool:
    """True once an OpenTelemetry SDK (any real tracer provider) is configured.

    jarvis_trio never imports OpenTelemetry itself to find out: whoever configured an SDK has
    imported ``opentelemetry.trace``, so while that module is not loaded the answer is no --
    and a process that merely has the API installed pays nothing for it (no import, no
    objects for the garbage collector to walk).
    """
    global _configured, _tracer, _trace, _otel_context, _next_check
    if _configured:
        return True
    if OTEL_TRACE not in _modules:
        return False  # one dict look-up, cheaper than the clock read below
    now = _monotonic()
    if now < _next_check:
        return False
    _next_check = now + RECHECK_SECONDS
    trace = _modules.get(OTEL_TRACE)
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    from opentelemetry import context

    _trace, _otel_context = trace, context
    _tracer = provider.get_tracer(_SCOPE)
    _configured = True
    return True


def format_traceparent(span: Any) -> str | None:
    """The W3C ``traceparent`` of ``span`` (``None`` for an invalid span context)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: object) -> Any:
    """The remote span context a ``traceparent`` names, or ``None`` for anything malformed
    (it came from the network: it is checked, never trusted) or without the OpenTelemetry
    API."""
    if not isinstance(value, str) or len(value) != 55:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    version, trace_id, span_id, flags = value.split("-") if value.count("-") == 3 else ("",) * 4
    if version != "00" or len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        trace_int, span_int, flags_int = int(trace_id, 16), int(span_id, 16), int(flags, 16)
    except ValueError:
        return None
    if trace_int == 0 or span_int == 0:
        return None
    return trace.SpanContext(
        trace_int, span_int, is_remote=True, trace_flags=trace.TraceFlags(flags_int & 1)
    )


@contextmanager
def client_span(operation: str, target: str, node: str, **attributes: Any) -> Iterator[str | None]:
    """A client span around sending one message; yields the ``traceparent`` to carry.

    Call only when :func:`active`; the span is a child of the caller's current span (a
    handler's server span, for a message sent while serving another).
    """
    kind = _trace.SpanKind.PRODUCER if operation != "request" else _trace.SpanKind.CLIENT
    with _tracer.start_as_current_span(
        f"{operation} {target}",
        kind=kind,
        attributes={
            "messaging.system": "jarvis_trio",
            "messaging.operation": operation,
            "messaging.destination.name": target,
            "jarvis.node": node,
            **attributes,
        },
    ) as span:
        yield format_traceparent(span)


@contextmanager
def server_span(
    operation: str, traceparent: str | None, agent_id: str, node: str, **attributes: Any
) -> Iterator[None]:
    """A server span around a handler, the child of the client span that sent the message
    (a new trace when the message carried no valid ``traceparent``)."""
    parent = parse_traceparent(traceparent)
    ctx = (
        _trace.set_span_in_context(_trace.NonRecordingSpan(parent))
        if parent is not None
        else _otel_context.Context()
    )
    kind = _trace.SpanKind.SERVER if operation == "request" else _trace.SpanKind.CONSUMER
    with _tracer.start_as_current_span(
        f"handle {operation}",
        context=ctx,
        kind=kind,
        attributes={
            "messaging.system": "jarvis_trio",
            "messaging.operation": operation,
            "jarvis.agent": agent_id,
            "jarvis.node": node,
            **attributes,
        },
    ):
        yield
