"""The Repository protocols: a collection-like view of one aggregate type, sync or async."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from tactical._model import AggregateRoot
from tactical._query import Query

__all__ = ["AggregateClass", "AsyncRepository", "Repository"]

A = TypeVar("A", bound=AggregateRoot[Any])
A_co = TypeVar("A_co", covariant=True)
IdT_co = TypeVar("IdT_co", covariant=True)
IdT_contra = TypeVar("IdT_contra", contravariant=True)


class AggregateClass(Protocol[A_co, IdT_co]):
    """An aggregate class, to a type checker: ``type[A]`` where ``A`` is ``AggregateRoot[IdT]``.

    A ``type[Policy]`` is an ``AggregateClass[Policy, UUID]`` when ``Policy`` subclasses
    ``AggregateRoot[UUID]``: a unit of work's ``repository(Policy)`` matches it to learn the
    id type, which ``type[A]`` alone cannot tell. It exists for type checkers only.
    """

    def _tactical_aggregate_class_(self) -> tuple[A_co, IdT_co]: ...


class Repository(Protocol[A, IdT_contra]):
    """The aggregates of one type, as a collection inside a unit of work.

    Changes to aggregates obtained from or added to a repository are saved when their unit
    of work commits; there is no ``save``. Within one transaction, ``get`` returns the same
    object for the same id (an identity map).

    A typed repository for your own unit of work::

        class PolicyUnitOfWork(InMemoryUnitOfWork):
            @property
            def policies(self) -> Repository[InsurancePolicy, UUID]:
                return self.repository(InsurancePolicy)

    .. versionadded:: 0.1.0
    """

    def get(self, aggregate_id: IdT_contra, /) -> A | None:
        """The aggregate with this id, or None if there is none (or it was removed).

        Raises:
            TypeError: ``aggregate_id`` is not of the aggregate's declared id type (a
                ``str`` for a ``UUID`` id, say).
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    def require(self, aggregate_id: IdT_contra, /) -> A:
        """The aggregate with this id.

        Raises:
            AggregateNotFound: There is none; the error names the type and the id.
            TypeError: ``aggregate_id`` is not of the aggregate's declared id type.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    def find(self, query: Query[A], /) -> list[A]:
        """The aggregates ``query`` finds, as the transaction sees them, tracked.

        Stored aggregates that match, less those removed in this unit of work, with those
        added or changed in it judged by their state now; each is the transaction's
        object for its id (``get`` returns the same one), and changes to it are saved at
        commit. Sorted by the query's ``order_by``, then by id.

        .. versionadded:: 0.2.0

        Raises:
            TypeError: ``query`` is not a :class:`~tactical.Query` of this repository's
                aggregate type.
            NotImplementedError: The unit of work's storage has no finders (a custom
                ``TransactionalUnitOfWork`` without a ``_find`` hook).
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    def find_one(self, query: Query[A], /) -> A | None:
        """The one aggregate ``query`` finds (as :meth:`find`), or None if there is none.

        .. versionadded:: 0.2.0

        Raises:
            LookupError: It finds more than one; the error names the query and the ids.
            TypeError: ``query`` is not a :class:`~tactical.Query` of this repository's
                aggregate type.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    def add(self, aggregate: A, /) -> None:
        """Store ``aggregate`` when the unit of work commits (a new one is inserted).

        An aggregate with a version above 0 (saved before, by an earlier unit of work) is
        written back under a version check instead.

        Raises:
            TypeError: ``aggregate`` is not of this repository's type, or its id is not of
                the declared id type.
            ValueError: Another instance with this id is already in the unit of work, or
                one with this id was removed in it (add that instance back instead).
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    def remove(self, aggregate: A, /) -> None:
        """Delete ``aggregate`` when the unit of work commits (version-checked).

        Raises:
            TypeError: ``aggregate`` is not of this repository's type, or its id is not of
                the declared id type.
            ValueError: The unit of work holds another instance for this id.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...


class AsyncRepository(Protocol[A, IdT_contra]):
    """The aggregates of one type inside an :class:`~tactical.AsyncUnitOfWork`.

    :class:`Repository` for asyncio code, with the same guarantees (an identity map per
    transaction, changes saved when the unit of work commits): loading is awaited,
    ``add()`` and ``remove()`` do no I/O and are plain calls::

        async with uow:
            policy = await uow.repository(InsurancePolicy).require(policy_id)
            policy.suspend()
            await uow.commit()

    .. versionadded:: 0.2.0
    """

    async def get(self, aggregate_id: IdT_contra, /) -> A | None:
        """The aggregate with this id, or None if there is none (or it was removed).

        Raises:
            TypeError: ``aggregate_id`` is not of the aggregate's declared id type.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    async def require(self, aggregate_id: IdT_contra, /) -> A:
        """The aggregate with this id.

        Raises:
            AggregateNotFound: There is none; the error names the type and the id.
            TypeError: ``aggregate_id`` is not of the aggregate's declared id type.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    async def find(self, query: Query[A], /) -> list[A]:
        """The aggregates ``query`` finds, tracked (as :meth:`Repository.find`).

        .. versionadded:: 0.2.0

        Raises:
            TypeError: ``query`` is not a :class:`~tactical.Query` of this repository's
                aggregate type.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    async def find_one(self, query: Query[A], /) -> A | None:
        """The one aggregate ``query`` finds, or None (as :meth:`Repository.find_one`).

        .. versionadded:: 0.2.0

        Raises:
            LookupError: It finds more than one; the error names the query and the ids.
            TypeError: ``query`` is not a :class:`~tactical.Query` of this repository's
                aggregate type.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    def add(self, aggregate: A, /) -> None:
        """Store ``aggregate`` when the unit of work commits (as :meth:`Repository.add`).

        Raises:
            TypeError: ``aggregate`` is not of this repository's type, or its id is not of
                the declared id type.
            ValueError: Another instance with this id is already in the unit of work, or
                one with this id was removed in it.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...

    def remove(self, aggregate: A, /) -> None:
        """Delete ``aggregate`` when the unit of work commits (version-checked).

        Raises:
            TypeError: ``aggregate`` is not of this repository's type.
            ValueError: The unit of work holds another instance for this id.
            RuntimeError: The unit of work is not in a transaction.
        """
        ...
