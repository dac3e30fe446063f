"""Commands and the CommandBus: one handler per command type, its result typed.

A command asks for something to be done (``AllocateOrderLine``); an event says it was
(``Allocated``). Where an event goes to any number of handlers, a command has exactly one,
and its caller gets that handler's result back. ``Command[R]`` carries the result type, so
``bus.dispatch(command)`` is ``R`` to a type checker, and registering a handler that
returns something else is a type error.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import field
from inspect import isawaitable
from typing import Any, Generic, Protocol, overload
from uuid import UUID, uuid4

from typing_extensions import TypeVar

from tactical._asyncness import awaited, discard_awaitable, is_async_callable, name_of
from tactical._flow import Flow, run, run_async
from tactical._model import FrozenMeta
from tactical._telemetry import command_span
from tactical._tracing import Trace, current_trace, reset_trace, set_trace

__all__ = ["Command", "CommandBus"]

R = TypeVar("R", default=None)
C = TypeVar("C", bound="Command[Any]")
C_co = TypeVar("C_co", bound="Command[Any]", covariant=True)
T = TypeVar("T")

_Handler = Callable[[Any], object]


class _CommandBase(metaclass=FrozenMeta):
    __slots__ = ()


class Command(_CommandBase, Generic[R]):
    """A request to change the system, named in the imperative (``DecrementLabelStock``).

    A subclass is automatically a frozen, slotted dataclass, as a
    :class:`~tactical.DomainEvent` is. Every command has a keyword-only ``command_id``
    (uuid4 by default), so subclass fields may be positional. The type parameter is what
    its handler returns (``class Allocate(Command[str])`` for a handler that returns a
    batch reference); a bare ``Command`` is ``Command[None]``.

    A command goes to exactly one handler, through a :class:`CommandBus`. Events recorded
    while it is handled carry ``command_id`` as their causation id (see
    :func:`~tactical.current_trace`).

    .. versionadded:: 0.2.0
    """

    command_id: UUID = field(default_factory=uuid4, kw_only=True)

    def __post_init__(self) -> None:
        if type(self) is Command:
            raise TypeError("Command is a base class: subclass it for each kind of command")

    def _command_result(self, result: R, /) -> R:
        """Ties a command class to its handlers' result type for type checkers; never called."""
        return result


