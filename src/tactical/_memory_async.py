"""The async in-memory unit of work: InMemoryStore's semantics for asyncio code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from tactical._bus import EventBus
from tactical._codec import JsonCodec
from tactical._memory import InMemoryStore, InMemoryUnitOfWork
from tactical._model import AggregateRoot
from tactical._query import Query
from tactical._tracking import Change
from tactical._uow_async import AsyncTransactionalUnitOfWork

__all__ = ["AsyncInMemoryUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])


class AsyncInMemoryUnitOfWork(AsyncTransactionalUnitOfWork):
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

    def __init__(
        self,
        bus: EventBus | None = None,
        *,
        store: InMemoryStore | None = None,
        allow_multiple_aggregates: bool = False,
        codec: JsonCodec | None = None,
    ) -> None:
        super().__init__(bus, allow_multiple_aggregates=allow_multiple_aggregates)
        given: object = InMemoryStore() if store is None else store
        if not isinstance(given, InMemoryStore):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"{type(self).__name__}'s store must be an InMemoryStore or None, "
                f"got {type(given).__qualname__}"
            )
        # In-memory storage is written once: the sync unit of work's hooks do the work (no
        # I/O to await), this one only lends them its transactions.
        self._storage = InMemoryUnitOfWork(store=given, codec=codec)

    @property
    def store(self) -> InMemoryStore:
        """The committed state this unit of work reads and writes."""
        return self._storage.store

    @property
    def codec(self) -> JsonCodec:
        """The codec that decides what can be stored, and rebuilds what is read."""
        return self._storage.codec

    async def _begin(self) -> None:
        self._storage._begin()  # pyright: ignore[reportPrivateUsage]

    async def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        return self._storage._load(aggregate_type, aggregate_id)  # pyright: ignore[reportPrivateUsage]

    async def _find(self, query: Query[A], held: frozenset[object]) -> list[A]:
        return self._storage._find(query, held)  # pyright: ignore[reportPrivateUsage]

    async def _store(self, changes: Sequence[Change]) -> None:
        storage = self._storage
        storage.store._apply(changes, storage.codec, self._timer_writes())  # pyright: ignore[reportPrivateUsage]

    async def _rollback(self) -> None:
        self._storage._rollback()  # pyright: ignore[reportPrivateUsage]

    async def _end(self) -> None:
        self._storage._end()  # pyright: ignore[reportPrivateUsage]
