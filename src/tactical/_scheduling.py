"""The unit-of-work protocols with durable timers: what a service that schedules is typed against."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from tactical._model import DomainEvent
from tactical._uow import UnitOfWork
from tactical._uow_async import AsyncUnitOfWork

__all__ = ["AsyncSchedulingUnitOfWork", "SchedulingUnitOfWork"]


class SchedulingUnitOfWork(UnitOfWork, Protocol):
    """A :class:`~tactical.UnitOfWork` that also schedules and cancels durable timers.

    tactical's units of work implement it (:class:`~tactical.InMemoryUnitOfWork`,
    :class:`~tactical.sqlalchemy.SqlAlchemyUnitOfWork`); type a service that schedules
    against it, and one that does not against :class:`~tactical.UnitOfWork`.

    .. versionadded:: 0.2.0
    """

    def schedule(self, message: DomainEvent, *, at: datetime, key: str | None = None) -> str:
        """Schedule ``message`` for ``at`` under ``key``, stored by the commit; returns the key."""
        ...

    def cancel(self, key: str) -> None:
        """Cancel the timer ``key`` when the transaction commits."""
        ...


class AsyncSchedulingUnitOfWork(AsyncUnitOfWork, Protocol):
    """An :class:`~tactical.AsyncUnitOfWork` that also schedules and cancels durable timers.

    ``schedule`` and ``cancel`` are plain calls (no I/O until the commit), as on
    :class:`SchedulingUnitOfWork`. :class:`~tactical.AsyncInMemoryUnitOfWork` and
    :class:`~tactical.sqlalchemy.AsyncSqlAlchemyUnitOfWork` implement it.

    .. versionadded:: 0.2.0
    """

    def schedule(self, message: DomainEvent, *, at: datetime, key: str | None = None) -> str:
        """Schedule ``message`` for ``at`` under ``key``, stored by the commit; returns the key."""
        ...

    def cancel(self, key: str) -> None:
        """Cancel the timer ``key`` when the transaction commits."""
        ...
