"""Process managers: aggregates that coordinate other aggregates over time (sagas).

A :class:`ProcessManager` is an aggregate keyed by a correlation value taken from the events
it handles. Its methods decorated with :func:`ProcessManager.starts` and
:func:`ProcessManager.advances` say which event types start it and which move it on, and
how to read the key from each. Handling an event records events, asks for commands
(:meth:`ProcessManager.dispatch`, kept on the instance like pending events) and schedules
timers (:meth:`ProcessManager.schedule`, written by the unit of work's commit).
:class:`ProcessManagerHandler` feeds it from an :class:`~tactical.EventBus`: load or start,
apply, commit, then dispatch the commands through a :class:`~tactical.CommandBus`;
:class:`AsyncProcessManagerHandler` does the same on an async unit of work. Both only carry
out what one flow (:func:`applying`) decides.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, TypeVar, cast
from uuid import UUID

from tactical._bus import EventBus
from tactical._commands import Command, CommandBus
from tactical._flow import Flow, run, run_async
from tactical._model import AggregateRoot, DomainEvent
from tactical._retry import retry_on_conflict
from tactical._timers import HELD_TIMERS, TimerRequests, timer_writes_of
from tactical._tracking import check_id
from tactical._uow import UnitOfWork
from tactical._uow_async import AsyncUnitOfWork
from tactical._uow_core import RepositoryBase

__all__ = ["AsyncProcessManagerHandler", "ProcessManager", "ProcessManagerHandler"]

KeyT = TypeVar("KeyT")
K = TypeVar("K")
E = TypeVar("E", bound=DomainEvent)
PM = TypeVar("PM", bound="ProcessManager[Any]")

_log = logging.getLogger("tactical.process")

# Kept in the instance's __dict__, not in fields: out of equality, repr and storage.
_COMMANDS = "_tactical_pending_commands"
_ROUTE = "__tactical_process_route__"


@dataclass(frozen=True, slots=True)
class _Route:
    event_type: type[DomainEvent]
    key: Callable[[Any], Any]
    starts: bool
    method_name: str = ""


class ProcessManager(AggregateRoot[KeyT]):
    """An aggregate that coordinates other aggregates over time: a saga.

    Its ``id`` is the correlation key: the value every event of one process carries (a
    shipment's id). Declare what it reacts to with decorated methods, each taking one event
    type and saying how to read the key from it::

        class PickupDeadline(ProcessManager[UUID]):
            carrier: str = ""

            @ProcessManager.starts(LabelPrinted, key=lambda e: e.shipment_id)
            def label_printed(self, event: LabelPrinted) -> None: ...

            @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)
            def pickup_scanned(self, event: PickupScanned) -> None:
                self.complete()

    A starting event creates the manager when none is stored under its key (so every
    field but ``id`` needs a default); an advancing event for a process that was never
    started is ignored. A handler method changes the manager's fields, :meth:`~tactical.AggregateRoot.record`\\ s
    events, asks for commands with :meth:`dispatch` and for timers with :meth:`schedule`
    and :meth:`cancel`, and ends the process with :meth:`complete`.

    Stored and version-checked like any aggregate (the default JSON document storage
    needs no mapping). Two fields of its own, keyword-only with defaults, are stored with
    it: ``completed`` (a completed manager ignores every further event) and
    ``handled_event_ids``, the ids of the last ``remembered_events`` events it handled
    (100 by default; set the class attribute to change it): :meth:`handle` applies an
    event whose id is among them no more, so a redelivered event is applied once. Two
    deliveries racing on different processes or units of work both load the same version,
    and the second commit raises :class:`~tactical.ConcurrencyError`; retried, it reloads
    and finds the event handled. An event older than the remembered window is not
    recognised: fed from a broker, subscribe the manager to the consumer's inbox
    (:meth:`InboxConsumer.subscribe_process_manager
    <tactical.outbox.InboxConsumer.subscribe_process_manager>`), which deduplicates every
    delivery for as long as its rows are kept and stores the manager in its own
    transaction.

    .. versionadded:: 0.2.0
    """

    remembered_events: ClassVar[int] = 100
    """How many handled event ids ``handled_event_ids`` keeps (the last ones)."""
    _routes: ClassVar[dict[type[DomainEvent], _Route]] = {}

    completed: bool = field(default=False, kw_only=True)
    handled_event_ids: list[UUID] = field(default_factory=list[UUID], kw_only=True)

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        routes: dict[type[DomainEvent], _Route] = {}
        for base in reversed(cls.__mro__[1:]):
            routes.update(getattr(base, "_routes", {}))
        for name, member in vars(cls).items():
            route: _Route | None = getattr(member, _ROUTE, None)
            if route is None:
                continue
            for known in routes.values():
                if (
                    known.event_type is route.event_type
                    and known.method_name != name
                    and known.method_name in vars(cls)
                ):
                    raise TypeError(
                        f"{cls.__qualname__} handles {route.event_type.__qualname__} twice, "
                        f"in {known.method_name}() and {name}(): one method per event type"
                    )
            routes[route.event_type] = _Route(route.event_type, route.key, route.starts, name)
        cls._routes = routes

    # -- declaring -------------------------------------------------------------------------

    @staticmethod
    def starts(
        event_type: type[E], *, key: Callable[[E], K]
    ) -> Callable[[Callable[[PM, E], None]], Callable[[PM, E], None]]:
        """Declare the decorated method as the handler of ``event_type``, which starts a process.

        Args:
            event_type: The event class this method handles (exactly it, not subclasses).
            key: Reads the correlation key (the manager's ``id``) from such an event.

        .. versionadded:: 0.2.0
        """
        return _declaring(event_type, key, starts=True)

    @staticmethod
    def advances(
        event_type: type[E], *, key: Callable[[E], K]
    ) -> Callable[[Callable[[PM, E], None]], Callable[[PM, E], None]]:
        """Declare the decorated method as the handler of ``event_type``, for a started process.

        Args:
            event_type: The event class this method handles, as for :meth:`starts`.
            key: Reads from such an event the ``id`` of the process it advances.

        .. versionadded:: 0.2.0
        """
        return _declaring(event_type, key, starts=False)

    @classmethod
    def handled_event_types(cls) -> tuple[type[DomainEvent], ...]:
        """The event types this manager's methods handle, starting ones first."""
        routes = cls._routes.values()
        return tuple(r.event_type for r in sorted(routes, key=lambda r: not r.starts))

    @classmethod
    def starts_on(cls, event: DomainEvent) -> bool:
        """Whether ``event`` may start a process of this manager."""
        return cls._route(event).starts

    @classmethod
    def correlation_key(cls, event: DomainEvent) -> KeyT:
        """The key of the process ``event`` belongs to, read as its decorator says.

        Raises:
            TypeError: This manager handles no event of ``event``'s type, or the decorator's
                ``key`` read None or a value that is not of the manager's id type (the
                message names the method and the event).
        """
        route = cls._route(event)
        key = route.key(event)
        try:
            if key is None:
                raise TypeError(f"{cls.__qualname__} ids cannot be None")
            check_id(cls, key)
        except TypeError as refused:
            raise TypeError(
                f"the key= of {cls.__qualname__}.{route.method_name}() read {key!r} from "
                f"{type(event).__qualname__} {event.event_id}, which cannot name a process: "
                f"{refused}"
            ) from None
        return key  # type: ignore[no-any-return]

    @classmethod
    def _route(cls, event: DomainEvent) -> _Route:
        route = cls._routes.get(type(event))
        if route is None:
            handled = ", ".join(t.__qualname__ for t in cls.handled_event_types()) or "none"
            raise TypeError(
                f"{cls.__qualname__} does not handle {type(event).__qualname__} "
                f"(it handles: {handled})"
            )
        return route

    # -- reacting --------------------------------------------------------------------------

    def handle(self, event: DomainEvent) -> bool:
        """Apply ``event`` with the method declared for its type; whether it was applied.

        Not applied (False) when the process is completed, or when ``event``'s id is
        among ``handled_event_ids`` (a duplicate delivery).

        Raises:
            TypeError: No method of this manager handles ``event``'s type.
            ValueError: ``event``'s key is not this manager's ``id``.
        """
        route = self._route(event)
        key = route.key(event)
        if key != self.id:
            raise ValueError(
                f"{type(event).__qualname__} {event.event_id} belongs to process {key!r}, "
                f"not to {type(self).__qualname__} {self.id!r}"
            )
        if self.completed or event.event_id in self.handled_event_ids:
            return False
        getattr(self, route.method_name)(event)
        self.handled_event_ids.append(event.event_id)
        excess = len(self.handled_event_ids) - self.remembered_events
        if excess > 0:
            del self.handled_event_ids[:excess]
        return True

    def complete(self) -> None:
        """End the process: from now on it ignores every event (timers are left as they are)."""
        self.completed = True

    def dispatch(self, command: Command[Any]) -> None:
        """Ask for ``command`` to be dispatched once this manager's changes are committed.

        Kept on the instance, out of its stored state, as pending events are;
        :class:`ProcessManagerHandler` (and :class:`AsyncProcessManagerHandler`, and an
        inbox consumer the manager is subscribed to) dispatch them after the commit, in
        order.

        Raises:
            TypeError: ``command`` is not a :class:`~tactical.Command`.
        """
        candidate: object = command
        if not isinstance(candidate, Command):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"{type(self).__qualname__}.dispatch() takes a Command, got {command!r}"
            )
        vars(self).setdefault(_COMMANDS, []).append(command)

    @property
    def pending_commands(self) -> tuple[Command[Any], ...]:
        """The commands asked for and not yet pulled, oldest first."""
        return tuple(vars(self).get(_COMMANDS, ()))

    def pull_commands(self) -> tuple[Command[Any], ...]:
        """Return the pending commands, oldest first, and forget them."""
        pulled = self.pending_commands
        vars(self).pop(_COMMANDS, None)
        return pulled

    def schedule(self, message: DomainEvent, *, at: datetime, key: str | None = None) -> str:
        """Schedule ``message`` for ``at``, stored by the commit that stores this manager.

        The unit of work that holds the manager writes the timer in the same transaction
        (see :meth:`tactical.InMemoryUnitOfWork.schedule` for ``at`` and ``key``); a
        rollback drops it. Asked for after that commit, it is saved nowhere and reported
        (an :class:`~tactical.UncommittedChangesWarning`); the process-managers how-to
        lists every case. Returns the timer's key.

        Raises:
            TypeError: ``message`` is not a DomainEvent, ``at`` not a datetime.
            ValueError: ``at`` is naive, or ``key`` cannot be stored.
        """
        return self._timer_requests().schedule(message, at, key)

    def cancel(self, key: str) -> None:
        """Cancel the timer ``key`` with the commit that stores this manager."""
        self._timer_requests().cancel(key)

    def _timer_requests(self) -> TimerRequests:
        requests: TimerRequests | None = vars(self).get(HELD_TIMERS)
        if requests is None:
            requests = vars(self)[HELD_TIMERS] = TimerRequests()
        return requests

    def clear_events(self) -> None:
        """Forget the pending events; the timer requests stay (and commands, until pulled).

        The timer requests are the unit of work's to take: the one holding the manager
        writes them at its commit and forgets them then, as its rollback does. So
        :meth:`~tactical.AggregateRoot.pull_events`, which calls this, does not drop them
        in passing (see the process-managers how-to).
        """
        super().clear_events()


