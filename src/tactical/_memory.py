"""The in-memory store and unit of work: real transactional semantics, no database.

The store keeps what a SQL unit of work keeps: each aggregate as the codec's JSON state and a
version, and it refuses at commit exactly what the SQL unit of work refuses (a value that does
not fit its field, a string no database carries, an id no ``aggregate_id`` column holds, a
class of ``__main__``), so a test that passes in memory does not fail against a database.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from tactical._bus import EventBus
from tactical._codec import JsonCodec
from tactical._model import AggregateRoot, DomainEvent, recorded_in_order
from tactical._query import Query
from tactical._stored_keys import id_key, stored_key
from tactical._timers import ScheduledMessage, TimerWrite, due_time
from tactical._tracking import stale
from tactical._uow import Change, TransactionalUnitOfWork
from tactical._uow_core import UnitOfWorkCore

__all__ = ["InMemoryStore", "InMemoryUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])

_default_codec = JsonCodec()

# A row as a SQL document row holds it: the version and the aggregate's JSON state. The state
# holds the version too (SQL adds it on read; kept here, a read decodes the state as it is).
# Rows are replaced whole, never changed in place, and the state is never handed out.
_Row = tuple[int, dict[str, Any]]
# A row's key: the aggregate's class and its id as text (as SQL keeps it).
_Key = tuple[type[AggregateRoot[Any]], str]


class InMemoryStore:
    """Committed aggregates held in memory, shared by the units of work given it.

    Each unit of work works on private copies, so a store behaves like a database that
    several connections use: uncommitted changes are invisible to the others, and a commit
    applies all of its writes, or none, under one lock. Aggregates are kept as their JSON
    state (as the SQL unit of work stores them) and rebuilt by the codec on every read.

    It also keeps the durable timers its units of work commit (see
    :meth:`~tactical.SchedulingUnitOfWork.schedule`): :meth:`scheduled` lists them and
    :meth:`take_due` hands out the due ones, once.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Keeps the codec's JSON state of each aggregate, and refuses at commit what the SQL
       unit of work refuses. Keeps durable timers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[_Key, _Row] = {}
        self._timers: dict[str, ScheduledMessage] = {}

    def __len__(self) -> int:
        """The number of aggregates stored."""
        return len(self._rows)

    def _read(
        self, aggregate_type: type[A], aggregate_id: object, codec: JsonCodec = _default_codec
    ) -> A | None:
        # Keyed by the id as SQL stores it (its text), so that the same ids find the same rows.
        row = self._rows.get((aggregate_type, id_key(aggregate_id)))
        if row is None:
            return None
        return codec.decode(aggregate_type, row[1])

    def scheduled(self) -> tuple[ScheduledMessage, ...]:
        """The timers committed and not yet taken, soonest first (then by key).

        .. versionadded:: 0.2.0
        """
        with self._lock:
            timers = list(self._timers.values())
        return tuple(sorted(timers, key=_due_order))

    def take_due(self, now: datetime) -> list[ScheduledMessage]:
        """Remove and return the timers due at ``now`` (``due_at <= now``), soonest first.

        The in-memory timer worker: publish what it returns (``bus.publish(t.message)``).
        Each timer is returned once, even to callers in several threads.

        Args:
            now: The current time, from your clock (a
                :class:`tactical.testing.MovableClock` in tests); timezone-aware.

        Raises:
            ValueError: ``now`` is naive.

        .. versionadded:: 0.2.0
        """
        now = due_time(now)
        with self._lock:
            due = sorted((t for t in self._timers.values() if t.due_at <= now), key=_due_order)
            for timer in due:
                del self._timers[timer.key]
        return due

    def _select(
        self, query: Query[A], held: frozenset[object], codec: JsonCodec = _default_codec
    ) -> list[A]:
        # Query.matches on each row's JSON state: what the SQL storage compiles it to.
        aggregate_type = query.aggregate_type
        skipped = {id_key(i) for i in held}
        with self._lock:  # a commit replaces rows whole: a snapshot of the dict suffices
            rows = [(k, row) for k, row in self._rows.items() if k[0] is aggregate_type]
        return [
            codec.decode(aggregate_type, state)
            for (_, key), (_, state) in rows
            if key not in skipped and query.matches(state)
        ]

    def _apply(
        self,
        changes: Sequence[Change],
        codec: JsonCodec = _default_codec,
        timers: Sequence[TimerWrite] = (),
    ) -> None:
        # Everything the SQL unit of work checks, in its order: every change's type name and
        # key, then change by change its state and its version, then the events in recorded
        # order. Encoding runs outside the lock; its errors are raised where SQL meets them
        # (a key's at once: no error of a change's state is raised before every key is checked).
        if timers:
            refused_timer = _first_unstorable_event(
                codec, [t.message for t in timers if isinstance(t, ScheduledMessage)]
            )
            if refused_timer is not None:
                raise refused_timer
        if len(changes) == 1:
            self._apply_one(changes[0], codec, timers)
            return
        keys = [_key(change, codec) for change in changes]
        rows: list[_Row | BaseException | None] = []
        for change in changes:
            try:
                rows.append(_row(change, codec))
            except (TypeError, ValueError) as error:
                rows.append(error)
        refused_event = _first_unstorable_event(codec, _written_events(changes))
        with self._lock:
            held = self._rows
            for change, key, row in zip(changes, keys, rows, strict=True):
                if isinstance(row, BaseException):
                    raise row
                _require_version(held, key, change)
            if refused_event is not None:
                raise refused_event
            for key, row in zip(keys, rows, strict=True):
                if isinstance(row, tuple):
                    held[key] = row
                else:  # None: a delete (an error was raised above)
                    del held[key]
            if timers:
                self._write_timers(timers)

    def _write_timers(self, timers: Sequence[TimerWrite]) -> None:
        # Under the lock, with the aggregates' writes: all of a commit, or none of it.
        held = self._timers
        for timer in timers:
            if isinstance(timer, ScheduledMessage):
                held[timer.key] = timer
            else:
                held.pop(timer.key, None)

    def _apply_one(
        self, change: Change, codec: JsonCodec, timers: Sequence[TimerWrite] = ()
    ) -> None:
        # _apply of one change (most commits): in the same order, its state's error is due
        # right after its key's, so nothing is kept aside to raise later.
        key = _key(change, codec)
        row = _row(change, codec)
        refused_event = _first_unstorable_event(codec, change.events)  # in recorded order
        with self._lock:
            held = self._rows
            _require_version(held, key, change)
            if refused_event is not None:
                raise refused_event
            if row is None:  # a delete
                del held[key]
            else:
                held[key] = row
            if timers:
                self._write_timers(timers)


