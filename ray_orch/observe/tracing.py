"""OpenTelemetry traces: the SDK set up from the standard ``OTEL_*`` environment.

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set in
the driver's environment, and off otherwise at no cost. ``PHOENIX_PROJECT_NAME`` names
the project (Phoenix / OpenInference) the spans are filed under. The driver sends its ``OTEL_*``
settings with the run, so the Supervisor and every member export to the same collector
with the same service name, whatever their own environment: ``configure(settings)`` in
each process. Spans are named and shaped in ``ray_orch.core.trace``.

Example:
    >>> settings_from({"OTEL_SERVICE_NAME": "svc"})  # no endpoint: tracing stays off
    {}
    >>> sorted(settings_from({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    ...                       "HOME": "/root"}))
    ['OTEL_EXPORTER_OTLP_ENDPOINT']
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ray_orch.core import trace

__all__ = ["configure", "flush", "remote_scope", "settings_from"]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
PROJECT_ENV = "PHOENIX_PROJECT_NAME"
"""The project a trace viewer files the spans under (the ``openinference.project.name``
resource attribute, which Arize Phoenix reads); ``OTEL_RESOURCE_ATTRIBUTES`` works too."""
_lock = threading.Lock()
_installed: dict[str, str] | None = None
_switch: Any = None


def settings_from(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``OTEL_*`` settings a run carries: all of them when an OTLP endpoint is set,
    none otherwise (tracing off)."""
    if not any(environ.get(name) for name in _ENDPOINTS) or \
            environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return {}
    return {k: v for k, v in environ.items()
            if k.startswith("OTEL_") or k == PROJECT_ENV}


def configure(settings: Mapping[str, str]) -> bool:
    """Record spans in this process and export them as ``settings`` say.

    Idempotent; new settings (another collector) replace the exporter. Returns whether
    tracing is on.
    """
    global _installed
    settings = dict(settings)
    with _lock:
        if settings == _installed:
            return trace.enabled()
        for stale in set(_installed or {}) - set(settings):
            os.environ.pop(stale, None)  # settings of an earlier run's driver
        if not settings:
            trace.set_enabled(False)
            _installed = settings
            return False
        os.environ.update(settings)  # the SDK and its exporter read their environment
        _switch_to(_processor())
        _installed = settings
        trace.set_enabled(True, settings)
        return True


def flush(timeout_s: float = 5.0) -> None:
    """Export every finished span now (a run ended; a process is about to exit)."""
    if _switch is not None:
        _switch.force_flush(int(timeout_s * 1000))


@contextlib.contextmanager
def remote_scope(settings: Mapping[str, str], carrier: Mapping[str, str]) -> Iterator[None]:
    """Run a remote tool call traced: tracing set up in this Ray worker as the caller's,
    under the caller's ``execute_tool`` span, its spans exported before it returns."""
    on = configure(settings) if settings else trace.enabled()
    with trace.attached(carrier):
        try:
            yield
        finally:
            if on:
                flush()


def _processor() -> Any:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                              os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return BatchSpanProcessor(OTLPSpanExporter())


def _switch_to(processor: Any) -> None:
    # One provider a process (OpenTelemetry allows no other); its one processor forwards
    # to the exporter of the current settings.
    global _switch
    if _switch is None:
        from opentelemetry import trace as otel_trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider

        _switch = _switch_processor()
        attributes: dict[str, Any] = {"process.pid": os.getpid()}
        if os.environ.get(PROJECT_ENV):
            attributes["openinference.project.name"] = os.environ[PROJECT_ENV]
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(_switch)
        otel_trace.set_tracer_provider(provider)
    _switch.replace(processor)


def _switch_processor() -> Any:
    """A span processor that forwards to one replaceable processor."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Switch(SpanProcessor):
        def __init__(self) -> None:
            self.current: Any = None

        def replace(self, processor: Any) -> None:
            old, self.current = self.current, processor
            if old is not None:
                old.shutdown()

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            if self.current is not None:
                self.current.on_start(span, parent_context=parent_context)

        def on_end(self, span: Any) -> None:
            if self.current is not None:
                self.current.on_end(span)

        def shutdown(self) -> None:
            if self.current is not None:
                self.current.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(self.current.force_flush(timeout_millis)) if self.current else True

    return Switch()