def _declaring(
    event_type: type[E], key: Callable[[E], K], *, starts: bool
) -> Callable[[Callable[[PM, E], None]], Callable[[PM, E], None]]:
    candidate: object = event_type
    if not (isinstance(candidate, type) and issubclass(candidate, DomainEvent)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"a process manager handles DomainEvent subclasses, got {event_type!r}")
    if not callable(key):
        raise TypeError(f"key for {event_type.__qualname__} must be callable, got {key!r}")

    def decorate(method: Callable[[PM, E], None]) -> Callable[[PM, E], None]:
        setattr(method, _ROUTE, _Route(event_type, key, starts))
        return method

    return decorate


M = TypeVar("M", bound=ProcessManager[Any])
U = TypeVar("U")


@dataclass(frozen=True, slots=True)
class Load:
    """Load the manager stored under ``key`` (the result: it, or None)."""

    key: object


@dataclass(frozen=True, slots=True)
class Add:
    """Add the manager a starting event created to the block's repository."""

    manager: Any  # the flow's manager type


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit the block: the manager, its events and its timers."""

    manager: Any  # the flow's manager type


Op = Load | Add | Commit


def applying(manager_type: type[M], event: DomainEvent) -> Flow[Op, M | None]:
    """Apply ``event`` to its process, inside a unit of work's block: every decision, no I/O.

    Yields what the block must do (load the manager, add a started one, commit) and
    returns the manager that handled the event, or None when nothing was applied (nothing
    to commit, no commands to dispatch).
    """
    key = manager_type.correlation_key(event)
    manager: M | None = yield Load(key)
    if manager is None:
        if not manager_type.starts_on(event):
            _log.info(
                "%s %s ignored: no %s %r was started",
                type(event).__qualname__,
                event.event_id,
                manager_type.__qualname__,
                key,
            )
            return None
        manager = _started(manager_type, key)
        yield Add(manager)
    if not manager.handle(event):
        return None
    yield Commit(manager)
    return manager


def refuse_unstored_timers(
    handler: object, repository: object, manager: ProcessManager[Any]
) -> None:
    """Refuse to commit ``manager`` through ``repository`` if that would drop its timers.

    tactical's units of work write the timer requests of the managers their repositories
    hold, in the commit's transaction. Another unit of work's repository stores the
    manager its own way and knows nothing of them: its commit would store the manager
    (with the event remembered as handled) and lose the timers for good.

    Raises:
        TypeError: ``manager`` holds timer requests and ``repository`` is not a tactical
            unit of work's; raised before the commit, so nothing is stored.
    """
    if isinstance(repository, RepositoryBase):
        return
    keys = [write.key for write in timer_writes_of(manager)]
    if keys:
        raise TypeError(
            f"{handler!r} cannot commit {type(manager).__qualname__} {manager.id!r}: it "
            f"scheduled or cancelled the timers {', '.join(map(repr, keys))}, and its "
            f"repository, {type(repository).__qualname__}, is not a tactical unit of work's, "
            "which alone write a process manager's timers in the commit's transaction; "
            "nothing was committed (feed the manager through InMemoryUnitOfWork, "
            "SqlAlchemyUnitOfWork or their async counterparts)"
        )


def check_feeding(kind: str, manager_type: type[M], commands: CommandBus) -> None:
    """Refuse what cannot feed a manager: not a ProcessManager handling events, no CommandBus.

    Raises:
        TypeError: ``manager_type`` is not a :class:`ProcessManager` subclass or handles no
            event, or ``commands`` is not a :class:`~tactical.CommandBus`; the message
            starts with ``kind``, what was given them.
    """
    candidate: object = manager_type
    if not (isinstance(candidate, type) and issubclass(candidate, ProcessManager)):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"{kind} takes a ProcessManager subclass, got {manager_type!r}")
    if not manager_type.handled_event_types():
        raise TypeError(f"{manager_type.__qualname__} declares no event to handle")
    candidate = commands
    if not isinstance(candidate, CommandBus):  # pyright: ignore[reportUnnecessaryIsInstance]
        raise TypeError(f"{kind} takes a CommandBus to dispatch to, got {commands!r}")


class _Feeding(Generic[M, U]):
    """What the sync and async handlers share: their checks, their subscribing, their flow."""

    _kind: ClassVar[str]
    _entered: ClassVar[str]

    def __init__(
        self, manager_type: type[M], uow: U | Callable[[], U], commands: CommandBus
    ) -> None:
        kind = type(self).__qualname__
        check_feeding(kind, manager_type, commands)
        if hasattr(type(uow), self._entered):  # a unit of work, not its class
            self._uow: Callable[[], U] = lambda: cast("U", uow)
        elif callable(uow):
            # U is a protocol, so pyright's callable() narrowing keeps a "(...) -> object".
            self._uow = uow  # pyright: ignore[reportAttributeAccessIssue]
        else:
            raise TypeError(
                f"{kind} takes {self._kind} or a callable that returns one, got {uow!r}"
            )
        self._type = manager_type
        self._commands = commands

    def __repr__(self) -> str:
        # What the bus's log lines and EventHandlerError call this handler.
        return f"{type(self).__qualname__}({self._type.__qualname__})"

    def subscribe(self, bus: EventBus) -> None:
        """Subscribe this handler to every event type its manager handles on ``bus``."""
        for event_type in self._type.handled_event_types():
            bus.subscribe(event_type, cast("Callable[[DomainEvent], object]", self))


def commands_of(manager: ProcessManager[Any] | None) -> tuple[Command[Any], ...]:
    return () if manager is None else manager.pull_commands()


def dispatching(commands: Sequence[Command[Any]]) -> Flow[Command[Any], None]:
    """Dispatch each of ``commands`` (committed already), in order, whether or not one fails.

    A failing command handler does not keep the commands after it from their handlers: the
    manager remembers its event as handled, so a redelivery would not bring them back. Its
    exception, with a note naming the command, is raised once every command was tried (one
    failure as it is, several as an ``ExceptionGroup``).
    """
    failures: list[Exception] = []
    for command in commands:
        try:
            yield command
        except Exception as failure:
            failure.add_note(
                f"raised by the handler of {type(command).__qualname__} {command.command_id}, "
                "which a process manager asked for after its commit; the other commands "
                "it asked for were dispatched"
            )
            failures.append(failure)
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise ExceptionGroup(
            f"{len(failures)} of {len(commands)} command handlers failed", failures
        )


class ProcessManagerHandler(_Feeding[M, UnitOfWork]):
    """Feeds a :class:`ProcessManager` type the events it handles, one transaction each.

    For each event: in ``uow``, load the manager under the event's key (or create it,
    ``manager_type(key)``, when the event starts a process and none is stored),
    :meth:`~ProcessManager.handle` the event and commit; when the block has ended, dispatch
    the commands the manager asked for through ``commands``, in order. A commit refused
    by optimistic concurrency is retried with :func:`~tactical.retry_on_conflict` (it
    reloads, and finds the event handled if the other writer handled it). Commands are
    dispatched in process after the commit: a crash between the two loses them; for a
    command that must survive one, record an event and let its handler (fed through the
    outbox) dispatch it.

    ``uow`` may be the very unit of work whose commit published the event (handlers run
    once its block has ended). A unit of work serves one block at a time: to feed events
    from several threads at once, pass a callable that returns a new unit of work instead
    (``lambda: SqlAlchemyUnitOfWork(engine)``), called once for each attempt. Only
    tactical's units of work store the manager's timers: through the repository of a unit
    of work of one's own, a manager that scheduled or cancelled one is refused before the
    commit (a ``TypeError``), instead of being stored without them; one that did not is
    stored as that unit of work stores it. :class:`AsyncProcessManagerHandler` is
    the same handler for asyncio code. Fed from a broker, subscribe the manager to the
    inbox consumer instead (:meth:`InboxConsumer.subscribe_process_manager
    <tactical.outbox.InboxConsumer.subscribe_process_manager>`): the same decisions, in
    the inbox's own transaction.

    Args:
        manager_type: The :class:`ProcessManager` subclass to feed.
        uow: A :class:`~tactical.UnitOfWork`, or a callable that returns a new one.
        commands: Where the commands the manager asks for are dispatched.

    Raises:
        TypeError: ``manager_type`` is not a :class:`ProcessManager` subclass or handles no
            event, ``uow`` is neither a unit of work nor callable, or ``commands`` is not a
            :class:`~tactical.CommandBus`.

    .. versionadded:: 0.2.0
    """

    _kind = "a UnitOfWork"
    _entered = "__enter__"

    def __call__(self, event: DomainEvent) -> None:
        """Apply ``event`` to its process and commit, then dispatch the commands asked for.

        Raises:
            TypeError: The manager asked for timers and the unit of work's repository is
                not one of tactical's, which alone store them; nothing was committed.
        """
        commands = retry_on_conflict(lambda: self._apply(event))
        run(dispatching(commands), self._commands.dispatch)

    def _apply(self, event: DomainEvent) -> tuple[Command[Any], ...]:
        uow = self._uow()
        with uow:
            repository = uow.repository(self._type)

            def perform(op: Op) -> object:
                if isinstance(op, Load):
                    return repository.get(op.key)
                if isinstance(op, Add):
                    repository.add(op.manager)
                else:
                    refuse_unstored_timers(self, repository, op.manager)
                    uow.commit()
                return None

            manager = run(applying(self._type, event), perform)
        return commands_of(manager)


class AsyncProcessManagerHandler(_Feeding[M, AsyncUnitOfWork]):
    """:class:`ProcessManagerHandler` for asyncio: an ``async def`` event handler.

    The same decisions, made by the same code (which manager, start or advance, a
    remembered event applied no more, what to dispatch), on an
    :class:`~tactical.AsyncUnitOfWork`: for each event, in ``async with uow:``, await the
    manager's loading, handle the event and await the commit; once the block has ended,
    await :meth:`CommandBus.dispatch_async <tactical.CommandBus.dispatch_async>` for each
    command the manager asked for, in order (so command handlers may be ``async def``). A
    conflict is retried by :func:`~tactical.retry_on_conflict`, pausing with ``await
    asyncio.sleep``. Subscribed to an :class:`~tactical.EventBus`, it runs when an async
    unit of work's block ends (:meth:`EventBus.publish_async
    <tactical.EventBus.publish_async>`); the sync ``publish`` refuses it.

    An async unit of work serves one block at a time: when events may arrive from several
    tasks at once, pass a callable that returns a new unit of work (``lambda:
    AsyncSqlAlchemyUnitOfWork(engine)``), called once for each attempt.

    Args:
        manager_type: The :class:`ProcessManager` subclass to feed.
        uow: An :class:`~tactical.AsyncUnitOfWork`, or a callable that returns a new one.
        commands: Where the commands the manager asks for are dispatched (awaited).

    Raises:
        TypeError: ``manager_type`` is not a :class:`ProcessManager` subclass or handles no
            event, ``uow`` is neither an async unit of work nor callable, or ``commands``
            is not a :class:`~tactical.CommandBus`.

    .. versionadded:: 0.2.0
    """

    _kind = "an AsyncUnitOfWork"
    _entered = "__aenter__"

    async def __call__(self, event: DomainEvent) -> None:
        """Apply ``event`` to its process and commit, then dispatch the commands asked for.

        Raises:
            TypeError: The manager asked for timers and the unit of work's repository is
                not one of tactical's, which alone store them; nothing was committed.
        """
        commands = await retry_on_conflict(self._apply)(event)
        await run_async(dispatching(commands), self._commands.dispatch_async)

    async def _apply(self, event: DomainEvent) -> tuple[Command[Any], ...]:
        uow = self._uow()
        async with uow:
            repository = uow.repository(self._type)

            async def perform(op: Op) -> object:
                if isinstance(op, Load):
                    return await repository.get(op.key)
                if isinstance(op, Add):
                    repository.add(op.manager)
                else:
                    refuse_unstored_timers(self, repository, op.manager)
                    await uow.commit()
                return None

            manager = await run_async(applying(self._type, event), perform)
        return commands_of(manager)


def _started(manager_type: type[M], key: object) -> M:
    try:
        return manager_type(key)
    except TypeError as refused:
        raise TypeError(
            f"cannot start {manager_type.__qualname__} {key!r} with {manager_type.__qualname__}"
            f"({key!r}): give every field but id a default ({refused})"
        ) from refused
