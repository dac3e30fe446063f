"""What the SQL unit of work reads and writes, and what each answer means, as flows.

:class:`DocumentStorage` decides everything about loading and storing aggregates: the
statements to run, conflict detection from row counts, the stale-version lookup, SQLite's
restart as a writer, the outbox rows, the errors raised. It never touches a connection:
its flows (:mod:`tactical._flow`) yield :mod:`~tactical.sqlalchemy._statements` operations
and receive their results, so the sync unit of work and an async one run the very same
decisions with their own drivers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeAlias, TypeVar, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.orm import exc as orm_exc

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._codec import DeserializationError, JsonCodec
from tactical._codec_values import show
from tactical._errors import ConcurrencyError
from tactical._flow import Flow
from tactical._model import AggregateRoot, DomainEvent, recorded_in_order, recorded_traces_of
from tactical._partitions import partition_key
from tactical._query import Query
from tactical._stored_keys import id_key, stored_key, unstorable_key
from tactical._telemetry import current_trace_context
from tactical._timers import Cancel, TimerWrite
from tactical._tracing import trace_of
from tactical._uow import Change
from tactical.sqlalchemy._engine import says_sqlite_locked
from tactical.sqlalchemy._finders import document_condition, mapper_condition
from tactical.sqlalchemy._mapper import RelationalMapper
from tactical.sqlalchemy._orm import OrmMapper, stored_version, write_change
from tactical.sqlalchemy._schema import aggregates_table, with_schema_hint
from tactical.sqlalchemy._statements import (
    COMMIT,
    RESTART_FOR_WRITING,
    ROLLBACK,
    Execute,
    MapperCall,
    Operation,
    ReadAlone,
    Select,
    document_statements,
    mapper_statements,
)

__all__ = ["AnyMapper", "DocumentStorage"]

A = TypeVar("A", bound=AggregateRoot[Any])

_doc = aggregates_table.c

AnyMapper: TypeAlias = RelationalMapper[Any, Any] | OrmMapper[Any, Any, Any]
"""A mapper the SQL units of work take: Core statements of the user's, or ORM models."""

_Names = Mapping[int, tuple[str, str]]  # id(change) -> (type name, stored key)


