"""Correlation and causation ids: which flow an event belongs to, and which event caused it."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

__all__ = ["Trace", "current_trace", "handling", "recorded_traces", "trace_of"]


@dataclass(frozen=True, slots=True)
class Trace:
    """The tracing ids of an event: the flow it belongs to, and the event that caused it.

    Attributes:
        correlation_id: Shared by every event of one flow: the id of the flow's first event
            (an event recorded outside any event handler starts a flow of its own).
        causation_id: The id of the event whose handling recorded this one; None for an
            event recorded outside any event handler.

    .. versionadded:: 0.1.0
    """

    correlation_id: UUID
    causation_id: UUID | None = None


_current: ContextVar[Trace | None] = ContextVar("tactical_trace", default=None)
_recorded: ContextVar[Mapping[UUID, Trace]] = ContextVar("tactical_recorded_traces", default={})  # noqa: B039  (never mutated)


def current_trace() -> Trace | None:
    """The trace that events recorded right now get: set while an event handler runs.

    Returns:
        Inside a handler of event ``e``, ``Trace(e's correlation id, e.event_id)``; outside
        any handler, None.

    .. versionadded:: 0.1.0
    """
    return _current.get()


@contextmanager
def handling(correlation_id: UUID, event_id: UUID) -> Generator[Trace, None, None]:
    """Within the block, events recorded are caused by ``event_id`` in flow ``correlation_id``."""
    trace = Trace(correlation_id, event_id)
    token = _current.set(trace)
    try:
        yield trace
    finally:
        _current.reset(token)


@contextmanager
def recorded_traces(traces: Mapping[UUID, Trace]) -> Generator[None, None, None]:
    """Within the block, :func:`trace_of` knows these events' traces (by event id)."""
    token = _recorded.set(traces)
    try:
        yield
    finally:
        _recorded.reset(token)


def trace_of(event_id: UUID, recorded: Trace | None = None) -> Trace:
    """The trace of an event: as recorded, else as known, else the current one, else its own."""
    if recorded is not None:
        return recorded
    known = _recorded.get().get(event_id)
    if known is not None:
        return known
    current = _current.get()
    return current if current is not None else Trace(event_id)
