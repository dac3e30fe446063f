"""The in-memory store and unit of work: real transactional semantics, no database."""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any, TypeVar, cast

from tactical._bus import EventBus
from tactical._errors import ConcurrencyError
from tactical._model import AggregateRoot
from tactical._uow import Change, TransactionalUnitOfWork

__all__ = ["InMemoryStore", "InMemoryUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])


class InMemoryStore:
    """Committed aggregates held in memory, shared by the units of work given it.

    Each unit of work works on private copies, so a store behaves like a database that
    several connections use: uncommitted changes are invisible to the others, and a commit
    applies all of its writes, or none, under one lock.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[type[AggregateRoot[Any]], object], AggregateRoot[Any]] = {}

    def __len__(self) -> int:
        """The number of aggregates stored."""
        return len(self._rows)

    def _read(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        with self._lock:
            row = self._rows.get((aggregate_type, aggregate_id))
        return None if row is None else cast("A", copy.deepcopy(row))

    def _apply(self, changes: Sequence[Change]) -> None:
        with self._lock:
            for change in changes:
                key = (change.aggregate_type, change.aggregate.id)
                row = self._rows.get(key)
                found = None if row is None else row.version
                if found != change.expected_version:
                    raise ConcurrencyError.stale(
                        change.aggregate_type,
                        change.aggregate.id,
                        expected_version=change.expected_version or 0,
                        actual_version=found,
                    )
            for change in changes:
                key = (change.aggregate_type, change.aggregate.id)
                if change.new_version is None:
                    del self._rows[key]
                else:
                    self._rows[key] = _stored_copy(change.aggregate, change.new_version)


def _stored_copy(aggregate: AggregateRoot[Any], version: int) -> AggregateRoot[Any]:
    # The pending events are not state: the memo hands the copy an empty list in place of
    # theirs instead of deep-copying every event (which was most of the cost of a commit).
    pending = aggregate._events()  # pyright: ignore[reportPrivateUsage]
    stored = copy.deepcopy(aggregate, {id(pending): []})
    stored.clear_events()
    stored.version = version
    return stored


class InMemoryUnitOfWork(TransactionalUnitOfWork):
    """A unit of work over an :class:`InMemoryStore`, with real transactional semantics.

    Pass the same ``store`` to several units of work to let them see each other's committed
    state, as connections to one database would; by default each gets a store of its own.
    Optimistic concurrency works as in SQL: a stale write raises
    :class:`~tactical.ConcurrencyError` at commit and nothing of that commit is stored.

    Args:
        bus: Where committed events are published; a new :class:`EventBus` if omitted.
        store: The committed state to work on; a new, empty one if omitted.
        allow_multiple_aggregates: Let one transaction change several aggregates; by
            default :meth:`~tactical.UnitOfWork.commit` refuses that with
            :class:`~tactical.TransactionBoundaryError`
            (``.. versionadded:: 0.2.0``).

    Raises:
        TypeError: ``bus`` is not an :class:`EventBus` (a store passed positionally, say) or
            ``store`` is not an :class:`InMemoryStore`.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        bus: EventBus | None = None,
        *,
        store: InMemoryStore | None = None,
        allow_multiple_aggregates: bool = False,
    ) -> None:
        super().__init__(bus, allow_multiple_aggregates=allow_multiple_aggregates)
        candidate: object = store
        if candidate is not None and not isinstance(candidate, InMemoryStore):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"InMemoryUnitOfWork's store must be an InMemoryStore or None, "
                f"got {type(candidate).__qualname__}"
            )
        self._store_ = store if store is not None else InMemoryStore()

    @property
    def store(self) -> InMemoryStore:
        """The committed state this unit of work reads and writes."""
        return self._store_

    def _begin(self) -> None:
        pass

    def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        return self._store_._read(aggregate_type, aggregate_id)  # pyright: ignore[reportPrivateUsage]

    def _store(self, changes: Sequence[Change]) -> None:
        self._store_._apply(changes)  # pyright: ignore[reportPrivateUsage]

    def _rollback(self) -> None:
        pass
