"""OpenTelemetry spans and metrics, when an SDK is configured; nothing at all otherwise.

tactical depends on ``opentelemetry-api`` only through the ``otel`` extra, and never imports
it: instrumentation looks in ``sys.modules`` for the API the application imported. Without
it, or with the API's default (proxy or no-op) providers, :func:`tracer` and :func:`meter`
return None and every hook is a dictionary lookup and a ``None`` test. With an SDK's
providers set globally (``trace.set_tracer_provider``, ``metrics.set_meter_provider``)
they return tactical's tracer and meter.

Spans that must stay open across the ``yield`` of a flow are :class:`Activation` objects:
entered, the span is the current one (so that what the flow's operations do, a commit's
outbox insert or a handler's own commit, sees it), and exited, it ends with the error that
ended the block, if any.

A timer worker's firing is traced by :func:`tactical.outbox._telemetry.firing_timers`.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

from tactical._tracing import current_trace

__all__ = [
    "NOOP",
    "Activation",
    "Inactive",
    "activation",
    "carrier_context",
    "command_span",
    "commit_span",
    "current_trace_context",
    "handler_span",
    "meter",
    "tracer",
]

_modules: Final = sys.modules
INSTRUMENTATION: Final = "tactical"
# The last provider seen and what was made of it: providers are set once per process.
_tracers: list[Any] = [None, None]
_UNKNOWN: Final[Any] = object()
_meters: list[Any] = [None, None]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tactical")
    except PackageNotFoundError:  # pragma: no cover  (a source tree without metadata)
        return "0"


def tracer() -> Any | None:
    """tactical's tracer of the configured SDK, or None when none is (the no-op case)."""
    api = _modules.get("opentelemetry.trace")
    if api is None:
        return None
    # The global the API's setter sets: None until an application sets a provider. Read
    # directly, because get_tracer_provider() looks at os.environ on every call while none
    # is set (3 us, most of the cost of a commit's hooks).
    provider: Any = getattr(api, "_TRACER_PROVIDER", _UNKNOWN)
    if provider is None:
        return None
    if provider is _UNKNOWN:  # an API version without that global
        provider = api.get_tracer_provider()
    if provider is _tracers[0]:
        return _tracers[1]
    found = (
        None
        if isinstance(provider, api.ProxyTracerProvider | api.NoOpTracerProvider)
        else provider.get_tracer(INSTRUMENTATION, _version())
    )
    _tracers[:] = [provider, found]
    return found


def meter() -> Any | None:
    """tactical's meter of the configured SDK, or None when none is (the no-op case)."""
    api = _modules.get("opentelemetry.metrics")
    if api is None:
        return None
    provider: Any = getattr(
        _modules.get("opentelemetry.metrics._internal"), "_METER_PROVIDER", _UNKNOWN
    )
    if provider is None:  # none set yet: see tracer()
        return None
    if provider is _UNKNOWN:
        provider = api.get_meter_provider()
    if provider is _meters[0]:
        return _meters[1]
    found = (
        None
        if isinstance(provider, api.NoOpMeterProvider)
        or type(provider).__name__ == "_ProxyMeterProvider"
        else provider.get_meter(INSTRUMENTATION, _version())
    )
    _meters[:] = [provider, found]
    return found


def current_trace_context() -> str | None:
    """The current span's W3C context as JSON (``traceparent``, ``tracestate``), or None.

    None without an SDK, or outside any valid span: what the outbox stores for a row.
    """
    if tracer() is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return json.dumps(carrier, separators=(",", ":")) if carrier else None


def carrier_context(traceparent: str | None, tracestate: str | None) -> Any | None:
    """The OpenTelemetry context that W3C headers carry, or None if they carry none."""
    if traceparent is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent}
    if tracestate is not None:
        carrier["tracestate"] = tracestate
    return TraceContextTextMapPropagator().extract(carrier)


def span_link(traceparent: str | None, tracestate: str | None) -> Any | None:
    """A link to the span W3C headers name, or None."""
    context = carrier_context(traceparent, tracestate)
    if context is None:
        return None
    from opentelemetry import trace

    span_context = trace.get_current_span(context).get_span_context()
    return trace.Link(span_context) if span_context.is_valid else None


