"""Spans in OpenTelemetry's GenAI shape, through the OpenTelemetry API only.

Every layer names its spans here (``invoke_workflow``, ``invoke_agent``, ``chat``,
``execute_tool``); nothing is recorded until a process turns tracing on
(``ray_orch.observe.tracing.configure``, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set), so
an untraced run pays one flag test per would-be span. Context crosses processes as a
W3C ``traceparent`` carrier (a small dict), so a Supervisor's and a member's spans hang
under the driver's.

Example:
    >>> with span("chat stub", {"gen_ai.operation.name": "chat"}) as s:
    ...     s is None  # tracing is off in this process
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["attached", "carrier", "content_recorded", "enabled", "record_error", "set_enabled",
           "settings", "span"]

_enabled = False
_settings: dict[str, str] = {}


def enabled() -> bool:
    """Whether this process records spans."""
    return _enabled


def set_enabled(on: bool, settings: Mapping[str, str] | None = None) -> None:
    """Turn span recording on or off in this process (``observe.tracing`` does it, with
    the ``OTEL_*`` settings it exports with)."""
    global _enabled, _settings
    _enabled = on
    _settings = dict(settings or {}) if on else {}


def settings() -> dict[str, str]:
    """The ``OTEL_*`` settings this process exports with ({} when off): what a process
    this one asks to work (a remote tool, an MCP session) needs to export alike."""
    return dict(_settings)


def content_recorded() -> bool:
    """Whether prompts and outputs go into spans (opt-in:
    ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``)."""
    value = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    return value.strip().lower() in ("1", "true", "yes")


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, *,
         kind: str = "internal") -> Iterator[Any]:
    """A span named ``name`` under the current context, or None when tracing is off.

    ``kind``: ``"internal"`` or ``"client"`` (a call to another service: a model).
    An exception leaving the block marks the span as an error with ``error.type``.
    """
    if not _enabled:
        yield None
        return
    from opentelemetry import trace

    tracer = trace.get_tracer("ray_orch")
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    span_kind = trace.SpanKind.CLIENT if kind == "client" else trace.SpanKind.INTERNAL
    with tracer.start_as_current_span(name, attributes=attrs, kind=span_kind,
                                      record_exception=False,
                                      set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as exc:
            record_error(current, exc)
            raise


def record_error(current: Any, exc: BaseException | str, *,
                 error_type: str | None = None) -> None:
    """Mark ``current`` (a span, or None) as failed by ``exc`` (an exception, or a
    message with its ``error_type``: the type name of the exception that caused it)."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    kind = error_type or (type(exc).__name__ if isinstance(exc, BaseException) else "Error")
    current.set_attribute("error.type", kind)
    current.set_status(Status(StatusCode.ERROR, str(exc)[:200]))


def carrier() -> dict[str, str]:
    """The current trace context as a W3C ``traceparent`` carrier ({} when off)."""
    if not _enabled:
        return {}
    from opentelemetry.propagate import inject

    found: dict[str, str] = {}
    inject(found)
    return found


@contextlib.contextmanager
def attached(context: Mapping[str, str] | None) -> Iterator[None]:
    """Run the block under a trace context received from another process."""
    if not _enabled or not context:
        yield
        return
    from opentelemetry import context as otel_context
    from opentelemetry.propagate import extract

    token = otel_context.attach(extract(dict(context)))
    try:
        yield
    finally:
        otel_context.detach(token)