class _CommandClass(Protocol[C_co, R]):
    """A command class (``type[C]``) whose handlers return ``R``, to a type checker.

    Matching the class object against this protocol gives both the command type (its
    constructor's result; to pyright, its metaclass's ``__call__``: see ``_FrozenMeta``)
    and the result type (its ``_command_result``) of one argument, so that
    :meth:`CommandBus.register` can check a handler against both.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> C_co: ...

    def _command_result(self, command: Any, result: R, /) -> R: ...


class CommandBus:
    """Sends each command to the one handler registered for its type, and returns its result.

    ``register(Allocate, allocate)`` binds a handler to a command type: exactly one handler
    per type. ``dispatch(command)`` runs it and returns what it returned; to a type checker
    ``dispatch`` of a ``Command[R]`` is ``R``, and a handler whose result is not the
    command's ``R`` is refused at ``register``. A handler's exception propagates as it is
    (nothing is wrapped, logged or retried): a command is a request with one answer, and the
    caller decides what a refusal means.

    A handler is usually an application service: it opens a unit of work, changes one
    aggregate and commits; the events it recorded are published when its block ends.
    Handlers take the command alone; give them their dependencies (a unit of work, a clock)
    with ``functools.partial`` or a closure when you register them.

    A handler may be ``async def`` (decided once, at ``register``): :meth:`dispatch_async`
    awaits it (and calls sync ones); the sync :meth:`dispatch` refuses it before calling
    it, as :meth:`EventBus.publish <tactical.EventBus.publish>` does.

    While a handler runs, events recorded carry the command's ``command_id`` as their
    causation id, and as correlation id the one of the event being handled when the command
    was dispatched from an event handler, else ``command_id``. The bus is thread-safe.

    .. versionadded:: 0.2.0
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Command[Any]], tuple[_Handler, bool]] = {}
        self._lock = threading.Lock()

    @overload
    def register(
        self, command_type: _CommandClass[C, R], handler: Callable[[C], Awaitable[R]]
    ) -> None: ...

    @overload
    def register(self, command_type: _CommandClass[C, R], handler: Callable[[C], R]) -> None: ...

    def register(self, command_type: Any, handler: Callable[[Any], object]) -> None:
        """Make ``handler`` the handler of every command of exactly ``command_type``.

        ``handler`` takes the command and returns the command's result type ``R`` (an
        ``async def`` one: returns it when awaited). A subclass of ``command_type`` is a
        command type of its own, with its own handler.

        Raises:
            TypeError: ``command_type`` is not a :class:`Command` subclass, or ``handler``
                is not callable.
            ValueError: ``command_type`` already has a handler; the message names both.
        """
        candidate: object = command_type
        if not (
            isinstance(candidate, type)
            and issubclass(candidate, Command)
            and candidate is not Command
        ):
            raise TypeError(f"register() takes a Command subclass, got {command_type!r}")
        if not callable(handler):
            raise TypeError(f"handler for {candidate.__qualname__} is not callable: {handler!r}")
        command_class: type[Command[Any]] = candidate  # pyright: ignore[reportUnknownVariableType]
        with self._lock:
            registered = self._handlers.get(command_class)
            if registered is not None:
                raise ValueError(
                    f"{command_class.__qualname__} already has a handler, "
                    f"{name_of(registered[0])}: a command has exactly one, so "
                    f"{name_of(handler)} cannot be registered too"
                )
            self._handlers[command_class] = (handler, is_async_callable(handler))

    def handler_for(self, command_type: type[Command[Any]]) -> Callable[[Any], object] | None:
        """The handler registered for ``command_type``, or None."""
        registered = self._handlers.get(command_type)
        return None if registered is None else registered[0]

    def dispatch(self, command: Command[R]) -> R:
        """Run the handler of ``command`` and return its result.

        Raises:
            LookupError: No handler is registered for the command's type.
            TypeError: ``command`` is not a :class:`Command`, or its handler is
                ``async def`` (use :meth:`dispatch_async`) or returned an awaitable; raised
                before anything is awaited.
            Exception: Whatever the handler raised, as it is.
        """
        handler, is_async = self._registered(command)
        if is_async:
            raise TypeError(
                f"async handler {name_of(handler)} for {type(command).__qualname__} cannot be "
                "run by dispatch() (nothing would await it): await bus.dispatch_async(...)"
            )
        return run(self._handling(command, handler), _refuse_awaitable)

    async def dispatch_async(self, command: Command[R]) -> R:
        """Run the handler of ``command``, awaiting it if it is async, and return its result.

        Raises:
            LookupError: No handler is registered for the command's type.
            TypeError: ``command`` is not a :class:`Command`.
            Exception: Whatever the handler raised, as it is.
        """
        handler, _ = self._registered(command)
        return await run_async(self._handling(command, handler), awaited)

    def _registered(self, command: Command[Any]) -> tuple[_Handler, bool]:
        registered = self._handlers.get(type(command))
        if registered is not None:
            return registered
        candidate: object = command
        if not isinstance(candidate, Command):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"dispatch() takes a Command, got {command!r}")
        name = type(command).__qualname__
        raise LookupError(
            f"no handler is registered for command {name} "
            f"(register one with CommandBus.register({name}, handler))"
        )

    def _handling(self, command: Command[T], handler: _Handler) -> Flow[Awaitable[object], T]:
        """Run ``handler`` in the command's trace; yields what an async handler returned."""
        current = current_trace()
        correlation_id = command.command_id if current is None else current.correlation_id
        token = set_trace(Trace(correlation_id, command.command_id))
        try:
            with command_span(command, handler, correlation_id):
                result: Any = handler(command)
                if isawaitable(result):
                    result = yield result
        finally:
            reset_trace(token)
        return result  # type: ignore[no-any-return]


def _refuse_awaitable(result: Awaitable[object]) -> object:
    """The sync driver of a handling: a handler's awaitable cannot be awaited here."""
    discard_awaitable(result)
    raise TypeError(
        f"command handler returned an awaitable ({type(result).__qualname__}) to dispatch(), "
        "which cannot await it (it was closed): make the handler async def and "
        "await bus.dispatch_async(...), or return the result itself"
    )