class Activation:
    """A span made current from ``__enter__`` to ``__exit__`` (which may be across yields)."""

    __slots__ = ("_attributes", "_kind", "_links", "_name", "_parent", "_token", "_tracer", "span")

    def __init__(
        self,
        tracer: Any,
        name: str,
        attributes: Mapping[str, Any],
        *,
        kind: str = "INTERNAL",
        parent: Any | None = None,
        links: Sequence[Any] = (),
    ) -> None:
        self._tracer = tracer
        self._name = name
        self._attributes = attributes
        self._kind = kind
        self._parent = parent
        self._links = links
        self.span: Any = None

    def __enter__(self) -> Any:
        from opentelemetry import context, trace

        self.span = self._tracer.start_span(
            self._name,
            context=self._parent,
            kind=trace.SpanKind[self._kind],
            attributes=dict(self._attributes),
            links=list(self._links),
        )
        self._token = context.attach(trace.set_span_in_context(self.span))
        return self.span

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        from opentelemetry import context, trace

        try:
            if error is not None:
                self.span.record_exception(error)
                self.span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
        finally:
            self.span.end()
            context.detach(self._token)


class Inactive:
    """What :func:`activation` returns without an SDK: a block that does nothing."""

    __slots__ = ()
    span: Any = None

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        return None

    def finish(self, outcome: str) -> None:
        """Nothing to note the outcome on."""


NOOP: Final = Inactive()


def activation(
    tracer: Any | None,
    name: str,
    attributes: Mapping[str, Any],
    *,
    kind: str = "INTERNAL",
    parent: Any | None = None,
    links: Sequence[Any] = (),
) -> Activation | Inactive:
    """A block in which span ``name`` is current; :data:`NOOP` when ``tracer`` is None."""
    if tracer is None:
        return NOOP
    return Activation(tracer, name, attributes, kind=kind, parent=parent, links=links)


def commit_span(changes: Sequence[Any]) -> Activation | Inactive:
    """The span of a unit of work's commit of ``changes`` (its outbox rows point at it)."""
    found = tracer()
    if found is None:
        return NOOP
    events = [event for change in changes for event in change.events]
    attributes: dict[str, Any] = {
        "tactical.aggregate.count": len(changes),
        "tactical.event.count": len(events),
        "tactical.aggregate.types": sorted({c.aggregate_type.__qualname__ for c in changes}),
        "tactical.event.types": [type(event).__qualname__ for event in events],
        "tactical.event.ids": [str(event.event_id) for event in events],
    }
    if len(changes) == 1:
        attributes["tactical.aggregate.type"] = changes[0].aggregate_type.__qualname__
        attributes["tactical.aggregate.id"] = str(changes[0].aggregate.id)
    # Inside an event or command handler, the flow its events join (outside one, each event
    # starts a flow of its own: see its id).
    trace = current_trace()
    if trace is not None:
        attributes["tactical.correlation_id"] = str(trace.correlation_id)
        if trace.causation_id is not None:
            attributes["tactical.causation_id"] = str(trace.causation_id)
    return Activation(found, "commit", attributes)


def _handler_name(handler: Any) -> str:
    """A handler's qualified name (a ``functools.partial``'s function's), else its type's."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    return getattr(handler, "__qualname__", None) or type(handler).__qualname__


def handler_span(found: Any, event: Any, handler: Any, correlation_id: Any) -> Activation:
    """The span of one run of an in-process event handler (``found`` is :func:`tracer`'s)."""
    name = _handler_name(handler)
    return Activation(
        found,
        f"handle {type(event).__qualname__}",
        {
            "tactical.handler": name,
            "tactical.event.type": type(event).__qualname__,
            "tactical.event.id": str(event.event_id),
            "tactical.correlation_id": str(correlation_id),
        },
    )


def command_span(command: Any, handler: Any, correlation_id: Any) -> Activation | Inactive:
    """The span of a command bus's run of ``command``'s handler; :data:`NOOP` without a tracer.

    Current while the handler runs, so that its unit of work's commit is the span's child.
    """
    found = tracer()
    if found is None:
        return NOOP
    name = _handler_name(handler)
    return Activation(
        found,
        f"handle {type(command).__qualname__}",
        {
            "tactical.handler": name,
            "tactical.command.type": type(command).__qualname__,
            "tactical.command.id": str(command.command_id),
            "tactical.correlation_id": str(correlation_id),
        },
    )
