"""Units of work: the UnitOfWork protocol and the machinery every tactical one shares.

:class:`TransactionalUnitOfWork` handles the lifecycle, the identity map and change
detection; storage-specific units of work (in memory, SQL) subclass it and implement its
storage hooks.
"""

from __future__ import annotations

import types
import typing
import warnings
import weakref
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, Self, TypeVar, cast

from tactical._bus import EventBus
from tactical._errors import AggregateNotFound, TransactionBoundaryError, UncommittedChangesWarning
from tactical._generics import substitute, type_bindings
from tactical._model import AggregateRoot, DomainEvent, Entity, recorded_in_order, recorded_trace
from tactical._repository import Repository
from tactical._structural import structural_state
from tactical._tracing import recorded_traces

__all__ = ["Change", "TransactionalUnitOfWork", "UnitOfWork", "boundary_violation"]

A = TypeVar("A", bound=AggregateRoot[Any])


class UnitOfWork(Protocol):
    """One business transaction: load aggregates, change them, commit all or nothing.

    Use it as a context manager; each ``with uow:`` block is one transaction and returns the
    unit of work itself. Leaving the block without :meth:`commit` (or with an exception)
    rolls back everything. After a successful commit, the pending events of every aggregate
    the unit of work saw are published on its bus in recorded order, then cleared.

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
        """End the transaction, rolling back whatever was not committed."""
        ...

    def repository(self, aggregate_type: type[A]) -> Repository[A, Any]:
        """The repository of ``aggregate_type`` in the current transaction.

        Raises:
            TypeError: ``aggregate_type`` is not an :class:`~tactical.AggregateRoot` subclass.
            RuntimeError: Not inside a ``with`` block, or the transaction already committed.
        """
        ...

    def commit(self) -> None:
        """Save every change atomically, then publish the events.

        Raises:
            ConcurrencyError: An aggregate was changed, added or removed by another unit of
                work since it was loaded; nothing was stored.
            EventHandlerError: The commit succeeded, but event handlers failed.
            RuntimeError: Not in a transaction, or it already committed.
        """
        ...

    def rollback(self) -> None:
        """Discard every change made in this transaction so far.

        Raises:
            RuntimeError: Not inside a ``with`` block.
        """
        ...


@dataclass(frozen=True, slots=True)
class Change:
    """One aggregate to write at commit (for unit-of-work implementers).

    ``expected_version`` is the version the store must hold for the write to go ahead
    (``None`` for an insert, which instead requires that no row exists); ``new_version`` is
    the version after it (``None`` for a delete).
    """

    kind: Literal["insert", "update", "delete"]
    aggregate_type: type[AggregateRoot[Any]]
    aggregate: AggregateRoot[Any]
    expected_version: int | None
    new_version: int | None
    events: tuple[DomainEvent, ...]


@dataclass(slots=True)
class _Tracked:
    aggregate_type: type[AggregateRoot[Any]]
    aggregate: AggregateRoot[Any]
    stored_version: int | None  # None: not in the store (added new)
    snapshot: object  # structural state when loaded; _DIRTY forces a write
    removed: bool = False


_DIRTY = object()


@dataclass(slots=True, eq=False)
class _Committed:
    """An aggregate as a commit left it: changing it later saves it nowhere by itself."""

    aggregate_type: type[AggregateRoot[Any]]
    aggregate_id: object
    # Weak: an aggregate nobody holds any more cannot be changed, and is not checked.
    aggregate: weakref.ref[AggregateRoot[Any]]
    version: int
    state: object


def changed_since_commit(
    committed: Sequence[_Committed], handled: frozenset[int] = frozenset()
) -> list[_Committed]:
    """The committed aggregates changed (state or recorded events) since their commit.

    ``handled`` holds the ``id()`` of aggregates a later transaction of the same unit of
    work took in again (it saves or discards them itself); an aggregate whose version moved
    was committed again, by some unit of work, and is not reported either.
    """
    changed: list[_Committed] = []
    for c in committed:
        aggregate = c.aggregate()
        if (
            aggregate is not None
            and id(aggregate) not in handled
            and aggregate.version == c.version
            and (aggregate.pending_events or structural_state(aggregate) != c.state)
        ):
            changed.append(c)
    return changed


def _warn_lost(message: str, lost: Sequence[_Committed], stacklevel: int) -> None:
    identities = tuple((c.aggregate_type, c.aggregate_id) for c in lost)
    warnings.warn(UncommittedChangesWarning(message, identities), stacklevel=stacklevel + 1)


def _report_at_collection(previous: list[_Committed], owner: str) -> None:
    lost = changed_since_commit(previous)
    if lost:
        _warn_lost(
            f"aggregates committed by a unit of work ({owner}) were changed after its `with` "
            "block ended and saved nowhere before it was garbage-collected",
            lost,
            stacklevel=1,
        )


class TransactionalUnitOfWork(ABC):
    """The machinery every tactical unit of work shares; storage-specific parts are hooks.

    Handles the ``with`` lifecycle, the identity map, change detection, version bookkeeping
    and publishing after commit. A subclass implements :meth:`_begin`, :meth:`_load`,
    :meth:`_store` and :meth:`_rollback` (and optionally :meth:`_end`).

    A unit of work object is reusable (one transaction per ``with`` block) but is not meant
    to be shared between threads: give each thread its own, over a shared store or engine.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
    ) -> None:
        candidate: object = bus
        if candidate is not None and not isinstance(candidate, EventBus):  # pyright: ignore[reportUnnecessaryIsInstance]
            # Found at the boundary: otherwise the first commit would store its changes and
            # only then fail to publish their events.
            # Imported here: tactical._memory, which defines the store, imports this module.
            from tactical._memory import InMemoryStore

            hint = " (pass it as store=...)" if isinstance(candidate, InMemoryStore) else ""
            raise TypeError(
                f"{type(self).__name__}'s bus must be an EventBus or None, "
                f"got {type(candidate).__qualname__}{hint}"
            )
        self._bus = bus if bus is not None else EventBus()
        self._allow_multiple_aggregates = allow_multiple_aggregates
        self._active = False
        self._finished = False
        self._tracked: dict[tuple[type[AggregateRoot[Any]], object], _Tracked] = {}
        self._repositories: dict[type[AggregateRoot[Any]], _TrackingRepository[Any]] = {}
        # What this block's commit saved, and what the previous block's did: checked for
        # changes made after their commit when a block ends and when this object is collected.
        self._committed: list[_Committed] = []
        self._previous: list[_Committed] = []
        weakref.finalize(
            self, _report_at_collection, self._previous, type(self).__name__
        ).atexit = False

    @property
    def bus(self) -> EventBus:
        """The bus committed events are published on."""
        return self._bus

    @property
    def allow_multiple_aggregates(self) -> bool:
        """Whether one transaction may change several aggregates (off by default).

        .. versionadded:: 0.2.0
        """
        return self._allow_multiple_aggregates

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Self:
        if self._active:
            raise RuntimeError(
                f"{type(self).__name__} is already in a transaction: "
                "a unit of work cannot be entered again before its `with` block ends"
            )
        self._begin()
        self._active = True
        self._finished = False
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        uncommitted: tuple[tuple[type[Any], object], ...] = ()
        after_commit: list[_Committed] = []
        after_block: list[_Committed] = []
        try:
            if not self._finished:
                self._rollback()
            if exc_type is None:
                if not self._finished:
                    uncommitted = _identities(self._changes())
                handled = frozenset(id(t.aggregate) for t in self._tracked.values())
                after_block = changed_since_commit(self._previous, handled)
                after_commit = changed_since_commit(self._committed)
        finally:
            reported = {id(c) for c in after_commit}
            self._previous[:] = [c for c in self._committed if id(c) not in reported]
            self._committed = []
            self._reset()
            self._active = False
            self._end()
        name = type(self).__name__
        if uncommitted:
            warnings.warn(
                UncommittedChangesWarning(
                    f"{name}'s `with` block ended without commit(), so its changes were "
                    "rolled back",
                    uncommitted,
                ),
                stacklevel=2,
            )
        if after_commit:
            _warn_lost(
                f"aggregates were changed after {name}.commit() in the same `with` block and "
                "saved nowhere",
                after_commit,
                stacklevel=2,
            )
        if after_block:
            _warn_lost(
                f"aggregates committed by {name}'s previous `with` block were changed after "
                "it ended and saved nowhere (add them to a unit of work and commit)",
                after_block,
                stacklevel=2,
            )

    def _reset(self) -> None:
        self._tracked = {}
        self._repositories = {}

    def _check_open(self, action: str) -> None:
        if not self._active:
            raise RuntimeError(
                f"cannot {action}: {type(self).__name__} is not in a transaction "
                "(use it inside a `with` block)"
            )
        if self._finished:
            raise RuntimeError(
                f"cannot {action}: this transaction already ended with commit() "
                "(or a failed commit); start a new `with` block"
            )

    # -- repositories ------------------------------------------------------------------------

    def repository(self, aggregate_type: type[A]) -> Repository[A, Any]:
        """The repository of ``aggregate_type`` in the current transaction.

        Raises:
            TypeError: ``aggregate_type`` is not an :class:`~tactical.AggregateRoot` subclass.
            RuntimeError: Not inside a ``with`` block, or the transaction already committed.
        """
        self._check_open("use a repository")
        candidate: object = aggregate_type
        if not (isinstance(candidate, type) and issubclass(candidate, AggregateRoot)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"repository() takes an AggregateRoot subclass, got {aggregate_type!r}")
        try:
            return self._repositories[aggregate_type]
        except KeyError:
            repository = _TrackingRepository(self, aggregate_type)
            self._repositories[aggregate_type] = repository
            return repository

    def _get(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        self._check_open("load an aggregate")
        _check_id(aggregate_type, aggregate_id)
        tracked = self._tracked.get((aggregate_type, aggregate_id))
        if tracked is not None:
            return None if tracked.removed else cast("A", tracked.aggregate)
        aggregate = self._load(aggregate_type, aggregate_id)
        if aggregate is None:
            return None
        self._tracked[(aggregate_type, aggregate_id)] = _Tracked(
            aggregate_type, aggregate, aggregate.version, structural_state(aggregate)
        )
        return aggregate

    def _add(self, aggregate_type: type[A], aggregate: A) -> None:
        self._check_open("add an aggregate")
        if not isinstance(aggregate, aggregate_type):
            raise TypeError(
                f"Repository[{aggregate_type.__qualname__}].add() takes a "
                f"{aggregate_type.__qualname__}, got a {type(aggregate).__qualname__}"
            )
        _check_id(aggregate_type, aggregate.id)
        key = (aggregate_type, aggregate.id)
        tracked = self._tracked.get(key)
        if tracked is not None:
            if tracked.aggregate is not aggregate and tracked.removed:
                raise ValueError(
                    f"{aggregate_type.__qualname__} {aggregate.id} was removed in this unit of "
                    "work: add back the instance that was removed, or add a new one with this "
                    "id in a later transaction"
                )
            if tracked.aggregate is not aggregate:
                raise ValueError(
                    f"another {aggregate_type.__qualname__} with id {aggregate.id} "
                    "is already in this unit of work"
                )
            tracked.removed = False
            return
        # version 0: a new aggregate to insert; otherwise one saved before (detached from an
        # earlier unit of work) that is written back under a version check.
        stored = aggregate.version or None
        self._tracked[key] = _Tracked(aggregate_type, aggregate, stored, _DIRTY)

    def _remove(self, aggregate_type: type[A], aggregate: A) -> None:
        self._check_open("remove an aggregate")
        key = (aggregate_type, aggregate.id)
        tracked = self._tracked.get(key)
        if tracked is None:
            self._add(aggregate_type, aggregate)
            tracked = self._tracked[key]
        elif tracked.aggregate is not aggregate:
            raise ValueError(
                f"cannot remove {aggregate_type.__qualname__} {aggregate.id}: "
                "it is not the instance this unit of work holds"
            )
        tracked.removed = True

    # -- commit ------------------------------------------------------------------------------

    def commit(self) -> None:
        """Save every change atomically, then publish the events in recorded order.

        An aggregate is written when it was added or removed, when its state differs from
        what was loaded (child entities included), or when it has pending events; each write
        checks the version loaded and bumps it by one. Loaded, unchanged aggregates are not
        written. Either every write succeeds or none is stored.

        Raises:
            ConcurrencyError: An aggregate was changed, added or removed by another unit of
                work since it was loaded; nothing of this commit is stored and no event is
                published.
            ValueError: An aggregate's id was changed after it was loaded or added (it
                would overwrite another aggregate); nothing is stored.
            EventHandlerError: The commit succeeded, but event handlers failed (see
                :class:`~tactical.EventBus`).
            TransactionBoundaryError: The transaction changed more than one aggregate and
                the unit of work was not created with ``allow_multiple_aggregates=True``;
                nothing is stored and the transaction is over.
            RuntimeError: Not in a transaction, or it already committed.
        """
        self._check_open("commit")
        changes = self._changes()
        self._finished = True
        if not self._allow_multiple_aggregates:
            refused = boundary_violation(changes)
            if refused is not None:
                self._rollback()
                raise refused
        self._store(changes)
        for change in changes:
            if change.new_version is not None:
                change.aggregate.version = change.new_version
        trackeds = [t.aggregate for t in self._tracked.values()]
        # Only what was written is published: a new aggregate removed again before commit
        # was never stored, and its events (never in an outbox) describe nothing.
        written = {id(e) for change in changes for e in change.events}
        events = [e for e in recorded_in_order(trackeds) if id(e) in written]
        traces = {
            e.event_id: trace
            for aggregate in trackeds
            for e in aggregate.pending_events
            if (trace := recorded_trace(aggregate, e)) is not None
        }
        for aggregate in trackeds:
            aggregate.clear_events()
        saved = {id(change.aggregate) for change in changes}
        self._committed = [
            _Committed(
                t.aggregate_type,
                t.aggregate.id,
                weakref.ref(t.aggregate),
                t.aggregate.version,
                structural_state(t.aggregate)
                if id(t.aggregate) in saved or t.snapshot is _DIRTY
                else t.snapshot,
            )
            for t in self._tracked.values()
            if not t.removed
        ]
        if not events:
            return
        if traces:
            with recorded_traces(traces):
                self._bus.publish_all(events)
        else:
            self._bus.publish_all(events)

    def _changes(self) -> list[Change]:
        changes: list[Change] = []
        for (_, tracked_id), t in self._tracked.items():
            if t.aggregate.id != tracked_id:
                # Written under its new id, it would overwrite the aggregate that has it.
                raise ValueError(
                    f"cannot commit {t.aggregate_type.__qualname__} {tracked_id!r}: its id was "
                    f"changed to {t.aggregate.id!r} after it was loaded or added (an id is an "
                    "aggregate's identity: make a new aggregate instead); nothing was stored"
                )
            events = t.aggregate.pending_events
            if t.removed:
                if t.stored_version is not None:
                    changes.append(
                        Change(
                            "delete", t.aggregate_type, t.aggregate, t.stored_version, None, events
                        )
                    )
            elif t.stored_version is None:
                changes.append(Change("insert", t.aggregate_type, t.aggregate, None, 1, events))
            elif events or t.snapshot is _DIRTY or structural_state(t.aggregate) != t.snapshot:
                changes.append(
                    Change(
                        "update",
                        t.aggregate_type,
                        t.aggregate,
                        t.stored_version,
                        t.stored_version + 1,
                        events,
                    )
                )
        return changes

    def rollback(self) -> None:
        """Discard every change made in this transaction so far; the block stays usable.

        Aggregates obtained before are forgotten (load them again) and their pending events
        are cleared: what they describe did not happen. After :meth:`commit` it does nothing.

        Raises:
            RuntimeError: Not inside a ``with`` block.
        """
        if not self._active:
            raise RuntimeError(f"cannot rollback: {type(self).__name__} is not in a transaction")
        if self._finished:
            return
        for t in self._tracked.values():
            t.aggregate.clear_events()
        self._reset()
        self._rollback()
        self._end()
        self._begin()

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
        ``recorded_in_order``-style sequencing if the store keeps them (an outbox).
        """

    @abstractmethod
    def _rollback(self) -> None:
        """Abandon the storage transaction."""

    def _end(self) -> None:  # noqa: B027  (optional hook)
        """Release resources after a ``with`` block."""


def boundary_violation(changes: Sequence[Change]) -> TransactionBoundaryError | None:
    """The error refusing ``changes`` when they touch more than one aggregate, else None."""
    if len(changes) <= 1:
        return None
    return TransactionBoundaryError(_identities(changes))


def _identities(changes: Sequence[Change]) -> tuple[tuple[type[Any], object], ...]:
    return tuple((c.aggregate_type, c.aggregate.id) for c in changes)


_id_types: weakref.WeakKeyDictionary[type, tuple[type, ...]] = weakref.WeakKeyDictionary()


def _check_id(aggregate_type: type[AggregateRoot[Any]], aggregate_id: object) -> None:
    """Refuse an id that is not of the aggregate's declared id type (a str for a UUID id).

    SQL storage keeps ids as text, so ``get(str(uuid))`` would find the row and one
    transaction could hold two copies of an aggregate; in memory it would find nothing.
    """
    expected = _id_types.get(aggregate_type)
    if expected is None:
        expected = _id_types[aggregate_type] = _declared_id_types(aggregate_type)
    if expected and not isinstance(aggregate_id, expected):
        names = " | ".join(t.__qualname__ for t in expected)
        raise TypeError(
            f"{aggregate_type.__qualname__} ids are {names}, got "
            f"{type(aggregate_id).__qualname__} {aggregate_id!r}"
        )


def _declared_id_types(aggregate_type: type[AggregateRoot[Any]]) -> tuple[type, ...]:
    """The classes an id must be an instance of; empty when the annotation does not say."""
    try:
        annotation: Any = typing.get_type_hints(aggregate_type)["id"]
    except (NameError, KeyError):  # annotations naming local classes: use Entity's
        annotation = typing.get_type_hints(Entity)["id"]
    annotation = substitute(annotation, type_bindings(aggregate_type))
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif hasattr(annotation, "__supertype__"):  # NewType
            annotation = annotation.__supertype__
        else:
            break
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
    else:
        members = (annotation,)
    if all(
        isinstance(m, type) and typing.get_origin(m) is None and m not in (object, Any)
        for m in members
    ):
        return tuple(members)
    return ()


class _TrackingRepository(Repository[A, Any]):
    __slots__ = ("_type", "_uow")

    def __init__(self, uow: TransactionalUnitOfWork, aggregate_type: type[A]) -> None:
        self._uow = uow
        self._type = aggregate_type

    def get(self, aggregate_id: Any, /) -> A | None:
        return self._uow._get(self._type, aggregate_id)  # pyright: ignore[reportPrivateUsage]

    def require(self, aggregate_id: Any, /) -> A:
        aggregate = self._uow._get(self._type, aggregate_id)  # pyright: ignore[reportPrivateUsage]
        if aggregate is None:
            raise AggregateNotFound(self._type, aggregate_id)
        return aggregate

    def add(self, aggregate: A, /) -> None:
        self._uow._add(self._type, aggregate)  # pyright: ignore[reportPrivateUsage]

    def remove(self, aggregate: A, /) -> None:
        self._uow._remove(self._type, aggregate)  # pyright: ignore[reportPrivateUsage]

    def __repr__(self) -> str:
        return f"<Repository[{self._type.__qualname__}] of {self._uow!r}>"
