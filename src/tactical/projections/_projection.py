"""Projection and AsyncProjection: a read model's name, its event handlers and its clear hook."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeAlias, TypeVar

import sqlalchemy as sa
from tactical._model import DomainEvent

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["AsyncProjection", "Projection", "ProjectionError"]

E = TypeVar("E", bound=DomainEvent)
H = TypeVar("H")

_Clear = TypeVar("_Clear")

SyncHandler: TypeAlias = Callable[[E, sa.Connection], None]
AsyncHandler: TypeAlias = Callable[[E, "AsyncConnection"], Awaitable[None]]


class ProjectionError(RuntimeError):
    """A projection's handler failed on an event; the projection stays before that event.

    The events before it in the batch were applied and their checkpoint stored; the failing
    one was not, and no later one is: a projection never skips an event, since a read model
    that missed one is wrong without anyone knowing. The runner tries the event again (with
    backoff, in :meth:`ProjectionRunner.run`) until the handler succeeds: fix the handler
    (deploy) or the data it trips on.

    Attributes:
        projection: The projection's name.
        position: The outbox position of the event it failed on.
        event_type: That event's stored type name.

    .. versionadded:: 0.2.0
    """

    def __init__(self, projection: str, position: int, event_type: str, cause: BaseException):
        self.projection = projection
        self.position = position
        self.event_type = event_type
        reason = str(cause).splitlines()[0] if str(cause) else ""
        super().__init__(
            f"projection {projection!r} failed on the event at outbox position {position} "
            f"({event_type}): {type(cause).__name__}: {reason}; it stays before that event "
            "until its handler succeeds"
        )


class _Projection(Generic[H, _Clear]):
    """What both kinds share: the name, the handlers by event class, the clear hook."""

    __slots__ = ("_clear", "_handlers", "name")

    def __init__(self, name: str, *, clear: _Clear | None = None) -> None:
        candidate: object = name
        if not isinstance(candidate, str) or not candidate or len(candidate) > 255:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"a projection's name must be 1 to 255 characters, got {name!r}")
        self.name: str = name
        """The projection's name, under which the runner stores its checkpoint."""
        self._clear = clear
        self._handlers: dict[type[DomainEvent], H] = {}

    def _register(self, event_type: type[DomainEvent], handler: H) -> None:
        candidate: object = event_type
        if not (isinstance(candidate, type) and issubclass(candidate, DomainEvent)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"projection {self.name!r}: {event_type!r} is not a DomainEvent class")
        if event_type in self._handlers:
            raise ValueError(
                f"projection {self.name!r} already has a handler for {event_type.__qualname__}"
            )
        self._handlers[event_type] = handler

    def handler_for(self, event_type: type) -> H | None:
        """The handler of ``event_type`` or of its nearest base class; None if it has none."""
        for cls in event_type.__mro__:
            handler = self._handlers.get(cls)
            if handler is not None:
                return handler
        return None

    def clear_hook(self) -> _Clear:
        """The clear hook, for a rebuild.

        Raises:
            ValueError: The projection has none.
        """
        if self._clear is None:
            raise ValueError(
                f"projection {self.name!r} has no clear hook: rebuilding it would apply every "
                "event again on top of its read model; pass clear= when creating it"
            )
        return self._clear

    def __repr__(self) -> str:
        handled = ", ".join(cls.__qualname__ for cls in self._handlers)
        return f"{type(self).__name__}({self.name!r}, handles=[{handled}])"


class Projection(_Projection[SyncHandler[DomainEvent], Callable[[sa.Connection], None]]):
    """A read model kept up to date from the outbox by a :class:`ProjectionRunner`.

    Its tables are yours: each handler gets the event and the SQLAlchemy ``Connection`` of
    the runner's transaction, in which the runner also stores the projection's checkpoint, so
    the read model and its checkpoint always agree (a crash loses both or neither). Handlers
    receive the events they are registered for (and their subclasses), each exactly once
    and in the order their aggregate committed them; events they are not registered for are
    passed over (the checkpoint still moves past them).

    Example::

        summary = Projection("order_summary", clear=clear_summary)

        @summary.on(OrderPlaced)
        def placed(event: OrderPlaced, connection: sa.Connection) -> None:
            connection.execute(orders_view.insert().values(id=event.order_id, total=0))

    Args:
        name: Names the projection's checkpoint: one name per read model, kept across
            deployments (a new name starts from the beginning of the outbox).
        clear: Empties the read model for :meth:`ProjectionRunner.rebuild`, in the rebuild's
            transaction.

    Raises:
        ValueError: ``name`` is empty or longer than 255 characters.

    .. versionadded:: 0.2.0
    """

    __slots__ = ()

    def __init__(self, name: str, *, clear: Callable[[sa.Connection], None] | None = None) -> None:
        super().__init__(name, clear=clear)

    def on(
        self, event_type: type[E]
    ) -> Callable[[Callable[[E, sa.Connection], None]], Callable[[E, sa.Connection], None]]:
        """Register the decorated function as the handler of ``event_type`` (and subclasses).

        A subclass with a handler of its own gets that one instead.

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` class.
            ValueError: ``event_type`` already has a handler in this projection.
        """

        def register(
            handler: Callable[[E, sa.Connection], None],
        ) -> Callable[[E, sa.Connection], None]:
            self._register(event_type, handler)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]  (looked up by the event's class)
            return handler

        return register


class AsyncProjection(
    _Projection[AsyncHandler[DomainEvent], Callable[["AsyncConnection"], Awaitable[None]]]
):
    """:class:`Projection` for an :class:`AsyncProjectionRunner`: handlers are coroutines.

    Each handler is awaited with the event and the ``AsyncConnection`` of the runner's
    transaction; the clear hook is awaited the same way. Everything else is as for
    :class:`Projection`.

    Args:
        name: Names the projection's checkpoint.
        clear: Empties the read model for :meth:`AsyncProjectionRunner.rebuild`.

    Raises:
        ValueError: ``name`` is empty or longer than 255 characters.

    .. versionadded:: 0.2.0
    """

    __slots__ = ()

    def __init__(
        self,
        name: str,
        *,
        clear: Callable[[AsyncConnection], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(name, clear=clear)

    def on(
        self, event_type: type[E]
    ) -> Callable[
        [Callable[[E, AsyncConnection], Awaitable[None]]],
        Callable[[E, AsyncConnection], Awaitable[None]],
    ]:
        """Register the decorated coroutine function as the handler of ``event_type``.

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` class.
            ValueError: ``event_type`` already has a handler in this projection.
        """

        def register(
            handler: Callable[[E, AsyncConnection], Awaitable[None]],
        ) -> Callable[[E, AsyncConnection], Awaitable[None]]:
            self._register(event_type, handler)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]  (looked up by the event's class)
            return handler

        return register
