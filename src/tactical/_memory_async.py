"""The async in-memory unit of work: InMemoryStore's semantics for asyncio code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from tactical._memory import InMemoryStorage
from tactical._model import AggregateRoot
from tactical._query import Query
from tactical._tracking import Change
from tactical._uow_async import AsyncTransactionalUnitOfWork

__all__ = ["AsyncInMemoryUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])


class AsyncInMemoryUnitOfWork(InMemoryStorage, AsyncTransactionalUnitOfWork):
    """An :class:`~tactical.AsyncUnitOfWork` over an :class:`InMemoryStore`.

    :class:`InMemoryUnitOfWork` for asyncio code (tests of async services, prototypes):
    the same store, the same transactional semantics. A sync and an async unit of work
    given one store see each other's commits, as a sync worker and an async web app on one
    database would. Optimistic concurrency works as in SQL: a stale write raises
    :class:`~tactical.ConcurrencyError` at commit and nothing of that commit is stored.

    Args:
        bus: Where committed events are published; a new :class:`EventBus` if omitted.
        store: The committed state to work on; a new, empty one if omitted.
        allow_multiple_aggregates: Let one transaction change several aggregates; by
            default :meth:`~tactical.AsyncUnitOfWork.commit` refuses that with
            :class:`~tactical.TransactionBoundaryError`.
        codec: How aggregates and events become JSON, deciding at commit what can be
            stored, as for :class:`InMemoryUnitOfWork`; a shared default
            :class:`~tactical.JsonCodec` if omitted.

    Raises:
        TypeError: ``bus`` is not an :class:`EventBus` (a store passed positionally, say),
            ``store`` is not an :class:`InMemoryStore` or ``codec`` not a
            :class:`~tactical.JsonCodec`.

    .. versionadded:: 0.2.0
    """

    async def _begin(self) -> None:
        pass

    async def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        return self._read(aggregate_type, aggregate_id)

    async def _find(self, query: Query[A], held: frozenset[object]) -> list[A]:
        return self._select(query, held)

    async def _store(self, changes: Sequence[Change]) -> None:
        self._write(changes)

    async def _rollback(self) -> None:
        pass