def _due_order(timer: ScheduledMessage) -> tuple[datetime, str]:
    return (timer.due_at, timer.key)


def _require_version(held: dict[_Key, _Row], key: _Key, change: Change) -> None:
    """Refuse ``change`` if the row at ``key`` is not at the version it expects."""
    stored = held.get(key)
    found = None if stored is None else stored[0]
    if found != change.expected_version:
        raise stale(change, found)


def _key(change: Change, codec: JsonCodec) -> _Key:
    """The key of ``change``'s row; refuses a class of __main__, a name or id no column holds."""
    aggregate_type = change.aggregate_type
    codec.type_name(aggregate_type)
    return (aggregate_type, stored_key(aggregate_type, change.aggregate.id))


def _row(change: Change, codec: JsonCodec) -> _Row | None:
    """The row ``change`` writes (None for a delete); refuses a state the codec cannot store."""
    version = change.new_version
    if version is None:
        return None
    state = codec.encode(change.aggregate)  # what aggregate_to_state stores, and the version
    state["version"] = version
    return (version, state)


def _written_events(changes: Sequence[Change]) -> list[DomainEvent]:
    """The events ``changes`` write, in the order they were recorded across aggregates."""
    written = {id(e) for c in changes for e in c.events}
    return [e for e in recorded_in_order(c.aggregate for c in changes) if id(e) in written]


