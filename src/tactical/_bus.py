"""The in-process event bus that units of work publish committed events on."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from tactical._model import DomainEvent
from tactical._tracing import Trace, handling, trace_of

__all__ = ["EventBus", "EventHandlerError"]

E = TypeVar("E", bound=DomainEvent)
H = TypeVar("H")

_log = logging.getLogger("tactical.bus")


class EventHandlerError(ExceptionGroup[Exception]):
    """One or more event handlers raised while committed events were dispatched.

    The transaction that produced the events was committed before dispatch began, and its
    changes stand. Every other handler still received every event. Each contained exception
    carries a note naming the handler and the event (type and ``event_id``); the failures are
    also logged on the ``tactical.bus`` logger with their tracebacks.

    Attributes:
        exceptions: The handlers' exceptions, in the order they were raised.

    .. versionadded:: 0.1.0
    """


def check_event_type(event_type: type[DomainEvent]) -> None:
    """Refuse anything but a :class:`~tactical.DomainEvent` subclass as a subscription key.

    Raises:
        TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` subclass.
    """
    candidate: object = event_type
    if not (isinstance(candidate, type) and issubclass(candidate, DomainEvent)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"subscribe() takes a DomainEvent subclass, got {event_type!r}")


class Subscriptions(Generic[H]):
    """Handlers by event type: an event goes to those of its type and of its base classes.

    In subscription order; thread-safe; the handlers of each event type are looked up once.
    Shared by :class:`EventBus` and the outbox's inbox consumer.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[type[DomainEvent], H]] = []
        self._cache: dict[type[DomainEvent], tuple[H, ...]] = {}
        self._lock = threading.Lock()

    def add(self, event_type: type[DomainEvent], handler: H) -> None:
        """Subscribe ``handler`` to ``event_type`` (and its subclasses).

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` subclass.
        """
        check_event_type(event_type)
        with self._lock:
            self._entries.append((event_type, handler))
            self._cache = {}

    def for_type(self, event_type: type[DomainEvent]) -> tuple[H, ...]:
        """The handlers an event of ``event_type`` goes to, in subscription order."""
        cache = self._cache
        try:
            return cache[event_type]
        except KeyError:
            with self._lock:
                handlers = tuple(h for t, h in self._entries if issubclass(event_type, t))
                self._cache[event_type] = handlers
            return handlers


class _Dispatch(threading.local):
    def __init__(self) -> None:
        self.queue: deque[tuple[DomainEvent, Trace]] = deque()
        self.active = False


class EventBus:
    """In-process publish/subscribe of domain events.

    Handlers are subscribed per event type; a handler subscribed to a base class also
    receives its subclasses (subscribe to :class:`~tactical.DomainEvent` to see everything).
    Each event goes to its handlers in subscription order.

    Dispatch is FIFO and never recursive: an event published while another is being
    dispatched on the same thread (a handler committing its own unit of work, say) is queued
    and delivered after the handlers of the current event, so a chain of handlers runs in a
    loop, not on the stack.

    A failing handler does not stop delivery: every handler still receives every queued
    event; the failure is logged (``tactical.bus`` logger, with traceback) and, once the
    queue is empty, all failures are raised together as :class:`EventHandlerError` from the
    outermost :meth:`publish` (so from ``commit()``, after the commit has succeeded).

    While a handler runs, events recorded (or published) by it carry the handled event's
    correlation id and, as causation id, the handled event's id (see
    :func:`tactical.current_trace`).

    The bus is thread-safe: each thread dispatches its own events.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._subscriptions: Subscriptions[Callable[[Any], object]] = Subscriptions()
        self._dispatch = _Dispatch()

    def subscribe(self, event_type: type[E], handler: Callable[[E], object]) -> None:
        """Call ``handler`` with every published event that is an instance of ``event_type``.

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` subclass, or
                ``handler`` is not callable.
        """
        check_event_type(event_type)
        if not callable(handler):
            raise TypeError(f"handler for {event_type.__qualname__} is not callable: {handler!r}")
        self._subscriptions.add(event_type, handler)

    def handlers_for(self, event_type: type[DomainEvent]) -> tuple[Callable[[Any], object], ...]:
        """The handlers an event of ``event_type`` is delivered to, in delivery order.

        Returns:
            The handlers subscribed to ``event_type`` or any of its base classes.
        """
        return self._subscriptions.for_type(event_type)

    def publish(self, event: DomainEvent) -> None:
        """Deliver ``event`` to its handlers (after those already queued on this thread).

        Raises:
            EventHandlerError: A handler raised (raised by the outermost publish only, after
                every queued event was delivered).
        """
        self.publish_all((event,))

    def publish_all(self, events: Iterable[DomainEvent]) -> None:
        """Deliver ``events`` in order, as :meth:`publish` does for one.

        Raises:
            EventHandlerError: A handler raised (raised by the outermost publish only, after
                every queued event was delivered).
        """
        dispatch = self._dispatch
        # Each event's trace is fixed now, in the publisher's context (a handler's, or the
        # unit of work's that knows how its events were recorded), not when it is dispatched.
        # An event nobody handles is skipped: no handler can record anything in its trace.
        for_type = self._subscriptions.for_type
        dispatch.queue.extend(
            (event, trace_of(event.event_id)) for event in events if for_type(type(event))
        )
        if dispatch.active or not dispatch.queue:
            return
        dispatch.active = True
        failures: list[Exception] = []
        try:
            while dispatch.queue:
                event, trace = dispatch.queue.popleft()
                with handling(trace.correlation_id, event.event_id):
                    for handler in for_type(type(event)):
                        try:
                            handler(event)
                        except Exception as error:
                            failures.append(_annotated(error, handler, event))
        finally:
            dispatch.active = False
            dispatch.queue.clear()
        if failures:
            raise EventHandlerError(
                f"{len(failures)} event handler(s) failed after the transaction was committed "
                "(its changes stand; every other handler ran)",
                failures,
            )


def _annotated(error: Exception, handler: Callable[[Any], object], event: DomainEvent) -> Exception:
    name = getattr(handler, "__qualname__", repr(handler))
    note = f"in handler {name} for {type(event).__qualname__} event_id={event.event_id}"
    error.add_note(note)
    _log.error("event handler failed: %s", note, exc_info=error)
    return error
