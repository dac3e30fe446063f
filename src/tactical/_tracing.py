"""Correlation and causation ids: which flow an event belongs to, and which event caused it."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from uuid import UUID

__all__ = [
    "Trace",
    "correlation_of",
    "current_trace",
    "handling",
    "recorded_traces",
    "reset_trace",
    "set_trace",
    "trace_of",
]


@dataclass(frozen=True, slots=True, init=False)
class Trace:
    """The tracing ids of an event: the flow it belongs to, and the event that caused it.

    Attributes:
        correlation_id: Shared by every event of one flow: the id of the flow's first event
            (an event recorded outside any handler starts a flow of its own), or of the
            command that started it.
        causation_id: The id of the event whose handling recorded this one, or of the
            :class:`~tactical.Command` whose handler did (``.. versionchanged:: 0.2.0``);
            None for an event recorded outside any handler.

    .. versionadded:: 0.1.0
    """

    correlation_id: UUID
    causation_id: UUID | None = None

    def __init__(self, correlation_id: UUID, causation_id: UUID | None = None) -> None:
        # One is made for every event dispatched: the slots are written directly, as a
        # frozen dataclass's own __init__ does through object.__setattr__ at twice the cost.
        _set_correlation_id(self, correlation_id)
        _set_causation_id(self, causation_id)


_set_correlation_id = vars(Trace)["correlation_id"].__set__
_set_causation_id = vars(Trace)["causation_id"].__set__

_current: ContextVar[Trace | None] = ContextVar("tactical_trace", default=None)
_recorded: ContextVar[Mapping[UUID, Trace]] = ContextVar("tactical_recorded_traces", default={})  # noqa: B039  (never mutated)


set_trace = _current.set
"""Make a trace current; returns the token for :data:`reset_trace` (``handling`` without ``with``)."""
reset_trace = _current.reset
"""Restore the trace that was current before the :data:`set_trace` that gave the token."""


def current_trace() -> Trace | None:
    """The trace that events recorded right now get: set while an event or command handler runs.

    Returns:
        Inside a handler of event ``e``, ``Trace(e's correlation id, e.event_id)``; inside
        the handler of command ``c``, ``Trace(correlation, c.command_id)`` where
        ``correlation`` is the current one when ``c`` was dispatched, else ``c.command_id``;
        outside any handler, None.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Command handlers run in a trace too.
    """
    return _current.get()


class handling:  # a function to its callers; a class so that entering it is cheap
    """Within the block, events recorded are caused by ``event_id`` in flow ``correlation_id``.

    ``with handling(correlation_id, event_id) as trace:``; ``trace`` is the current trace
    inside. A class with slots rather than a ``@contextmanager`` generator: it is entered
    for every event dispatched, and a generator-based one cost about 2 us each time.
    """

    __slots__ = ("_token", "trace")
    _token: Token[Trace | None]

    def __init__(self, correlation_id: UUID, event_id: UUID) -> None:
        self.trace = Trace(correlation_id, event_id)

    def __enter__(self) -> Trace:
        self._token = _current.set(self.trace)
        return self.trace

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


class recorded_traces:  # a function to its callers; a class so that entering it is cheap
    """Within the block, :func:`trace_of` knows these events' traces (by event id)."""

    __slots__ = ("_token", "_traces")
    _token: Token[Mapping[UUID, Trace]]

    def __init__(self, traces: Mapping[UUID, Trace]) -> None:
        self._traces = traces

    def __enter__(self) -> None:
        self._token = _recorded.set(self._traces)

    def __exit__(self, *exc_info: object) -> None:
        _recorded.reset(self._token)


def correlation_of(event_id: UUID) -> UUID:
    """The correlation id of :func:`trace_of` ``(event_id)``, without making a trace."""
    # Looked up only in a mapping that has traces: hashing a UUID is a Python call.
    recorded = _recorded.get()
    known = recorded.get(event_id) if recorded else None
    if known is not None:
        return known.correlation_id
    current = _current.get()
    return event_id if current is None else current.correlation_id


def trace_of(event_id: UUID, recorded: Trace | None = None) -> Trace:
    """The trace of an event: as recorded, else as known, else the current one, else its own."""
    if recorded is not None:
        return recorded
    traces = _recorded.get()
    known = traces.get(event_id) if traces else None  # (see correlation_of)
    if known is not None:
        return known
    current = _current.get()
    return current if current is not None else Trace(event_id)