def _first_unstorable_event(
    codec: JsonCodec, events: Sequence[DomainEvent]
) -> BaseException | None:
    """Why the codec refuses the first of ``events`` it cannot store, or None."""
    # What JsonCodec.event_to_record checks (its type name, its payload), without the record
    # and without building the payload: events are published, never kept, in memory.
    type_name, check = codec.type_name, codec._check_storable  # pyright: ignore[reportPrivateUsage]
    try:
        for event in events:
            type_name(type(event))
            check(event)
    except (TypeError, ValueError) as error:
        return error
    return None


class InMemoryStorage(UnitOfWorkCore):
    """What the sync and the async in-memory units of work share: their arguments and store.

    Each reads and writes its :class:`InMemoryStore` with no I/O to await, so the storage
    hooks of both are these plain calls.
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
        candidate: object = store
        if candidate is not None and not isinstance(candidate, InMemoryStore):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"{type(self).__name__}'s store must be an InMemoryStore or None, "
                f"got {type(candidate).__qualname__}"
            )
        candidate = codec
        if candidate is not None and not isinstance(candidate, JsonCodec):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"{type(self).__name__}'s codec must be a JsonCodec or None, "
                f"got {type(candidate).__qualname__}"
            )
        self._store_ = store if store is not None else InMemoryStore()
        self._codec = codec if codec is not None else _default_codec

    @property
    def store(self) -> InMemoryStore:
        """The committed state this unit of work reads and writes."""
        return self._store_

    @property
    def codec(self) -> JsonCodec:
        """The codec that decides what can be stored, and rebuilds what is read.

        .. versionadded:: 0.2.0
        """
        return self._codec

    def _read(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        return self._store_._read(aggregate_type, aggregate_id, self._codec)  # pyright: ignore[reportPrivateUsage]

    def _select(self, query: Query[A], held: frozenset[object]) -> list[A]:
        return self._store_._select(query, held, self._codec)  # pyright: ignore[reportPrivateUsage]

    def _write(self, changes: Sequence[Change]) -> None:
        self._store_._apply(changes, self._codec, self._timer_writes())  # pyright: ignore[reportPrivateUsage]


class InMemoryUnitOfWork(InMemoryStorage, TransactionalUnitOfWork):
    """A unit of work over an :class:`InMemoryStore`, with real transactional semantics.

    Pass the same ``store`` to several units of work to let them see each other's committed
    state, as connections to one database would; by default each gets a store of its own.
    Optimistic concurrency works as in SQL: a stale write raises
    :class:`~tactical.ConcurrencyError` at commit and nothing of that commit is stored.

    The codec decides what can be stored, as in the SQL unit of work: at commit, a ``TypeError``
    or ``ValueError`` for an aggregate or event value that cannot be stored as JSON (an ``int``
    in a ``Decimal`` field, a string with a NUL), an id no ``aggregate_id`` column holds, or a
    class of ``__main__`` without a registered name; nothing of that commit is stored. Loaded
    aggregates are rebuilt from their JSON state, as a database would give them back.

    Args:
        bus: Where committed events are published; a new :class:`EventBus` if omitted.
        store: The committed state to work on; a new, empty one if omitted.
        allow_multiple_aggregates: Let one transaction change several aggregates; by
            default :meth:`~tactical.UnitOfWork.commit` refuses that with
            :class:`~tactical.TransactionBoundaryError`
            (``.. versionadded:: 0.2.0``).
        codec: How aggregates and events become JSON; a shared default
            :class:`~tactical.JsonCodec` if omitted (pass the one whose names you register,
            as to the SQL unit of work) (``.. versionadded:: 0.2.0``).

    Raises:
        TypeError: ``bus`` is not an :class:`EventBus` (a store passed positionally, say),
            ``store`` is not an :class:`InMemoryStore` or ``codec`` not a
            :class:`~tactical.JsonCodec`.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Refuses at commit what the SQL unit of work refuses.
    """

    def _begin(self) -> None:
        pass

    def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        return self._read(aggregate_type, aggregate_id)

    def _find(self, query: Query[A], held: frozenset[object]) -> list[A]:
        return self._select(query, held)

    def _store(self, changes: Sequence[Change]) -> None:
        self._write(changes)

    def _rollback(self) -> None:
        pass
