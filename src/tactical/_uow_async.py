"""Async units of work: the AsyncUnitOfWork protocol and the base every async one shares.

:class:`AsyncTransactionalUnitOfWork` is :class:`~tactical._uow.TransactionalUnitOfWork`
for asyncio: the same core (:class:`~tactical._uow_core.UnitOfWorkCore`) makes every
decision, and this class awaits its storage hooks where the sync one calls them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar, overload
from uuid import UUID

from tactical._errors import AggregateNotFound
from tactical._flow import run_async
from tactical._model import AggregateRoot, DomainEvent
from tactical._query import Query
from tactical._repository import AggregateClass, AsyncRepository
from tactical._tracing import Trace, recorded_traces
from tactical._tracking import Change
from tactical._uow_core import MISS, Op, RepositoryBase, UnitOfWorkCore, only_one

__all__ = ["AsyncTransactionalUnitOfWork", "AsyncUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])
IdT = TypeVar("IdT")


class AsyncUnitOfWork(Protocol):
    """One business transaction in asyncio code: load, change, commit all or nothing.

    The async twin of :class:`~tactical.UnitOfWork`, with the same guarantees: use it as
    ``async with uow:``, each block one transaction; leaving the block without
    :meth:`commit` (or with an exception, :class:`asyncio.CancelledError` included) rolls
    back everything. Loading is awaited (``await uow.repository(A).get(id)``); ``add()``
    and ``remove()`` do no I/O and are plain calls. The events a successful commit saved are
    published on its bus in recorded order when the block ends, ``async def`` handlers
    awaited: a handler may use this unit of work again.

    .. versionchanged:: 0.2.0
       Events are published when the block ends, no longer inside :meth:`commit`.

    .. versionadded:: 0.2.0
    """

    async def __aenter__(self) -> Self:
        """Begin a transaction and return the unit of work itself.

        Raises:
            RuntimeError: It is already in a transaction (its block has not ended).
        """
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """As :meth:`tactical.UnitOfWork.__exit__`: roll back what was not committed, publish.

        A cancellation (``asyncio.CancelledError``)
        that ends the block publishes nothing.

        Raises:
            EventHandlerError: The block ended without an exception after a successful
                commit, and event handlers failed; the commit stands.
        """
        ...

    def repository(self, aggregate_type: type[A]) -> AsyncRepository[A, Any]:
        """The repository of ``aggregate_type`` in the current transaction.

        Raises:
            TypeError: ``aggregate_type`` is not an :class:`~tactical.AggregateRoot` subclass.
            RuntimeError: Not inside an ``async with`` block, or the transaction already
                committed.
        """
        ...

    async def commit(self) -> None:
        """Save every change atomically, as :meth:`tactical.UnitOfWork.commit`.

        The events are published when the block ends.

        Raises:
            ConcurrencyError: Another unit of work changed, added or removed an aggregate
                since it was loaded; nothing was stored.
            RuntimeError: Not in a transaction, or it already committed.
        """
        ...

    async def rollback(self) -> None:
        """Discard every change made in this transaction so far.

        Raises:
            RuntimeError: Not inside an ``async with`` block.
        """
        ...


class _AsyncTrackingRepository(
    RepositoryBase["AsyncTransactionalUnitOfWork", A], AsyncRepository[A, Any]
):
    __slots__ = ()

    async def get(self, aggregate_id: Any, /) -> A | None:
        return await self._uow._get(self._type, aggregate_id)  # pyright: ignore[reportPrivateUsage]

    async def require(self, aggregate_id: Any, /) -> A:
        aggregate = await self._uow._get(self._type, aggregate_id)  # pyright: ignore[reportPrivateUsage]
        if aggregate is None:
            raise AggregateNotFound(self._type, aggregate_id)
        return aggregate

    async def find(self, query: Query[A], /) -> list[A]:
        held = self._uow._finding(self._type, query)  # pyright: ignore[reportPrivateUsage]
        stored = await self._uow._find(query, held)  # pyright: ignore[reportPrivateUsage]
        return self._uow._found(query, stored)  # pyright: ignore[reportPrivateUsage]

    async def find_one(self, query: Query[A], /) -> A | None:
        return only_one(query, await self.find(query))


class AsyncTransactionalUnitOfWork(UnitOfWorkCore, ABC):
    """The machinery every tactical async unit of work shares; storage parts are hooks.

    The async counterpart of ``TransactionalUnitOfWork``: the same lifecycle, identity
    map, change detection, version bookkeeping and publication after a committed block (the decisions
    are shared, not copied). A subclass implements the async hooks :meth:`_begin`,
    :meth:`_load`, :meth:`_store` and :meth:`_rollback` (and optionally :meth:`_end`).

    Cancellation: an :class:`asyncio.CancelledError` (a timeout, say) raised at any await
    of a block or a commit is handled like any other exception: the unit of work rolls
    back and ends its storage transaction on the way out, and a store that failed leaves
    the aggregates' versions as they were.

    A unit of work object is reusable (one transaction per ``async with`` block) but is not
    meant to be shared between concurrent tasks: give each task its own.

    .. versionadded:: 0.2.0
    """

    _repository_class: ClassVar[type[RepositoryBase[Any, Any]]] = _AsyncTrackingRepository
    _awaits_handlers: ClassVar[bool] = True

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._active:
            raise self._reentered()
        await self._begin()
        self._active, self._finished = True, False
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await run_async(self._end_flow(exc), self._perform)

    def _perform(self, op: Op) -> Awaitable[object]:
        # The hook's own awaitable, not a coroutine awaiting it: one level less for every
        # round trip of the hook to suspend and resume through.
        awaitable: Awaitable[object] = getattr(self, op[0])(*op[1:])
        return awaitable

    # -- repositories ------------------------------------------------------------------------

    @overload
    def repository(self, aggregate_type: AggregateClass[A, IdT]) -> AsyncRepository[A, IdT]: ...
    @overload
    def repository(self, aggregate_type: type[A]) -> AsyncRepository[A, Any]: ...
    def repository(self, aggregate_type: Any) -> AsyncRepository[Any, Any]:
        """As :meth:`tactical.InMemoryUnitOfWork.repository`, an :class:`~tactical.AsyncRepository`.

        ``repository(Policy)`` of a ``Policy(AggregateRoot[UUID])`` is an
        ``AsyncRepository[Policy, UUID]``.

        Raises:
            TypeError: ``aggregate_type`` is not an :class:`~tactical.AggregateRoot` subclass.
            RuntimeError: Not inside an ``async with`` block, or the transaction already
                committed.
        """
        return self._repository_for(aggregate_type)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

    async def _get(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        known = self._known(aggregate_type, aggregate_id)
        if known is not MISS:
            return known
        loaded = await self._load(aggregate_type, aggregate_id)
        return self._loaded(aggregate_type, aggregate_id, loaded)

    # -- commit ------------------------------------------------------------------------------

    async def commit(self) -> None:
        """Save every change atomically; its events are published when the block ends.

        The same rules as :meth:`tactical.UnitOfWork.commit`: what is written, the version
        checks, the one-aggregate rule, publication at the end of a committed block only.

        Raises:
            ConcurrencyError: Another unit of work changed, added or removed an aggregate
                since it was loaded; nothing of this commit is stored, no event published.
            ValueError: An aggregate's id was changed after it was loaded or added;
                nothing is stored.
            TransactionBoundaryError: More than one aggregate changed, and
                ``allow_multiple_aggregates`` is not set; nothing is stored, the
                transaction is over.
            RuntimeError: Not in a transaction, or it already committed.
        """
        await run_async(self._commit_flow(), self._perform)

    async def _publish(self, events: Sequence[DomainEvent], traces: Mapping[UUID, Trace]) -> None:
        with recorded_traces(traces):
            await self._bus.publish_all_async(events)

    async def rollback(self) -> None:
        """Discard every change made in this transaction so far; the block stays usable.

        Aggregates obtained before are forgotten (load them again) and their pending events
        are cleared. After :meth:`commit` it does nothing.

        Raises:
            RuntimeError: Not inside an ``async with`` block.
        """
        await run_async(self._rollback_flow(), self._perform)

    # -- storage hooks ----------------------------------------------------------------------

    # Each hook returns what the unit of work awaits: an ``async def``, or a plain method
    # returning the awaitable of the work it starts (one coroutine less to resume at each
    # of its round trips).

    @abstractmethod
    def _begin(self) -> Awaitable[None]:
        """Start a storage transaction."""

    @abstractmethod
    def _load(self, aggregate_type: type[A], aggregate_id: object) -> Awaitable[A | None]:
        """Read one aggregate (its ``version`` set to the stored version), or None."""

    @abstractmethod
    def _store(self, changes: Sequence[Change]) -> Awaitable[None]:
        """Write ``changes`` atomically and end the storage transaction.

        The contract of the sync ``_store``: raise :class:`ConcurrencyError` having stored
        nothing on a version mismatch. A cancellation while it runs must leave either
        everything stored or nothing.
        """

    def _find(self, query: Query[A], held: frozenset[object]) -> Awaitable[Sequence[A]]:
        """Read the stored aggregates ``query`` matches: the contract of the sync ``_find``.

        Finders are optional: without this hook, ``find`` raises ``NotImplementedError``.
        """
        raise self._no_finders()

    @abstractmethod
    def _rollback(self) -> Awaitable[None]:
        """Abandon the storage transaction."""

    def _end(self) -> Awaitable[None]:
        """Release resources after an ``async with`` block."""
        return _nothing_to_release()


async def _nothing_to_release() -> None:
    """What ending a block awaits when the storage has nothing to release."""
