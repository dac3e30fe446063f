"""Units of work: the UnitOfWork protocol and the machinery every tactical one shares.

:class:`TransactionalUnitOfWork` handles the lifecycle, the identity map and change
detection; storage-specific units of work (in memory, SQL) subclass it and implement its
storage hooks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypeVar, overload
from uuid import UUID

from tactical._errors import AggregateNotFound
from tactical._flow import Flow, run_unanswered
from tactical._model import AggregateRoot, DomainEvent
from tactical._query import Query
from tactical._repository import AggregateClass, Repository
from tactical._tracing import Trace, recorded_traces
from tactical._tracking import Change, boundary_violation, changed_since_commit
from tactical._uow_core import MISS, Op, RepositoryBase, UnitOfWorkCore, only_one

__all__ = [
    "Change",
    "TransactionalUnitOfWork",
    "UnitOfWork",
    "boundary_violation",
    "changed_since_commit",
]

A = TypeVar("A", bound=AggregateRoot[Any])
IdT = TypeVar("IdT")


class UnitOfWork(Protocol):
    """One business transaction: load aggregates, change them, commit all or nothing.

    Use it as a context manager; each ``with uow:`` block is one transaction and returns the
    unit of work itself. Leaving the block without :meth:`commit` (or with an exception)
    rolls back everything. A successful commit clears the pending events of every aggregate
    it saved, and when the block ends they are published on its bus in recorded order: the
    transaction is over by then, so a handler may use this unit of work again (its own
    events are queued behind those being delivered).

    .. versionchanged:: 0.2.0
       Events are published when the block ends, no longer inside :meth:`commit`.

    .. versionadded:: 0.1.0
    """

    def __enter__(self) -> Self:
        """Begin a transaction and return the unit of work itself.

        Raises:
            RuntimeError: It is already in a transaction (its ``with`` block has not ended).
        """
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """End the transaction, rolling back whatever was not committed; then publish.

        After a successful commit the events it saved are published once the transaction
        is over, also when the block raised after its commit (committed is committed; the
        block's exception goes on, with a note if handlers failed), though not when it was
        interrupted by a ``BaseException`` that is not an ``Exception`` (``KeyboardInterrupt``).

        Raises:
            EventHandlerError: The block ended without an exception after a successful
                commit, and event handlers failed; the commit stands.
        """
        ...

    def repository(self, aggregate_type: type[A]) -> Repository[A, Any]:
        """The repository of ``aggregate_type`` in the current transaction.

        Raises:
            TypeError: ``aggregate_type`` is not an :class:`~tactical.AggregateRoot` subclass.
            RuntimeError: Not inside a ``with`` block, or the transaction already committed.
        """
        ...

    def commit(self) -> None:
        """Save every change atomically; the events are published when the block ends.

        Raises:
            ConcurrencyError: An aggregate was changed, added or removed by another unit of
                work since it was loaded; nothing was stored.
            RuntimeError: Not in a transaction, or it already committed.
        """
        ...

    def rollback(self) -> None:
        """Discard every change made in this transaction so far.

        Raises:
            RuntimeError: Not inside a ``with`` block.
        """
        ...


class _TrackingRepository(RepositoryBase["TransactionalUnitOfWork", A], Repository[A, Any]):
    __slots__ = ()

    def get(self, aggregate_id: Any, /) -> A | None:
        return self._uow._get(self._type, aggregate_id)  # pyright: ignore[reportPrivateUsage]

    def require(self, aggregate_id: Any, /) -> A:
        aggregate = self._uow._get(self._type, aggregate_id)  # pyright: ignore[reportPrivateUsage]
        if aggregate is None:
            raise AggregateNotFound(self._type, aggregate_id)
        return aggregate

    def find(self, query: Query[A], /) -> list[A]:
        held = self._uow._finding(self._type, query)  # pyright: ignore[reportPrivateUsage]
        stored = self._uow._find(query, held)  # pyright: ignore[reportPrivateUsage]
        return self._uow._found(query, stored)  # pyright: ignore[reportPrivateUsage]

    def find_one(self, query: Query[A], /) -> A | None:
        return only_one(query, self.find(query))


class TransactionalUnitOfWork(UnitOfWorkCore, ABC):
    """The machinery every tactical unit of work shares; storage-specific parts are hooks.

    Handles the ``with`` lifecycle, the identity map, change detection, version bookkeeping
    and publishing when a committed block ends. A subclass implements :meth:`_begin`, :meth:`_load`,
    :meth:`_store` and :meth:`_rollback` (and optionally :meth:`_end`). The decisions are
    :class:`~tactical._uow_core.UnitOfWorkCore`'s, shared with the async units of work;
    this class only carries out its operations by calling the hooks.

    A unit of work object is reusable (one transaction per ``with`` block) but is not meant
    to be shared between threads: give each thread its own, over a shared store or engine.

    .. versionadded:: 0.1.0
    """

    _repository_class: ClassVar[type[RepositoryBase[Any, Any]]] = _TrackingRepository

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        if self._active:
            raise self._reentered()
        self._begin()
        self._active, self._finished = True, False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Driven here, not through _run: its warnings count the frames up to the caller.
        run_unanswered(self._end_flow(exc), self._call_hook)

    def _run(self, flow: Flow[Op, None]) -> None:
        """Carry out ``flow``'s operations by calling the hooks they name."""
        run_unanswered(flow, self._call_hook)

    def _call_hook(self, op: Op) -> None:
        getattr(self, op[0])(*op[1:])

    # -- repositories ------------------------------------------------------------------------

    @overload
    def repository(self, aggregate_type: AggregateClass[A, IdT]) -> Repository[A, IdT]: ...
    @overload
    def repository(self, aggregate_type: type[A]) -> Repository[A, Any]: ...
    def repository(self, aggregate_type: Any) -> Repository[Any, Any]:
        """The repository of ``aggregate_type`` in the current transaction.

        Typed with the aggregate's id type: ``repository(Policy)`` of a
        ``Policy(AggregateRoot[UUID])`` is a ``Repository[Policy, UUID]``, so a type checker
        refuses ``get(42)`` (``.. versionchanged:: 0.2.0``).

        Raises:
            TypeError: ``aggregate_type`` is not an :class:`~tactical.AggregateRoot` subclass.
            RuntimeError: Not inside a ``with`` block, or the transaction already committed.
        """
        return self._repository_for(aggregate_type)  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

    def _get(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        known = self._known(aggregate_type, aggregate_id)
        if known is not MISS:
            return known
        return self._loaded(aggregate_type, aggregate_id, self._load(aggregate_type, aggregate_id))

    # -- commit ------------------------------------------------------------------------------

    def commit(self) -> None:
        """Save every change atomically; its events are published when the block ends.

        An aggregate is written when it was added or removed, when its state differs from
        what was loaded (child entities included), or when it has pending events; each write
        checks the version loaded and bumps it by one. Loaded, unchanged aggregates are not
        written. Either every write succeeds or none is stored. The events of the saved
        aggregates are cleared from them and published, in recorded order, when the
        ``with`` block ends (see :class:`~tactical.UnitOfWork`), where a failing handler raises
        :class:`~tactical.EventHandlerError`.

        Raises:
            ConcurrencyError: An aggregate was changed, added or removed by another unit of
                work since it was loaded; nothing of this commit is stored and no event is
                published.
            ValueError: An aggregate's id was changed after it was loaded or added (it
                would overwrite another aggregate); nothing is stored.
            TransactionBoundaryError: The transaction changed more than one aggregate and
                the unit of work was not created with ``allow_multiple_aggregates=True``;
                nothing is stored and the transaction is over.
            TypeError: An event to publish has an ``async def`` handler, which a sync commit
                cannot await; nothing is stored and the transaction is over.
            RuntimeError: Not in a transaction, or it already committed.
        """
        self._run(self._commit_flow())

    def _publish(self, events: Sequence[DomainEvent], traces: Mapping[UUID, Trace]) -> None:
        if traces:
            with recorded_traces(traces):
                self._bus.publish_all(events)
        else:
            self._bus.publish_all(events)

    def rollback(self) -> None:
        """Discard every change made in this transaction so far; the block stays usable.

        Aggregates obtained before are forgotten (load them again) and their pending events
        are cleared: what they describe did not happen. After :meth:`commit` it does nothing.

        Raises:
            RuntimeError: Not inside a ``with`` block.
        """
        self._run(self._rollback_flow())

    # -- storage hooks ----------------------------------------------------------------------

    @abstractmethod
    def _begin(self) -> None:
        """Start a storage transaction."""

    @abstractmethod
    def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        """Read one aggregate (its ``version`` set to the stored version), or None."""

    @abstractmethod
    def _store(self, changes: Sequence[Change]) -> None:
        """Write ``changes`` atomically and end the storage transaction.

        Must raise :class:`ConcurrencyError` (having stored nothing) when a stored version is
        not the expected one, an inserted aggregate exists, or a deleted one is gone. The
        events of each change are in recorded order; across changes, use
        ``recorded_in_order``-style sequencing if the store keeps them (an outbox). When it
        raises, the unit of work puts back the versions the aggregates had before.
        """

    def _find(self, query: Query[A], held: frozenset[object]) -> Sequence[A]:
        """Read the stored aggregates ``query`` matches (versions set to the stored ones).

        ``held`` are ids the transaction already holds: their stored rows may be left out
        (the unit of work judges those by their state in the transaction). Evaluate the
        query as :meth:`~tactical.Query.matches` defines it on the stored JSON state.
        Finders are optional: without this hook, ``find`` raises ``NotImplementedError``.
        """
        raise self._no_finders()

    @abstractmethod
    def _rollback(self) -> None:
        """Abandon the storage transaction."""

    def _end(self) -> None:
        """Release resources after a ``with`` block."""
