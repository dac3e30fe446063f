"""The in-process event bus that units of work publish committed events on."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from inspect import isawaitable
from typing import Any, Generic, NamedTuple, TypeVar
from uuid import UUID

from tactical._asyncness import awaited, discard_awaitable, is_async_callable, name_of
from tactical._flow import Flow, run_async, run_unanswered
from tactical._model import DomainEvent
from tactical._telemetry import NOOP, handler_span, tracer
from tactical._tracing import Trace, correlation_of, reset_trace, set_trace

__all__ = ["EventBus", "EventHandlerError", "committed_but_failed"]

E = TypeVar("E", bound=DomainEvent)
H = TypeVar("H")

_log = logging.getLogger("tactical.bus")

Handler = Callable[[Any], object]


class EventHandlerError(ExceptionGroup[Exception]):
    """One or more event handlers raised while events were dispatched.

    Raised by the outermost publish once every queued event was delivered: every other
    handler still received every event. A unit of work raises it when its ``with`` block
    ends after a successful commit, which stands (its message says so); a direct
    :meth:`EventBus.publish` committed nothing and says nothing of a commit. Each contained exception
    carries a note naming the handler and the event (type and ``event_id``); the failures are
    also logged on the ``tactical.bus`` logger with their tracebacks.

    Attributes:
        exceptions: The handlers' exceptions, in the order they were raised.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A unit of work raises it when its block ends, no longer from ``commit()``; only then
       does the message say the transaction was committed.
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


class _Route(NamedTuple):
    """Where an event of one type goes: its handlers, each with whether it is async."""

    handlers: tuple[Handler, ...]
    calls: tuple[tuple[Handler, bool], ...]
    first_async: Handler | None


class _Dispatch:
    """One outermost publish in progress: its queue, and who may add to it.

    Linked to ``outer``, the dispatch that was running in the context when it started (of
    another bus, or of this bus in another thread or task), so each context knows all of its
    dispatches.
    """

    __slots__ = ("active", "bus", "is_async", "outer", "owner", "queue")

    def __init__(
        self,
        bus: EventBus,
        queue: list[tuple[DomainEvent, UUID]],
        owner: object,
        is_async: bool,
        outer: _Dispatch | None,
    ) -> None:
        self.bus = bus
        self.queue = queue
        self.owner = owner
        self.is_async = is_async
        self.active = True
        self.outer = outer


# The innermost dispatch running in this context. A context variable, not a thread-local:
# asyncio tasks on one thread each have their own context, so each task dispatches its own
# events; each thread has its own context too, so threads keep dispatching independently.
_dispatching: ContextVar[_Dispatch | None] = ContextVar("tactical_bus_dispatching", default=None)