class DocumentStorage:
    """The SQL unit of work's reads and writes on one dialect, as flows of operations.

    Aggregates are JSON documents in ``tactical_aggregates`` unless a relational mapper
    stores their type; events go to ``tactical_outbox`` in the same transaction.
    """

    def __init__(
        self,
        dialect: Dialect,
        codec: JsonCodec,
        mappers: Mapping[type[AggregateRoot[Any]], AnyMapper],
    ) -> None:
        self._statements = document_statements(dialect)
        self._dialect_name = dialect.name
        self._sqlite = dialect.name == "sqlite"
        self._codec = codec
        self._mappers = mappers
        self._mapped = {
            t: mapper_statements(m, dialect)
            for t, m in mappers.items()
            if isinstance(m, RelationalMapper)
        }

    # -- load --------------------------------------------------------------------------------

    def load(self, aggregate_type: type[A], aggregate_id: object) -> Flow[Operation, A | None]:
        """Read one aggregate (its ``version`` set to the stored one), or None."""
        mapper = self._mappers.get(aggregate_type)
        if mapper is not None:
            loaded = yield from self._load_mapped(mapper, aggregate_type, aggregate_id)
            return cast("A | None", loaded)
        type_name, key = self._codec.type_name(aggregate_type), id_key(aggregate_id)
        if unstorable_key(key) is not None:
            return None  # no row can have this id (and the driver would refuse to look)
        try:
            # Outside the transaction if none has begun: the version read here is checked
            # again by the write, so a stale read can only end in a ConcurrencyError.
            rows = yield ReadAlone(self._statements.select_document(type_name, key))
        except (ValueError, RecursionError) as error:
            # The JSON parser: text that is not JSON (SQLite's text column), or nested
            # deeper than the parser's recursion allows (both databases).
            problem = "nested too deeply to be" if isinstance(error, RecursionError) else "not"
            raise DeserializationError(
                f"{aggregate_type.__qualname__} state is {problem} valid JSON "
                f"({_document_row(type_name, key)}): {error}"
            ) from error
        except exc.OperationalError as error:
            if _NOT_UTF8 in str(error.orig):  # SQLite: the column's text is not UTF-8
                raise DeserializationError(
                    f"{aggregate_type.__qualname__} state is not UTF-8 text "
                    f"({_document_row(type_name, key)}): {error.orig}"
                ) from error
            raise _busy(with_schema_hint(error), aggregate_type, aggregate_id) from error
        except exc.ProgrammingError as error:
            with_schema_hint(error)
            raise
        if not rows:
            return None
        version, state = rows[0]
        return self._aggregate(aggregate_type, aggregate_id, type_name, key, version, state)

    def _aggregate(
        self,
        aggregate_type: type[A],
        aggregate_id: object,
        type_name: str,
        key: str,
        version: int,
        state: Any,
    ) -> A:
        try:
            aggregate = self._codec.aggregate_from_state(aggregate_type, state, version=version)
        except DeserializationError:
            # Read again to raise the same error naming the row (named only when needed).
            return self._codec.aggregate_from_state(
                aggregate_type, state, version=version, context=_document_row(type_name, key)
            )
        if aggregate.id != aggregate_id:
            # A copied or damaged row: saving it would overwrite the aggregate it names.
            raise DeserializationError(
                f"{aggregate_type.__qualname__} state ({_document_row(type_name, key)}) has "
                f"id {aggregate.id!r}, not the row's {aggregate_id!r}"
            )
        return aggregate

    def _load_mapped(
        self,
        mapper: AnyMapper,
        aggregate_type: type[Any],
        aggregate_id: object,
    ) -> Flow[Operation, object]:
        try:
            loaded: object = yield MapperCall(mapper.load, aggregate_id)
        except exc.OperationalError as error:
            raise _busy(with_schema_hint(error), aggregate_type, aggregate_id) from error
        except exc.ProgrammingError as error:
            with_schema_hint(error)
            raise
        if loaded is None:
            return None
        if (
            not isinstance(loaded, mapper.aggregate_type)
            or cast("AggregateRoot[Any]", loaded).id != aggregate_id
        ):
            raise DeserializationError(
                f"{type(mapper).__qualname__}.load({aggregate_id!r}) returned {show(loaded)}, "
                f"not the {mapper.aggregate_type.__qualname__} with id {aggregate_id!r}"
            )
        return loaded

    # -- find --------------------------------------------------------------------------------

    def find(self, query: Query[A], held: frozenset[object]) -> Flow[Operation, list[A]]:
        """Read the stored aggregates ``query`` matches, but those with ids in ``held``."""
        aggregate_type = query.aggregate_type
        mapper = self._mappers.get(aggregate_type)
        if mapper is not None:
            found = yield from self._find_mapped(mapper, query, held)
            return cast("list[A]", found)
        type_name = self._codec.type_name(aggregate_type)
        statement = sa.select(_doc.aggregate_id, _doc.version, _doc.state).where(
            _doc.aggregate_type == type_name,
            document_condition(query.predicate, self._dialect_name),
        )
        rows: list[Any] = yield from self._select(statement, aggregate_type)
        skipped = {id_key(i) for i in held}
        found_documents: list[A] = []
        for key, version, state in rows:
            if key in skipped:
                continue
            aggregate = self._codec.aggregate_from_state(
                aggregate_type, state, version=version, context=_document_row(type_name, key)
            )
            if id_key(aggregate.id) != key:
                raise DeserializationError(
                    f"{aggregate_type.__qualname__} state ({_document_row(type_name, key)}) "
                    f"has id {aggregate.id!r}, not the row's {key!r}"
                )
            found_documents.append(aggregate)
        return found_documents

    def _find_mapped(
        self, mapper: AnyMapper, query: Query[Any], held: frozenset[object]
    ) -> Flow[Operation, list[Any]]:
        condition = mapper_condition(query.predicate, mapper, self._dialect_name)
        if isinstance(mapper, OrmMapper):
            models = sa.select(mapper.model).where(condition)
            try:
                aggregates: list[Any] = yield MapperCall(mapper.load_all, models)
            except exc.OperationalError as error:
                raise _busy(with_schema_hint(error), query.aggregate_type, "(a query)") from error
            except exc.ProgrammingError as error:
                with_schema_hint(error)
                raise
            return [aggregate for aggregate in aggregates if aggregate.id not in held]
        id_column = mapper.table.c[mapper.id_column]
        statement = sa.select(id_column).where(condition)
        rows: list[Any] = yield from self._select(statement, query.aggregate_type)
        found: list[Any] = []
        for (aggregate_id,) in rows:
            if aggregate_id in held:
                continue
            loaded = yield from self._load_mapped(mapper, query.aggregate_type, aggregate_id)
            if loaded is not None:  # deleted since the query: not there any more
                found.append(loaded)
        return found

    def _select(
        self, statement: sa.Executable, aggregate_type: type[Any]
    ) -> Flow[Operation, list[Any]]:
        try:
            rows: list[Any] = yield Select(statement)
        except exc.OperationalError as error:
            raise _busy(with_schema_hint(error), aggregate_type, "(a query)") from error
        except exc.ProgrammingError as error:
            with_schema_hint(error)
            raise
        return rows

    # -- store -------------------------------------------------------------------------------

    def store(
        self, changes: Sequence[Change], timers: Sequence[TimerWrite] = ()
    ) -> Flow[Operation, None]:
        """Write ``changes``, their events and ``timers``, then commit; on failure roll back.

        A failed store leaves each aggregate's version as it was and raises: a
        :class:`~tactical.ConcurrencyError` for a version that moved (or an insert of an
        existing aggregate, or a SQLite write lock held past the busy timeout), else the
        error itself (a missing table's with a note saying how to create it).
        """
        versions = {id(c.aggregate): c.aggregate.version for c in changes}
        busy_timeout_ms: int | None = None
        try:
            now = datetime.now(UTC)
            names = {
                id(c): (
                    self._codec.type_name(c.aggregate_type),
                    stored_key(c.aggregate_type, c.aggregate.id),
                )
                for c in changes
            }
            timer_rows = self._timer_rows(timers, now)
            try:
                yield from self._write_all(changes, names, now, timer_rows)
            except exc.OperationalError as error:
                if not (self._sqlite and _is_busy(error)):
                    raise
                # SQLITE_BUSY on a write means this transaction holds no write lock, so it
                # has written nothing (one that wrote keeps the lock until it ends): its read
                # snapshot was stale or the lock was taken, and a reading transaction cannot
                # wait for the lock. The writes are version-checked and need no snapshot, so
                # restart as a writer, which waits up to the busy timeout, and write again.
                busy_timeout_ms = yield from self._busy_timeout_ms()
                yield RESTART_FOR_WRITING
                busy_timeout_ms = None
                yield from self._write_all(changes, names, now, timer_rows)
            yield COMMIT
        except BaseException as error:
            for change in changes:
                change.aggregate.version = versions[id(change.aggregate)]
            yield ROLLBACK
            if isinstance(error, exc.OperationalError | sqlite3.OperationalError) and _is_busy(
                error
            ):
                raise (yield from self._conflict_after_busy(changes, busy_timeout_ms)) from error
            if isinstance(error, exc.DBAPIError):
                with_schema_hint(error)
            raise

    def _write_all(
        self,
        changes: Sequence[Change],
        names: _Names,
        now: datetime,
        timer_rows: tuple[list[tuple[Any, ...]], list[tuple[str]]] | None,
    ) -> Flow[Operation, None]:
        # Documents are written from here, not from a flow a change: each would add a
        # generator and a frame that every operation of the commit passes through.
        mappers = self._mappers
        for change in changes:
            mapper = mappers.get(change.aggregate_type)
            if mapper is not None:
                yield from self._write_mapped(mapper, change)
            elif (yield self._document_write(change, names[id(change)], now)) != 1:
                raise (yield from self._stale(change))
        # Not `yield from` the list: the driver sends each its row count, which a list's
        # iterator cannot take.
        for insert in self._outbox_inserts(changes, names):  # noqa: UP028
            yield insert
        if timer_rows is not None:
            scheduled, cancelled = timer_rows
            if cancelled:
                yield self._statements.delete_scheduled.many(cancelled)
            if scheduled:
                yield self._statements.upsert_scheduled.many(scheduled)

    def _timer_rows(
        self, timers: Sequence[TimerWrite], now: datetime
    ) -> tuple[list[tuple[Any, ...]], list[tuple[str]]] | None:
        """The rows ``timers`` upsert and the keys they delete (one write per key)."""
        if not timers:
            return None
        scheduled: list[tuple[Any, ...]] = []
        cancelled: list[tuple[str]] = []
        for timer in timers:
            if isinstance(timer, Cancel):
                cancelled.append((timer.key,))
                continue
            message = timer.message
            record = self._codec.event_to_record(message)
            trace = trace_of(message.event_id)
            scheduled.append(  # in SCHEDULED_COLUMNS order
                (
                    timer.key,
                    timer.due_at,
                    message.event_id,
                    record.type_name,
                    record.schema_version,
                    record.payload,
                    message.occurred_at,
                    now,
                    trace.correlation_id,
                    trace.causation_id,
                )
            )
        return scheduled, cancelled

    def _document_write(self, change: Change, name: tuple[str, str], now: datetime) -> Execute:
        """The statement writing one aggregate's document row under its version check.

        It changes one row, or none when the stored version is not the expected one (or,
        for an insert, when the row exists).
        """
        type_name, key = name
        statements = self._statements
        if change.kind == "insert":
            state = self._codec.aggregate_to_state(change.aggregate)
            return statements.insert_document(type_name, key, change.new_version, state, now)
        if change.kind == "update":
            state = self._codec.aggregate_to_state(change.aggregate)
            return statements.update_document(
                type_name, key, change.expected_version, change.new_version, state, now
            )
        return statements.delete_document(type_name, key, change.expected_version)

    def _write_mapped(self, mapper: AnyMapper, change: Change) -> Flow[Operation, None]:
        """Write one aggregate through its mapper under its version check."""
        if isinstance(mapper, OrmMapper):
            yield from self._write_orm(mapper, change)
            return
        aggregate = change.aggregate
        if change.kind == "insert":
            aggregate.version = cast("int", change.new_version)
            try:
                yield MapperCall(mapper.insert, aggregate, isolated=True)
            except exc.IntegrityError as error:
                stale = yield from self._stale_insert(change, error)
                if stale is None:
                    raise
                raise stale from error
            return
        # Check and bump the root's version first: this also locks the row (PostgreSQL) so
        # the mapper's writes below cannot interleave with another writer's.
        expected = cast("int", change.expected_version)
        bumped = yield self._mapped[change.aggregate_type].bump_version(
            aggregate.id, expected, expected + 1
        )
        if bumped != 1:
            raise (yield from self._stale(change))
        if change.kind == "update":
            aggregate.version = cast("int", change.new_version)
            yield MapperCall(mapper.update, aggregate)
        else:
            yield MapperCall(mapper.delete, aggregate)

    def _write_orm(self, mapper: OrmMapper[Any, Any, Any], change: Change) -> Flow[Operation, None]:
        """Write through an ORM session; SQLAlchemy's own version check finds a stale row."""
        if change.new_version is not None:
            change.aggregate.version = change.new_version
        try:
            yield MapperCall(partial(write_change, mapper), change)
        except orm_exc.StaleDataError as error:
            raise (yield from self._stale(change)) from error
        except exc.IntegrityError as error:
            stale = (
                None if change.kind != "insert" else (yield from self._stale_insert(change, error))
            )
            if stale is None:
                raise
            raise stale from error

    def _outbox_inserts(self, changes: Sequence[Change], names: _Names) -> list[Execute]:
        """The inserts of the outbox rows of every change's events, in recorded order."""
        trace_context = current_trace_context()  # the commit's span: one for every row
        if len(changes) == 1:  # the common case: one aggregate's events, in recorded order
            only = changes[0]
            if not only.events:
                return []
            name = names[id(only)]
            only_rows = self._outbox_rows(
                only, name, only.events, partition_key(*name), trace_context
            )
            return [self._statements.insert_outbox.many(only_rows)]
        owner: dict[int, Change] = {id(e): c for c in changes for e in c.events}
        if not owner:
            return []
        rows: list[tuple[Any, ...]] = []
        keys: dict[int, int] = {}  # id(change) -> its aggregate's partition key, hashed once
        for event in recorded_in_order(c.aggregate for c in changes):
            change = owner.get(id(event))
            if change is None:  # recorded after the snapshot of pending events was taken
                continue
            name = names[id(change)]
            key = keys.get(id(change))
            if key is None:
                key = keys[id(change)] = partition_key(*name)
            rows += self._outbox_rows(change, name, (event,), key, trace_context)
        return [self._statements.insert_outbox.many(rows)]

    def _outbox_rows(
        self,
        change: Change,
        name: tuple[str, str],
        events: Sequence[DomainEvent],
        key: int,
        trace_context: str | None,
    ) -> list[tuple[Any, ...]]:
        """The outbox rows of ``events``, recorded by ``change``'s aggregate, in that order."""
        type_name, aggregate_key = name
        version = change.new_version
        if version is None:  # a delete's events: after the version it removes
            version = cast("int", change.expected_version) + 1
        recorded = recorded_traces_of(change.aggregate)  # None outside event handlers
        event_to_record = self._codec.event_to_record
        rows: list[tuple[Any, ...]] = []
        for event in events:
            event_id = event.event_id
            record = event_to_record(event)
            trace = trace_of(event_id, recorded.get(event_id) if recorded else None)
            rows.append(
                (  # in OUTBOX_COLUMNS order
                    event_id,
                    record.type_name,
                    record.schema_version,
                    type_name,
                    aggregate_key,
                    version,
                    record.payload,
                    event.occurred_at,
                    trace.correlation_id,
                    trace.causation_id,
                    key,
                    trace_context,
                )
            )
        return rows

    # -- conflicts ---------------------------------------------------------------------------

    def _busy_timeout_ms(self) -> Flow[Operation, int | None]:
        statement = self._statements.busy_timeout
        if statement is None:
            return None
        try:
            rows = yield statement()
        except exc.DBAPIError:
            return None
        return cast("int | None", rows[0][0] if rows else None)

    def _stored_version(self, change: Change) -> Flow[Operation, int | None]:
        mapper = self._mappers.get(change.aggregate_type)
        if isinstance(mapper, OrmMapper):
            try:
                found: object = yield MapperCall(
                    partial(stored_version, mapper), change.aggregate.id
                )
            except exc.DBAPIError:
                return None
            return cast("int | None", found)
        mapped = self._mapped.get(change.aggregate_type)
        if mapped is not None:
            lookup: Execute = mapped.stored_version(change.aggregate.id)
        else:
            lookup = self._statements.document_version(
                self._codec.type_name(change.aggregate_type), id_key(change.aggregate.id)
            )
        try:
            rows = yield lookup
        except exc.DBAPIError:
            return None
        return cast("int | None", rows[0][0] if rows else None)

    def _stale(self, change: Change) -> Flow[Operation, ConcurrencyError]:
        return _stale_error(change, (yield from self._stored_version(change)))

    def _stale_insert(
        self, change: Change, refusal: exc.IntegrityError
    ) -> Flow[Operation, ConcurrencyError | None]:
        """The conflict behind a mapper's insert the database refused, if it is one.

        A row stored under the aggregate's id means another writer added it first: a
        ``ConcurrencyError``. None means there is no such row: the insert broke another
        constraint (a unique column, a child's key), which no retry can get past, and the
        caller raises ``refusal`` itself.
        """
        actual = yield from self._stored_version(change)
        if actual is None:
            return None
        error = _stale_error(change, actual)
        error.add_note(f"the database refused the insert: {getattr(refusal, 'orig', refusal)}")
        return error

    def _conflict_after_busy(
        self, changes: Sequence[Change], busy_timeout_ms: int | None
    ) -> Flow[Operation, ConcurrencyError]:
        """SQLite stayed locked past the busy timeout: report who changed what, if anyone.

        Runs after the rollback, in a new read transaction of the same connection.
        """
        for change in changes:
            actual = yield from self._stored_version(change)
            if actual != change.expected_version:
                return _stale_error(change, actual)
        written = ", ".join(f"{c.aggregate_type.__qualname__} {c.aggregate.id}" for c in changes)
        timeout = "" if busy_timeout_ms is None else f" ({busy_timeout_ms} ms)"
        only = changes[0] if len(changes) == 1 else None
        return ConcurrencyError(
            f"could not write {written or 'the transaction'}: the database was busy with "
            f"another writer for longer than its busy timeout{timeout}; nothing was stored "
            "(retry the transaction)",
            aggregate_type=only.aggregate_type if only is not None else None,
            aggregate_id=only.aggregate.id if only is not None else None,
        )


def _stale_error(change: Change, actual_version: int | None) -> ConcurrencyError:
    return ConcurrencyError.stale(
        change.aggregate_type,
        change.aggregate.id,
        expected_version=change.expected_version or 0,
        actual_version=actual_version,
    )


def _document_row(type_name: str, key: str) -> str:
    return f"row {aggregates_table.name}(aggregate_type={type_name!r}, aggregate_id={key!r})"


_NOT_UTF8 = "Could not decode to UTF-8"


def _is_busy(error: exc.OperationalError | sqlite3.OperationalError) -> bool:
    # SQLAlchemy's wraps the driver's; the begin hook's BEGIN raises the driver's own.
    message = str(error.orig if isinstance(error, exc.OperationalError) else error)
    return says_sqlite_locked(message)


def _busy(
    error: exc.OperationalError, aggregate_type: type[Any], aggregate_id: object
) -> BaseException:
    if not _is_busy(error):
        return error
    return ConcurrencyError(
        f"could not read {aggregate_type.__qualname__} {aggregate_id}: the database was busy "
        "for longer than its busy timeout (retry the transaction)",
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
    )
