"""The unit-of-work core: every decision of a unit of work, written once for sync and async.

:class:`UnitOfWorkCore` holds the state of a unit of work (lifecycle, identity map,
what the last commits saved) and makes every decision: what is a change, the
one-aggregate rule, version bookkeeping, what to publish and with which traces, which
warnings a block's end raises. It never touches storage: where it needs I/O it is a flow
(:mod:`tactical._flow`) that yields operations naming a hook and its arguments,
``("_begin",)``, ``("_load", type, id)``, ``("_store", changes)``, ``("_rollback",)``,
``("_end",)`` and ``("_publish", events, traces)`` (the last once the block has ended, so
that event handlers may use the unit of work again). The sync base class
(``TransactionalUnitOfWork``) carries them out with plain calls, the async one
(``AsyncTransactionalUnitOfWork``) by awaiting its async hooks of the same names.
"""

from __future__ import annotations

import enum
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final, Generic, Literal, TypeAlias, TypeVar
from uuid import UUID

from tactical._bus import EventBus, EventHandlerError, committed_but_failed
from tactical._codec import JsonCodec
from tactical._errors import UncommittedChangesWarning
from tactical._flow import Flow
from tactical._model import AggregateRoot, DomainEvent, recorded_in_order, recorded_traces_of
from tactical._query import Query
from tactical._stored_keys import id_key
from tactical._structural import structural_state
from tactical._telemetry import commit_span
from tactical._timers import (
    TimerRequests,
    TimerWrite,
    discard_timer_requests,
    timer_writes_of,
)
from tactical._tracing import Trace
from tactical._tracking import (
    DIRTY,
    Change,
    Committed,
    Tracked,
    boundary_violation,
    changed_since_commit,
    check_id,
    identities,
    report_at_collection,
    timer_note,
    warn_lost,
)

__all__ = ["MISS", "Miss", "Op", "RepositoryBase", "UnitOfWorkCore", "only_one"]

A = TypeVar("A", bound=AggregateRoot[Any])

Op: TypeAlias = tuple[Any, ...]
"""An operation of a flow: the name of the hook to run, then its arguments."""


class Miss(enum.Enum):
    """Not in the identity map: the aggregate must be loaded."""

    MISS = enum.auto()


_DEFAULT_CODEC = JsonCodec()

# A module constant: looking up an Enum member on its class costs ~0.2 us in Python 3.11.
MISS: Final = Miss.MISS


@dataclass(slots=True)
class Leftovers:
    """What a block left unsaved, to warn about once its storage transaction is over."""

    uncommitted: tuple[tuple[type[Any], object], ...]
    after_commit: list[Committed]
    after_block: list[Committed]
    timer_keys: tuple[str, ...] = ()

    def warn(self, owner: str, stacklevel: int) -> None:
        """Raise the warnings, pointing ``stacklevel`` frames above the caller."""
        if self.uncommitted or self.timer_keys:
            warnings.warn(
                UncommittedChangesWarning(
                    f"{owner}'s `with` block ended without commit(), so its changes were "
                    f"rolled back{timer_note(self.timer_keys)}",
                    self.uncommitted,
                ),
                stacklevel=stacklevel + 1,
            )
        if self.after_commit:
            warn_lost(
                f"aggregates were changed after {owner}.commit() in the same `with` block and "
                "saved nowhere",
                self.after_commit,
                stacklevel=stacklevel + 1,
            )
        if self.after_block:
            warn_lost(
                f"aggregates committed by {owner}'s previous `with` block were changed after "
                "it ended and saved nowhere (add them to a unit of work and commit)",
                self.after_block,
                stacklevel=stacklevel + 1,
            )


