"""SqlAlchemyUnitOfWork: the unit of work over SQLAlchemy 2 (SQLite, PostgreSQL)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._bus import EventBus
from tactical._codec import DeserializationError, JsonCodec
from tactical._codec_values import show
from tactical._errors import ConcurrencyError
from tactical._model import AggregateRoot, DomainEvent, recorded_in_order, recorded_trace
from tactical._stored_keys import id_key as _key
from tactical._stored_keys import stored_key as _stored_key
from tactical._stored_keys import unstorable_key
from tactical._tracing import trace_of
from tactical._uow import Change, TransactionalUnitOfWork
from tactical.sqlalchemy._engine import (
    configure_engine,
    restart_sqlite_for_writing,
    says_sqlite_locked,
)
from tactical.sqlalchemy._mapper import RelationalMapper
from tactical.sqlalchemy._schema import aggregates_table, metadata, outbox_table
from tactical.sqlalchemy._watchdog import guard_round_trips, watch_round_trips

__all__ = ["SqlAlchemyUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])

_default_codec = JsonCodec()

# The document-storage statements, built once: constructing a SQLAlchemy statement (and
# coercing its expressions) on every call cost more than executing it on SQLite. Values come
# as bound parameters, named apart from the columns (UPDATE reserves the column names).
_doc = aggregates_table.c
_is_row = (
    _doc.aggregate_type == sa.bindparam("b_type", type_=_doc.aggregate_type.type),
    _doc.aggregate_id == sa.bindparam("b_id", type_=_doc.aggregate_id.type),
)
_is_version = _doc.version == sa.bindparam("b_expected", type_=_doc.version.type)
_SELECT_DOCUMENT = sa.select(_doc.version, _doc.state).where(*_is_row)
_INSERT_DOCUMENT = aggregates_table.insert()
_UPDATE_DOCUMENT = (
    aggregates_table.update()
    .where(*_is_row, _is_version)
    .values(
        version=sa.bindparam("b_version", type_=_doc.version.type),
        state=sa.bindparam("b_state", type_=_doc.state.type),
        updated_at=sa.bindparam("b_now", type_=_doc.updated_at.type),
    )
)
_DELETE_DOCUMENT = aggregates_table.delete().where(*_is_row, _is_version)
_INSERT_OUTBOX = outbox_table.insert()


class SqlAlchemyUnitOfWork(TransactionalUnitOfWork):
    """A unit of work over a SQLAlchemy 2 :class:`~sqlalchemy.engine.Engine`.

    Each ``with`` block runs in one database transaction on its own connection. By default
    an aggregate is stored as one JSON document row (type, id, version, state) in
    ``tactical_aggregates``, with no mapping code; register a :class:`RelationalMapper` to
    store a type in tables of your own. Every write is version-checked
    (``UPDATE ... WHERE id = :id AND version = :loaded``); a mismatch raises
    :class:`~tactical.ConcurrencyError` and the whole transaction rolls back.

    The events of every saved aggregate are inserted into ``tactical_outbox`` in the same
    transaction (position order = recorded order), then published on the bus after commit.

    Units of work over one engine see each other's committed state. Create the tables with
    :func:`create_schema` or with Alembic over :data:`~tactical.sqlalchemy.metadata`. SQLite
    needs a file database (``sqlite:///path``) for more than one unit of work at a time: an
    in-memory database is private to one connection.

    Args:
        engine: The engine to use; it is prepared with :func:`configure_engine`.
        bus: Where committed events are published; a new :class:`~tactical.EventBus` if
            omitted.
        codec: How aggregates and events become JSON; a shared default :class:`~tactical.JsonCodec`
            if omitted (register stable type names on the one you pass).
        mappers: Relational mappers, one per aggregate type they store.
        allow_multiple_aggregates: Let one transaction change several aggregates; by
            default :meth:`~tactical.UnitOfWork.commit` refuses that with
            :class:`~tactical.TransactionBoundaryError`
            (``.. versionadded:: 0.2.0``).
        database_timeout: Seconds each statement, commit or rollback may wait for the
            database (30 by default) before its connection's socket is shut down: the call
            then fails with SQLAlchemy's ``OperationalError`` (noted as cut by this
            deadline), the transaction is rolled back and the next block connects anew.
            psycopg has no read timeout of its own, so without it a database that stops
            answering (a fail-over behind a proxy) hangs the commit for ever. None turns
            it off (for statements you know run longer). Drivers without a socket (SQLite)
            are not guarded. One daemon thread per process serves every deadline
            (``.. versionadded:: 0.2.0``).

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``Engine`` (a URL string, say) or ``bus``
            is not an :class:`~tactical.EventBus`.
        ValueError: Two of ``mappers`` store the same aggregate type, or
            ``database_timeout`` is not positive.

    Besides the errors of the :class:`~tactical.UnitOfWork` protocol, in use it raises
    :class:`~tactical.DeserializationError` for a stored row that cannot be read back (the
    message names the row, also when the row's state has another aggregate's id or a relational
    mapper's ``load`` returned another aggregate); at commit, ``TypeError`` or ``ValueError``
    for an aggregate or event value that cannot be stored as JSON, or an id no
    ``aggregate_id`` column holds (over 255 characters as text, or with a NUL or a lone
    surrogate; such an id is never found by ``get``), raised before the database sees it
    and the same on SQLite and PostgreSQL (nothing is stored); on entering, a
    ``RuntimeError`` when an in-memory SQLite database is already in another unit of work's
    transaction; and SQLAlchemy's own errors when the database fails.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        engine: sa.Engine,
        bus: EventBus | None = None,
        *,
        codec: JsonCodec | None = None,
        mappers: Iterable[RelationalMapper[Any, Any]] = (),
        allow_multiple_aggregates: bool = False,
        database_timeout: float | None = 30.0,
    ) -> None:
        super().__init__(bus, allow_multiple_aggregates=allow_multiple_aggregates)
        if database_timeout is not None and not database_timeout > 0:
            raise ValueError(f"database_timeout must be positive, got {database_timeout}")
        self._database_timeout = database_timeout
        self._deadline = contextlib.ExitStack()
        self._disarm: Callable[[], None] | None = None
        self._cut = False  # set by the deadline thread when it shut a connection down
        self._engine = configure_engine(engine)
        self._sqlite = engine.dialect.name == "sqlite"
        if database_timeout is not None and not self._sqlite:
            watch_round_trips(engine)
        self._codec = codec if codec is not None else _default_codec
        self._mappers: dict[type[AggregateRoot[Any]], RelationalMapper[Any, Any]] = {}
        for mapper in mappers:
            existing = self._mappers.get(mapper.aggregate_type)
            if existing is not None:
                raise ValueError(
                    f"two relational mappers for {mapper.aggregate_type.__qualname__}: "
                    f"{existing!r} and {mapper!r} (pass one per aggregate type)"
                )
            self._mappers[mapper.aggregate_type] = mapper
        self._connection: sa.Connection | None = None

    @property
    def engine(self) -> sa.Engine:
        """The engine this unit of work connects through."""
        return self._engine

    @property
    def codec(self) -> JsonCodec:
        """The codec that turns aggregates and events into JSON."""
        return self._codec

    @property
    def connection(self) -> sa.Connection:
        """The current transaction's connection, for queries (read models, reports).

        Write aggregates through repositories, not through this connection: only
        repository writes are version-checked and produce outbox rows.

        Raises:
            RuntimeError: Not inside a ``with`` block.
        """
        if self._connection is None:
            raise RuntimeError(f"{type(self).__name__} is not in a transaction")
        return self._connection

    # -- hooks -------------------------------------------------------------------------------

    def _begin(self) -> None:
        connection = self._engine.connect()
        try:
            connection.begin()
        except (exc.OperationalError, sqlite3.OperationalError) as error:
            # The SQLite "begin" listener talks to the driver directly: its error is sqlite3's.
            connection.close()
            if "cannot start a transaction within a transaction" in str(error):
                raise RuntimeError(
                    f"{type(self).__name__} cannot begin: the engine's only SQLite connection "
                    "is in another unit of work's transaction. An in-memory database "
                    "('sqlite://') is one connection, so its units of work cannot overlap; "
                    "use a file database ('sqlite:///path') for concurrent units of work"
                ) from error
            raise
        self._connection = connection
        if self._database_timeout is not None:
            self._cut = False
            self._disarm = self._deadline.enter_context(
                guard_round_trips(connection, self._database_timeout, self._mark_cut)
            )

    def _end(self) -> None:
        self._disarm = None
        self._deadline.close()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _rollback(self) -> None:
        # get_transaction(), not in_transaction(): after a failed COMMIT the transaction is
        # inactive but still the connection's, and only rolling it back lets the pool reset
        # the driver's connection (else SQLite's would go back to the pool mid-transaction,
        # holding its write lock).
        if self._connection is not None and self._connection.get_transaction() is not None:
            self._connection.rollback()

    def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        connection = self.connection
        mapper = self._mappers.get(aggregate_type)
        if mapper is not None:
            try:
                loaded: object = mapper.load(connection, aggregate_id)
            except exc.OperationalError as error:
                self._note_deadline(error)
                raise _busy(_with_schema_hint(error), aggregate_type, aggregate_id) from error
            except exc.ProgrammingError as error:
                _with_schema_hint(error)
                raise
            return cast("A | None", _checked_mapped(mapper, aggregate_id, loaded))
        type_name, key = self._codec.type_name(aggregate_type), _key(aggregate_id)
        if unstorable_key(key) is not None:
            return None  # no row can have this id (and the driver would refuse to look)
        try:
            row = connection.execute(
                _SELECT_DOCUMENT, {"b_type": type_name, "b_id": key}
            ).one_or_none()
        except (ValueError, RecursionError) as error:
            # The driver's JSON parser: text that is not JSON (SQLite's text column), or
            # nested deeper than the parser's recursion allows (both databases).
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
            self._note_deadline(error)
            raise _busy(_with_schema_hint(error), aggregate_type, aggregate_id) from error
        except exc.ProgrammingError as error:
            _with_schema_hint(error)
            raise
        if row is None:
            return None
        version, state = row
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

    def _store(self, changes: Sequence[Change]) -> None:
        connection = self.connection
        versions = {id(c.aggregate): c.aggregate.version for c in changes}
        busy_timeout_ms: int | None = None
        try:
            now = datetime.now(UTC)
            # (type name, stored key) of each change's aggregate, for its row and its events.
            names = {
                id(c): (
                    self._codec.type_name(c.aggregate_type),
                    _stored_key(c.aggregate_type, c.aggregate.id),
                )
                for c in changes
            }
            try:
                self._write_all(connection, changes, names, now)
            except exc.OperationalError as error:
                if not (self._sqlite and _is_busy(error)):
                    raise
                # SQLITE_BUSY on a write means this transaction holds no write lock, so it
                # has written nothing (one that wrote keeps the lock until it ends): its read
                # snapshot was stale or the lock was taken, and a reading transaction cannot
                # wait for the lock. The writes are version-checked and need no snapshot, so
                # restart as a writer, which waits up to the busy timeout, and write again.
                busy_timeout_ms = _busy_timeout_ms(connection)
                restart_sqlite_for_writing(connection)
                busy_timeout_ms = None
                self._write_all(connection, changes, names, now)
            connection.commit()
            if self._disarm is not None:
                self._disarm()  # committed: the bus's handlers run next, not the database
        except BaseException as error:
            for change in changes:
                change.aggregate.version = versions[id(change.aggregate)]
            self._rollback()
            if isinstance(error, exc.OperationalError | sqlite3.OperationalError) and _is_busy(
                error
            ):
                raise self._conflict_after_busy(changes, busy_timeout_ms) from error
            if isinstance(error, exc.DBAPIError):
                _with_schema_hint(error)
                self._note_deadline(error)
            raise

    def _mark_cut(self) -> None:
        self._cut = True

    def _note_deadline(self, error: exc.DBAPIError) -> None:
        if self._cut:
            error.add_note(
                f"the database did not answer within database_timeout "
                f"({self._database_timeout}s), so tactical shut its connection down; "
                "nothing was stored"
            )

    def _write_all(
        self,
        connection: sa.Connection,
        changes: Sequence[Change],
        names: dict[int, tuple[str, str]],
        now: datetime,
    ) -> None:
        for change in changes:
            self._write(connection, change, names[id(change)], now)
        self._write_outbox(connection, changes, names)

    # -- writes ------------------------------------------------------------------------------

    def _write(
        self, connection: sa.Connection, change: Change, name: tuple[str, str], now: datetime
    ) -> None:
        mapper = self._mappers.get(change.aggregate_type)
        if mapper is not None:
            self._write_mapped(connection, mapper, change)
            return
        type_name, key = name
        if change.kind == "insert":
            state = self._codec.aggregate_to_state(change.aggregate)
            try:
                with connection.begin_nested():
                    connection.execute(
                        _INSERT_DOCUMENT,
                        {
                            "aggregate_type": type_name,
                            "aggregate_id": key,
                            "version": change.new_version,
                            "state": state,
                            "updated_at": now,
                        },
                    )
            except exc.IntegrityError as error:
                raise self._stale(connection, change, error) from error
            return
        row: dict[str, Any] = {
            "b_type": type_name,
            "b_id": key,
            "b_expected": change.expected_version,
        }
        if change.kind == "update":
            statement: sa.Update | sa.Delete = _UPDATE_DOCUMENT
            row |= {
                "b_version": change.new_version,
                "b_state": self._codec.aggregate_to_state(change.aggregate),
                "b_now": now,
            }
        else:
            statement = _DELETE_DOCUMENT
        if connection.execute(statement, row).rowcount != 1:
            raise self._stale(connection, change)

    def _write_mapped(
        self, connection: sa.Connection, mapper: RelationalMapper[Any, Any], change: Change
    ) -> None:
        table = mapper.table
        id_column, version_column = table.c[mapper.id_column], table.c[mapper.version_column]
        aggregate = change.aggregate
        if change.kind == "insert":
            aggregate.version = cast("int", change.new_version)
            try:
                with connection.begin_nested():
                    mapper.insert(connection, aggregate)
            except exc.IntegrityError as error:
                raise self._stale(connection, change, error) from error
            return
        # Check and bump the root's version first: this also locks the row (PostgreSQL) so
        # the mapper's writes below cannot interleave with another writer's.
        bumped = connection.execute(
            table.update()
            .where(id_column == aggregate.id, version_column == change.expected_version)
            .values({version_column: cast("int", change.expected_version) + 1})
        ).rowcount
        if bumped != 1:
            raise self._stale(connection, change)
        if change.kind == "update":
            aggregate.version = cast("int", change.new_version)
            mapper.update(connection, aggregate)
        else:
            mapper.delete(connection, aggregate)

    def _write_outbox(
        self,
        connection: sa.Connection,
        changes: Sequence[Change],
        names: dict[int, tuple[str, str]],
    ) -> None:
        owner: dict[int, Change] = {id(e): c for c in changes for e in c.events}
        if not owner:
            return
        rows: list[dict[str, Any]] = []
        for event in recorded_in_order(c.aggregate for c in changes):
            change = owner.get(id(event))
            if change is None:  # recorded after the snapshot of pending events was taken
                continue
            rows.append(self._outbox_row(change, names[id(change)], event))
        # One row is the common case: a single execute costs less than an executemany.
        connection.execute(_INSERT_OUTBOX, rows[0] if len(rows) == 1 else rows)

    def _outbox_row(
        self, change: Change, name: tuple[str, str], event: DomainEvent
    ) -> dict[str, Any]:
        record = self._codec.event_to_record(event)
        trace = trace_of(event.event_id, recorded_trace(change.aggregate, event))
        return {
            "event_id": event.event_id,
            "event_type": record.type_name,
            "event_version": record.schema_version,
            "aggregate_type": name[0],
            "aggregate_id": name[1],
            "aggregate_version": change.new_version
            if change.new_version is not None
            else cast("int", change.expected_version) + 1,
            "payload": record.payload,
            "occurred_at": event.occurred_at,
            "published_at": None,
            "correlation_id": trace.correlation_id,
            "causation_id": trace.causation_id,
        }

    # -- conflicts ---------------------------------------------------------------------------

    def _stored_version(self, connection: sa.Connection, change: Change) -> int | None:
        mapper = self._mappers.get(change.aggregate_type)
        if mapper is not None:
            table = mapper.table
            query = sa.select(table.c[mapper.version_column]).where(
                table.c[mapper.id_column] == change.aggregate.id
            )
        else:
            query = sa.select(aggregates_table.c.version).where(
                aggregates_table.c.aggregate_type == self._codec.type_name(change.aggregate_type),
                aggregates_table.c.aggregate_id == _key(change.aggregate.id),
            )
        try:
            return cast("int | None", connection.execute(query).scalar_one_or_none())
        except exc.DBAPIError:
            return None

    def _stale(
        self, connection: sa.Connection, change: Change, cause: Exception | None = None
    ) -> ConcurrencyError:
        actual = self._stored_version(connection, change)
        error = ConcurrencyError.stale(
            change.aggregate_type,
            change.aggregate.id,
            expected_version=change.expected_version or 0,
            actual_version=actual,
        )
        if cause is not None:
            error.add_note(f"the database refused the insert: {getattr(cause, 'orig', cause)}")
        return error

    def _conflict_after_busy(
        self, changes: Sequence[Change], busy_timeout_ms: int | None
    ) -> ConcurrencyError:
        """SQLite stayed locked past the busy timeout: report who changed what, if anyone."""
        with self._engine.connect() as connection:
            for change in changes:
                actual = self._stored_version(connection, change)
                if actual != change.expected_version:
                    return ConcurrencyError.stale(
                        change.aggregate_type,
                        change.aggregate.id,
                        expected_version=change.expected_version or 0,
                        actual_version=actual,
                    )
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