class EventBus:
    """In-process publish/subscribe of domain events.

    Handlers are subscribed per event type; a handler subscribed to a base class also
    receives its subclasses (subscribe to :class:`~tactical.DomainEvent` to see everything).
    Each event goes to its handlers in subscription order.

    A handler is a plain function or an ``async def`` one. :meth:`publish_async` and
    :meth:`publish_all_async` (what an async unit of work's commit calls) await async
    handlers and call sync ones, in order. The sync :meth:`publish` and :meth:`publish_all`
    cannot await: reaching an async handler there is a :class:`TypeError` raised before any
    handler of that publish runs (a coroutine is never left un-awaited);
    :meth:`has_async_handlers` and :meth:`require_sync_handlers` let a sync unit of work
    refuse before it stores anything.

    Dispatch is FIFO and never recursive: an event published while another is being
    dispatched in the same thread or asyncio task (a handler committing its own unit of
    work, say) is queued and delivered after the handlers of the current event, so a chain
    of handlers runs in a loop, not on the stack.

    A failing handler does not stop delivery: every handler still receives every queued
    event; the failure is logged (``tactical.bus`` logger, with traceback) and, once the
    queue is empty, all failures are raised together as :class:`EventHandlerError` from the
    outermost publish (for a unit of work's events, from the end of its ``with`` block,
    after the commit has succeeded).

    While a handler runs (an async one: across its awaits too), events recorded (or
    published) by it carry the handled event's correlation id and, as causation id, the
    handled event's id (see :func:`tactical.current_trace`).

    The bus is thread-safe and task-safe: each thread, and each asyncio task, dispatches its
    own events.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``async def`` handlers, :meth:`publish_async`, :meth:`publish_all_async`,
       :meth:`has_async_handlers`, :meth:`require_sync_handlers`; dispatch is per asyncio
       task as well as per thread.
    """

    def __init__(self) -> None:
        # Each handler with whether it is async, decided once, when it subscribes.
        self._subscriptions: Subscriptions[tuple[Handler, bool]] = Subscriptions()
        self._routes: dict[type[DomainEvent], _Route] = {}
        self._lock = threading.Lock()

    def subscribe(self, event_type: type[E], handler: Callable[[E], object]) -> None:
        """Call ``handler`` with every published event that is an instance of ``event_type``.

        ``handler`` may be ``async def`` (or a ``functools.partial`` of one, an object whose
        ``__call__`` is, or a function marked with ``inspect.markcoroutinefunction``): that
        is decided here, once; it is then awaited by :meth:`publish_async`, and refused by
        the sync :meth:`publish`. To a type checker ``handler`` is a callable taking an
        ``event_type`` (or a base class of it) and returning anything, an awaitable included.

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` subclass, or
                ``handler`` is not callable.
        """
        check_event_type(event_type)
        if not callable(handler):
            raise TypeError(f"handler for {event_type.__qualname__} is not callable: {handler!r}")
        with self._lock:
            self._subscriptions.add(event_type, (handler, is_async_callable(handler)))
            self._routes = {}

    def handlers_for(self, event_type: type[DomainEvent]) -> tuple[Callable[[Any], object], ...]:
        """The handlers an event of ``event_type`` is delivered to, in delivery order.

        Returns:
            The handlers subscribed to ``event_type`` or any of its base classes.
        """
        return self._route(event_type).handlers

    def has_async_handlers(self, event_types: Iterable[type[DomainEvent]]) -> bool:
        """Whether an event of any of ``event_types`` would go to an ``async def`` handler.

        A sync unit of work asks this (or calls :meth:`require_sync_handlers`) before it
        stores anything: its block publishes with the sync :meth:`publish_all`, which
        cannot await such a handler.

        .. versionadded:: 0.2.0
        """
        route = self._route
        return any(route(event_type).first_async is not None for event_type in event_types)

    def require_sync_handlers(self, event_types: Iterable[type[DomainEvent]]) -> None:
        """Refuse event types that would go to an ``async def`` handler.

        Raises:
            TypeError: An event of one of ``event_types`` has an async handler; the message
                names the handler and the event type.

        .. versionadded:: 0.2.0
        """
        route = self._route
        for event_type in event_types:
            handler = route(event_type).first_async
            if handler is not None:
                raise _sync_publish_refused(event_type, handler)

    def publish(self, event: DomainEvent) -> None:
        """Deliver ``event`` to its handlers (after those already queued here).

        Raises:
            TypeError: ``event`` has an ``async def`` handler (see :meth:`publish_async`);
                raised before any handler of this publish runs.
            EventHandlerError: A handler raised (raised by the outermost publish only, after
                every queued event was delivered).
        """
        self.publish_all((event,))

    def publish_all(self, events: Iterable[DomainEvent]) -> None:
        """Deliver ``events`` in order, as :meth:`publish` does for one.

        Raises:
            TypeError: An event has an ``async def`` handler (see :meth:`publish_all_async`);
                raised before any handler of this publish runs.
            EventHandlerError: A handler raised (raised by the outermost publish only, after
                every queued event was delivered).
        """
        queued, refused = self._traced(events)
        running = _dispatching.get()
        dispatch = None if running is None else self._joinable(running, asynchronous=False)
        if refused is not None and (dispatch is None or not dispatch.is_async):
            raise _sync_publish_refused(*refused)
        if dispatch is not None:
            dispatch.queue.extend(queued)
        elif queued:
            dispatch = _Dispatch(self, queued, threading.get_ident(), False, running)
            run_unanswered(self._deliver(dispatch), _refuse_awaitable)

    async def publish_async(self, event: DomainEvent) -> None:
        """Deliver ``event`` to its handlers, awaiting the async ones (after those queued here).

        Raises:
            EventHandlerError: A handler raised (raised by the outermost publish only, after
                every queued event was delivered).

        .. versionadded:: 0.2.0
        """
        await self.publish_all_async((event,))

    async def publish_all_async(self, events: Iterable[DomainEvent]) -> None:
        """Deliver ``events`` in order, as :meth:`publish_async` does for one.

        Exactly the semantics of :meth:`publish_all`, in the current asyncio task: async
        handlers are awaited one at a time, in order, with sync ones called between them.
        If the task is cancelled while a handler is awaited, the cancellation propagates at
        once and the events still queued are not delivered.

        Raises:
            EventHandlerError: A handler raised (raised by the outermost publish only, after
                every queued event was delivered).

        .. versionadded:: 0.2.0
        """
        queued, _ = self._traced(events)
        running = _dispatching.get()
        dispatch = None if running is None else self._joinable(running, asynchronous=True)
        if dispatch is not None:
            dispatch.queue.extend(queued)
        elif queued:
            dispatch = _Dispatch(self, queued, _current_task_or_thread(), True, running)
            await run_async(self._deliver(dispatch), awaited)

    # -- dispatch ------------------------------------------------------------------------

    def _traced(
        self, events: Iterable[DomainEvent]
    ) -> tuple[list[tuple[DomainEvent, UUID]], tuple[type[DomainEvent], Handler] | None]:
        """The events to queue, with their correlation ids; the first async handler they reach."""
        # Each event's trace is fixed now, in the publisher's context (a handler's, or the
        # unit of work's that knows how its events were recorded), not when it is dispatched.
        # An event nobody handles is skipped: no handler can record anything in its trace.
        routes, first_async = self._routes, None
        queued: list[tuple[DomainEvent, UUID]] = []
        for event in events:
            event_type = type(event)
            route = routes.get(event_type) or self._route(event_type)
            if route.handlers:
                queued.append((event, correlation_of(event.event_id)))
                if route.first_async is not None and first_async is None:
                    first_async = (event_type, route.first_async)
        return queued, first_async

    def _joinable(self, running: _Dispatch, *, asynchronous: bool) -> _Dispatch | None:
        """The dispatch running here that a publish now must queue its events on, if any.

        ``running`` is the innermost dispatch running in this context, of any bus.

        Only the thread or task that started a dispatch may join it: a task created by a
        handler, or a thread given a copy of its context, inherits the context variable but
        dispatches its own events. An async publish joins only an async dispatch (a sync one
        could not await its handlers); a sync publish joins either.
        """
        dispatch: _Dispatch | None = running
        while dispatch is not None and dispatch.bus is not self:
            dispatch = dispatch.outer
        if dispatch is None or not dispatch.active:
            return None
        if dispatch.is_async:
            return dispatch if dispatch.owner == _current_task_or_thread() else None
        if asynchronous:
            return None
        return dispatch if dispatch.owner == threading.get_ident() else None

    def _deliver(self, dispatch: _Dispatch) -> Flow[Awaitable[object], None]:
        """The dispatch loop, written once: yields what an async handler returned, to await.

        The sync driver refuses every awaitable (closing it; the handler's failure), the
        async one awaits it; what the await raises is thrown back in at the ``yield``.
        """
        route = self._route
        traced = tracer()
        failures: list[Exception] = []
        token = _dispatching.set(dispatch)
        try:
            # Iterating a list that grows: events queued by the handlers are reached in turn.
            for event, correlation_id in dispatch.queue:
                trace = set_trace(Trace(correlation_id, event.event_id))
                try:
                    for handler, is_async in route(type(event)).calls:
                        span = (
                            NOOP
                            if traced is None
                            else handler_span(traced, event, handler, correlation_id)
                        )
                        try:
                            with span:
                                result = handler(event)
                                # Most handlers return None: skip the awaitable check for them.
                                if (is_async or result is not None) and isawaitable(result):
                                    yield result
                        except Exception as error:
                            failures.append(_annotated(error, handler, event))
                finally:
                    reset_trace(trace)
        finally:
            dispatch.active = False
            _dispatching.reset(token)
        if failures:
            raise EventHandlerError(
                f"{len(failures)} event handler(s) failed (every other handler ran)", failures
            )

    def _route(self, event_type: type[DomainEvent]) -> _Route:
        try:
            return self._routes[event_type]
        except KeyError:
            with self._lock:
                calls = self._subscriptions.for_type(event_type)
                handlers = tuple(handler for handler, _ in calls)
                first_async = next((h for h, is_async in calls if is_async), None)
                route = self._routes[event_type] = _Route(handlers, calls, first_async)
            return route