class UnitOfWorkCore:
    """State and decisions shared by the sync and the async units of work (no I/O).

    Subclasses carry out the flows' operations (see the module docstring) and set
    ``_awaits_handlers``: whether their commit awaits ``async def`` event handlers (a sync
    commit refuses to store changes whose events would reach one). The flows return
    nothing and their operations' results are not used, so a sync driver may run them
    with ``next()`` alone.
    """

    _awaits_handlers: ClassVar[bool] = False
    _repository_class: ClassVar[type[RepositoryBase[Any, Any]]]

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
        self._tracked: dict[tuple[type[AggregateRoot[Any]], object], Tracked] = {}
        self._repositories: dict[type[AggregateRoot[Any]], RepositoryBase[Any, Any]] = {}
        self._timers = TimerRequests()
        # What this block's commit saved, and what the previous block's did: checked for
        # changes made after their commit when a block ends and when this object is collected.
        self._committed: list[Committed] = []
        self._previous: list[Committed] = []
        self._unsaved: Leftovers | None = None
        # The events of this block's commit and their traces, dispatched when it ends.
        self._publication: tuple[list[DomainEvent], dict[UUID, Trace]] | None = None
        # Whether this unit of work's events are being dispatched: handlers' blocks then add
        # what they committed to _previous instead of replacing what the block before did.
        self._dispatching = False
        weakref.finalize(
            self, report_at_collection, self._previous, type(self).__name__
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

    def _reentered(self) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__} is already in a transaction: "
            "a unit of work cannot be entered again before its `with` block ends"
        )

    def _exit_flow(self, error: BaseException | None) -> Flow[Op, None]:
        """End the block: roll back what was not committed, then dispatch what was.

        ``error`` is the exception that ended the block (None: it ended well; only then is
        anything left unsaved worth a warning). What to warn about is left in ``_unsaved``
        for the caller to raise once the flow is over (its warnings point at the caller's
        caller).

        The events of a successful commit are dispatched here, once the block's storage
        transaction is over and the unit of work is out of its block, so a handler may
        enter this very unit of work again. Committed is committed: they are dispatched
        when the block raised after its commit too (a handler failure is then a note on
        the block's exception, which goes on), but not when it was interrupted by a
        ``BaseException`` that is not an ``Exception`` (a cancellation, ``KeyboardInterrupt``):
        the program is stopping, and the outbox still has the events of a SQL commit.
        """
        leftovers: Leftovers | None = None
        publication, self._publication = self._publication, None
        try:
            if not self._finished:
                yield ("_rollback",)
            if error is None:
                leftovers = self._leftovers()
        finally:
            committed, self._committed = self._committed, []
            self._reset()
            reported = leftovers.after_commit if leftovers is not None else ()
            # What the next block's end checks: the aggregates committed now that someone
            # still holds (no other can be changed) and that were not reported just now.
            fresh = [c for c in committed if c.aggregate() is not None and c not in reported]
            if self._dispatching:
                # A handler's block: the blocks before it in this dispatch keep theirs.
                gone = leftovers.after_block if leftovers is not None else ()
                self._previous[:] = [c for c in self._previous if c not in gone] + fresh
            else:
                self._previous[:] = fresh
            self._active = False
            try:
                yield ("_end",)
            except BaseException as failure:
                # The commit stands even when releasing its connection failed: its events
                # go out, unless the block itself was interrupted (then nothing does).
                if publication is not None and (error is None or isinstance(error, Exception)):
                    yield from self._dispatch_flow(publication, failure)
                raise
        # Handlers may enter this unit of work again, and each of their blocks' ends sets
        # _unsaved: this block's is set once they are done.
        dispatching = self._dispatching
        try:
            if publication is not None:
                self._dispatching = True
                yield from self._dispatch_flow(publication, error)
        finally:
            self._dispatching = dispatching
            self._unsaved = leftovers

    def _end_flow(self, error: BaseException | None) -> Flow[Op, None]:
        """``__exit__``'s (or ``__aexit__``'s) flow: :meth:`_exit_flow`, then its warnings.

        The warnings of what the block left unsaved point at the code whose block ended:
        three frames above this flow's, its driver's and the ``__exit__``'s. When the end
        raises (an ``EventHandlerError``), a warning the filters turn into an error becomes
        a note on that exception instead of replacing it.
        """
        try:
            yield from self._exit_flow(error)
        except BaseException as failure:
            if self._unsaved is not None:
                self._warn_unsaved(stacklevel=4, during=failure)
            raise
        if self._unsaved is not None:
            self._warn_unsaved(stacklevel=4)

    def _no_finders(self) -> NotImplementedError:
        """What ``find`` raises when the storage does not implement the ``_find`` hook."""
        return NotImplementedError(
            f"{type(self).__name__} has no finders: its storage does not implement _find"
        )

    def _dispatch_flow(
        self,
        publication: tuple[list[DomainEvent], dict[UUID, Trace]],
        error: BaseException | None,
    ) -> Flow[Op, None]:
        """Dispatch a commit's events after its block, unless the program is stopping.

        ``error`` is what the block (or its end) raised: it goes on, and a handler failure
        is a note on it; otherwise the failure is raised as an ``EventHandlerError`` that
        says the transaction was committed.
        """
        if error is not None and not isinstance(error, Exception):
            return
        try:
            yield ("_publish", *publication)
        except EventHandlerError as failed:
            if error is None:
                raise committed_but_failed(failed) from None
            error.add_note(
                f"{type(self).__name__} committed before this was raised, and its events "
                f"were dispatched: {len(failed.exceptions)} event handler(s) failed (see the "
                "tactical.bus log)"
            )

    def _leftovers(self) -> Leftovers | None:
        """What the block ending now leaves unsaved, if anything."""
        uncommitted = () if self._finished else identities(self._changes())
        after_commit = changed_since_commit(self._committed)
        after_block = (
            changed_since_commit(self._previous, self._tracked.values()) if self._previous else []
        )
        timer_keys = () if self._finished else tuple(t.key for t in self._timer_writes())
        if uncommitted or after_commit or after_block or timer_keys:
            return Leftovers(uncommitted, after_commit, after_block, timer_keys)
        return None

    def _warn_unsaved(self, stacklevel: int, during: BaseException | None = None) -> None:
        """Raise the warnings the last ``_exit_flow`` left, ``stacklevel`` frames up.

        ``during`` is the exception the block's end raises (an ``EventHandlerError``): a
        warning turned into an error (``-W error``) must not replace it, so it becomes a
        note on it instead.
        """
        leftovers, self._unsaved = self._unsaved, None
        if leftovers is None:
            return
        try:
            leftovers.warn(type(self).__name__, stacklevel + 1)
        except Warning as warning:
            if during is None:
                raise
            during.add_note(
                f"{type(warning).__name__} (an error by the warnings filter): {warning}"
            )

    def _reset(self) -> None:
        # Repositories go too: each refers to this unit of work, a cycle that would keep a
        # unit of work dropped after its block alive until the garbage collector runs.
        self._tracked = {}
        self._repositories = {}
        if self._timers:
            self._timers = TimerRequests()

    def _check_open(self, action: str) -> None:
        """Refuse ``action`` outside an open transaction (callers test the flags first)."""
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

    def _rollback_flow(self) -> Flow[Op, None]:
        if not self._active:
            raise RuntimeError(f"cannot rollback: {type(self).__name__} is not in a transaction")
        if self._finished:
            return
        for t in self._tracked.values():
            t.aggregate.clear_events()
            discard_timer_requests(t.aggregate)
        self._reset()
        yield ("_rollback",)
        yield ("_end",)
        yield ("_begin",)

    # -- repositories ------------------------------------------------------------------------

    def _repository_for(self, aggregate_type: type[AggregateRoot[Any]]) -> RepositoryBase[Any, Any]:
        if not self._active or self._finished:  # the check, without a call when open
            self._check_open("use a repository")
        try:
            repository = self._repositories.get(aggregate_type)
        except TypeError:  # not even hashable: refused below
            repository = None
        if repository is not None:
            return repository
        candidate: object = aggregate_type
        if not (isinstance(candidate, type) and issubclass(candidate, AggregateRoot)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"repository() takes an AggregateRoot subclass, got {aggregate_type!r}")
        repository = self._repository_class(self, aggregate_type)
        self._repositories[aggregate_type] = repository
        return repository

    def _known(
        self, aggregate_type: type[A], aggregate_id: object
    ) -> A | Literal[Miss.MISS] | None:
        """The identity map's answer for this id, or ``Miss.MISS`` when it must be loaded."""
        if not self._active or self._finished:  # the check, without a call when open
            self._check_open("load an aggregate")
        check_id(aggregate_type, aggregate_id)
        tracked = self._tracked.get((aggregate_type, aggregate_id))
        if tracked is None:
            return MISS
        # Not cast(): a call on the path of every get().
        return None if tracked.removed else tracked.aggregate  # type: ignore[return-value]  # pyright: ignore[reportReturnType]

    def _loaded(
        self, aggregate_type: type[A], aggregate_id: object, aggregate: A | None
    ) -> A | None:
        """Track what ``_load`` returned (an aggregate at its stored version, or None)."""
        if aggregate is not None:
            self._tracked[(aggregate_type, aggregate_id)] = Tracked(
                aggregate_type, aggregate, aggregate.version, structural_state(aggregate)
            )
        return aggregate

    def _finding(self, aggregate_type: type[A], query: Query[A]) -> frozenset[object]:
        """Check a find of ``query`` on the repository of ``aggregate_type``.

        Returns the ids of the aggregates of the type the transaction holds: the store
        need not rebuild those, the transaction's own state of them decides.
        """
        if not self._active or self._finished:
            self._check_open("find aggregates")
        candidate: object = query
        if not isinstance(candidate, Query):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"Repository[{aggregate_type.__qualname__}].find() takes a Query, "
                f"got {type(candidate).__qualname__} {candidate!r}"
            )
        if query.aggregate_type is not aggregate_type:
            raise TypeError(
                f"Repository[{aggregate_type.__qualname__}].find() takes a "
                f"Query[{aggregate_type.__qualname__}], got {query!r}"
            )
        return frozenset(i for (t, i) in self._tracked if t is aggregate_type)

    def _found(self, query: Query[A], stored: Sequence[A]) -> list[A]:
        """What a find returns, given the stored aggregates the store found for ``query``.

        As a query inside a database transaction would see it: the stored matches the
        transaction holds no copy of (now tracked, as from ``get``), and the aggregates it
        holds, not removed, whose state now matches (added, loaded or changed in it).
        """
        aggregate_type = query.aggregate_type
        codec = self._query_codec()
        ordered = bool(query.order_by)
        found: list[tuple[tuple[Any, ...], A]] = []
        for t in list(self._tracked.values()):
            if t.aggregate_type is not aggregate_type or t.removed:
                continue
            state = codec.encode(t.aggregate)
            if query.matches(state):
                aggregate: A = t.aggregate  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
                found.append((query.sort_key(state, id_key(aggregate.id)), aggregate))
        for aggregate in stored:
            if (aggregate_type, aggregate.id) in self._tracked:
                continue  # its state in this transaction decided above
            self._loaded(aggregate_type, aggregate.id, aggregate)
            state = codec.encode(aggregate) if ordered else {}
            found.append((query.sort_key(state, id_key(aggregate.id)), aggregate))
        found.sort(key=lambda pair: pair[0])
        return [aggregate for _, aggregate in found]

    def _query_codec(self) -> JsonCodec:
        """The codec whose JSON state queries are evaluated on (the unit of work's)."""
        codec: object = getattr(self, "codec", None)
        return codec if isinstance(codec, JsonCodec) else _DEFAULT_CODEC

    def _add(self, aggregate_type: type[A], aggregate: A) -> None:
        if not self._active or self._finished:  # the check, without a call when open
            self._check_open("add an aggregate")
        if not isinstance(aggregate, aggregate_type):
            raise TypeError(
                f"Repository[{aggregate_type.__qualname__}].add() takes a "
                f"{aggregate_type.__qualname__}, got a {type(aggregate).__qualname__}"
            )
        check_id(aggregate_type, aggregate.id)
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
        self._tracked[key] = Tracked(aggregate_type, aggregate, stored, DIRTY)

    def _remove(self, aggregate_type: type[A], aggregate: A) -> None:
        if not self._active or self._finished:  # the check, without a call when open
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

    # -- timers ------------------------------------------------------------------------------

    def schedule(self, message: DomainEvent, *, at: datetime, key: str | None = None) -> str:
        """Schedule ``message`` to be published at ``at``, stored by this transaction's commit.

        The timer is written in the same transaction as the aggregates (rolled back with
        them); once committed it is durable, and a timer worker
        (:class:`tactical.outbox.TimerWorker` for SQL, :meth:`tactical.InMemoryStore.take_due`
        in memory) publishes it once it is due, exactly once in effect. Scheduling again
        under the same ``key`` (in this transaction or a later one) replaces the stored
        message and its time; :meth:`cancel` deletes it. No I/O happens before the commit.

        Args:
            message: The event to publish when due, as it is (its ``event_id`` and
                ``occurred_at`` included).
            at: When it is due: a timezone-aware datetime (a time already past fires at the
                worker's next round).
            key: What names the timer, to replace or cancel it (up to 255 characters);
                the message's ``event_id`` as text if omitted.

        Returns:
            The timer's key.

        Raises:
            TypeError: ``message`` is not a :class:`~tactical.DomainEvent`, ``at`` not a
                datetime or ``key`` not a string.
            ValueError: ``at`` is naive, or ``key`` is empty, too long or holds a NUL or a
                lone surrogate.
            RuntimeError: Not inside a ``with`` block, or the transaction already committed.

        .. versionadded:: 0.2.0
        """
        if not self._active or self._finished:
            self._check_open("schedule a message")
        return self._timers.schedule(message, at, key)

    def cancel(self, key: str) -> None:
        """Cancel the timer ``key`` when this transaction commits (nothing if there is none).

        A timer scheduled earlier in this transaction is dropped too. A timer the worker
        has already fired cannot be taken back: handle a message that arrives after the
        state it was meant for has moved on (a process manager checks its own state).

        Raises:
            TypeError: ``key`` is not a string.
            ValueError: ``key`` is empty, too long or holds a NUL or a lone surrogate.
            RuntimeError: Not inside a ``with`` block, or the transaction already committed.

        .. versionadded:: 0.2.0
        """
        if not self._active or self._finished:
            self._check_open("cancel a timer")
        self._timers.cancel(key)

    def _timer_writes(self) -> tuple[TimerWrite, ...]:
        """What the commit being stored writes to the timers, one per key.

        The unit of work's own requests, then those of the aggregates it holds (process
        managers), in the order they were loaded or added; for one key the last one wins.
        A stored manager removed in the transaction counts too (its deletion is written
        with its events): what it scheduled or cancelled before its removal was asked of
        this transaction, and is not dropped in silence. One removed in the transaction
        that added it is written nowhere, its events not published: nor are its requests.
        """
        own = self._timers.writes()
        held = [
            timer_writes_of(t.aggregate)
            for t in self._tracked.values()
            if not t.removed or t.stored_version is not None
        ]
        if not any(held):
            return own
        merged = TimerRequests()
        for writes in (own, *held):
            merged.extend(writes)
        return merged.writes()

    # -- commit ------------------------------------------------------------------------------

    def _commit_flow(self) -> Flow[Op, None]:
        """Check and store, what ``commit()`` does; its events are dispatched at the block's end."""
        if not self._active or self._finished:  # the check, without a call when open
            self._check_open("commit")
        changes = self._changes()
        self._finished = True
        refused: Exception | None = None
        if len(changes) > 1 and not self._allow_multiple_aggregates:
            refused = boundary_violation(changes)
        if refused is None and not self._awaits_handlers:
            # Each type once (in the order first recorded): its handlers are looked up once.
            event_types = list({type(e): None for change in changes for e in change.events})
            if event_types:
                refused = self._async_handlers_refusal(event_types)
        if refused is not None:
            # Refused before anything is stored; the transaction is over.
            yield ("_rollback",)
            raise refused
        try:
            with commit_span(changes):
                yield ("_store", changes)
        except BaseException:
            # Nothing was stored: the aggregates are back at the version they were loaded or
            # added at (the one each write expected; 0 for a new one), to retry or drop.
            for change in changes:
                change.aggregate.version = change.expected_version or 0
            raise
        events, traces = self._committed_events(changes)
        if events:
            # Dispatched when the block ends (see _exit_flow), outside the transaction.
            self._publication = (events, traces)

    def _async_handlers_refusal(self, event_types: Sequence[type[DomainEvent]]) -> TypeError | None:
        """The error refusing a sync commit whose events would reach an async handler.

        A sync commit cannot await an ``async def`` handler, and a coroutine left un-awaited
        would drop the event in silence: the commit is refused before anything is stored.
        """
        try:
            self._bus.require_sync_handlers(event_types)
        except TypeError as refused:
            return refused
        return None

    def _committed_events(
        self, changes: Sequence[Change]
    ) -> tuple[list[DomainEvent], dict[UUID, Trace]]:
        """Bookkeeping after a successful store; returns the events to publish, and traces."""
        for change in changes:
            if change.new_version is not None:
                change.aggregate.version = change.new_version
        # Only what was written is published: a new aggregate removed again before commit
        # was never stored, and its events (never in an outbox) describe nothing.
        if len(changes) == 1:
            events = list(changes[0].events)  # one aggregate's: in recorded order already
        else:
            written = {id(e) for change in changes for e in change.events}
            tracked_aggregates = (t.aggregate for t in self._tracked.values())
            events = [e for e in recorded_in_order(tracked_aggregates) if id(e) in written]
        traces: dict[UUID, Trace] = {}
        committed: list[Committed] = []
        for t in self._tracked.values():
            aggregate = t.aggregate
            recorded = recorded_traces_of(aggregate)
            if recorded:
                traces.update(recorded)
            aggregate.clear_events()
            discard_timer_requests(aggregate)  # written by this commit (see _timer_writes)
            if t.removed:
                continue
            # Its state now, unless it is the one loaded and was not written.
            state = t.snapshot
            if state is DIRTY or _written(aggregate, changes):
                state = structural_state(aggregate)
            committed.append(
                Committed(
                    t.aggregate_type, aggregate.id, weakref.ref(aggregate), aggregate.version, state
                )
            )
        self._committed = committed
        return events, traces

    def _changes(self) -> list[Change]:
        changes: list[Change] = []
        for (_, tracked_id), t in self._tracked.items():
            aggregate_id = t.aggregate.id
            if aggregate_id is not tracked_id and aggregate_id != tracked_id:
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
            elif events or t.snapshot is DIRTY or structural_state(t.aggregate) != t.snapshot:
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