def _checked_mapped(
    mapper: RelationalMapper[Any, Any], aggregate_id: object, loaded: object
) -> object:
    """What ``mapper.load`` returned, if it is the aggregate asked for (or None)."""
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


def _document_row(type_name: str, key: str) -> str:
    return f"row {aggregates_table.name}(aggregate_type={type_name!r}, aggregate_id={key!r})"


_NOT_UTF8 = "Could not decode to UTF-8"


_DbError = TypeVar("_DbError", bound=exc.DBAPIError)
_TABLES = tuple(table.name for table in metadata.sorted_tables)
_MISSING = ("no such table", "does not exist")  # SQLite; PostgreSQL's "relation ... does not exist"


def _with_schema_hint(error: _DbError) -> _DbError:
    """Add a note saying how to create tactical's tables when the error is that one is missing."""
    message = str(error.orig)
    if any(m in message for m in _MISSING) and any(t in message for t in _TABLES):
        error.add_note(
            "tactical's tables are missing from this database: create them with "
            "tactical.sqlalchemy.create_schema(engine), or with Alembic over "
            "tactical.sqlalchemy.metadata"
        )
    return error


def _is_busy(error: exc.OperationalError | sqlite3.OperationalError) -> bool:
    # SQLAlchemy's wraps the driver's; the begin hook's BEGIN raises the driver's own.
    message = str(error.orig if isinstance(error, exc.OperationalError) else error)
    return says_sqlite_locked(message)


def _busy_timeout_ms(connection: sa.Connection) -> int | None:
    try:
        return cast("int | None", connection.exec_driver_sql("PRAGMA busy_timeout").scalar())
    except exc.DBAPIError:
        return None


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