def committed_but_failed(failed: EventHandlerError) -> EventHandlerError:
    """``failed`` as a unit of work raises it: after its commit, whose changes stand."""
    return EventHandlerError(
        f"{len(failed.exceptions)} event handler(s) failed after the transaction was "
        "committed (its changes stand; every other handler ran)",
        failed.exceptions,
    )


def _sync_publish_refused(event_type: type[DomainEvent], handler: Handler) -> TypeError:
    return TypeError(
        f"async handler {name_of(handler)} for {event_type.__qualname__} cannot be run by a "
        "sync publish (nothing would await it): commit in an async unit of work, or publish "
        "with await bus.publish_async(...)"
    )


def _refuse_awaitable(result: Awaitable[object]) -> object:
    """The sync driver of the dispatch loop: a handler's awaitable cannot be awaited here."""
    discard_awaitable(result)
    raise TypeError(
        f"handler returned an awaitable ({type(result).__qualname__}) to a sync publish, which "
        "cannot await it (it was closed): make the handler async def and publish with "
        "await bus.publish_async(...), or make it return None"
    )


def _current_task_or_thread() -> object:
    """The asyncio task running now, else the thread.

    Only called where asyncio is in use (an async publish, or an async dispatch running in
    this context), so it is imported already: the sync bus never imports it.
    """
    try:
        task: object = sys.modules["asyncio"].current_task()
    except RuntimeError:  # no event loop running in this thread
        return threading.get_ident()
    return threading.get_ident() if task is None else task


def _annotated(error: Exception, handler: Handler, event: DomainEvent) -> Exception:
    note = f"in handler {name_of(handler)} for {type(event).__qualname__} event_id={event.event_id}"
    error.add_note(note)
    _log.error("event handler failed: %s", note, exc_info=error)
    return error