def _written(aggregate: AggregateRoot[Any], changes: Sequence[Change]) -> bool:
    """Whether ``aggregate`` is one of those ``changes`` wrote."""
    for change in changes:  # noqa: SIM110  (any() of a generator costs a frame; usually 1 change)
        if change.aggregate is aggregate:
            return True
    return False


U = TypeVar("U", bound=UnitOfWorkCore)


class RepositoryBase(Generic[U, A]):
    """What the sync and async repositories share: the calls that need no I/O."""

    __slots__ = ("_type", "_uow")

    def __init__(self, uow: U, aggregate_type: type[A]) -> None:
        self._uow = uow
        self._type = aggregate_type

    def add(self, aggregate: A, /) -> None:
        self._uow._add(self._type, aggregate)  # pyright: ignore[reportPrivateUsage]

    def remove(self, aggregate: A, /) -> None:
        self._uow._remove(self._type, aggregate)  # pyright: ignore[reportPrivateUsage]

    def __repr__(self) -> str:
        return f"<Repository[{self._type.__qualname__}] of {self._uow!r}>"


def only_one(query: Query[A], found: Sequence[A]) -> A | None:
    """The one aggregate ``found`` for ``query``, or None.

    Raises:
        LookupError: More than one was found; the error names the query and the ids.
    """
    if len(found) > 1:
        ids = ", ".join(str(a.id) for a in found[:5]) + (", ..." if len(found) > 5 else "")
        raise LookupError(
            f"find_one({query!r}) found {len(found)} {query.aggregate_type.__qualname__} "
            f"aggregates ({ids}), not at most one"
        )
    return found[0] if found else None
