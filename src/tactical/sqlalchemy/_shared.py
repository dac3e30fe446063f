"""What the sync and the async SQL units of work share: settings, checks, error translation.

:class:`SqlUnitOfWorkBase` holds everything about a SQL unit of work that does not depend
on how its operations are carried out: the constructor's validation (engine, codec,
mappers, ``database_timeout``, dialect), the storage compiled for the connection's dialect,
and the errors it translates or annotates. ``SqlAlchemyUnitOfWork`` and
``AsyncSqlAlchemyUnitOfWork`` differ only in how they run the storage flows' operations.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, TypeVar, cast

from sqlalchemy.engine import Dialect

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._bus import EventBus
from tactical._codec import JsonCodec
from tactical._model import AggregateRoot
from tactical._uow_core import UnitOfWorkCore
from tactical.sqlalchemy._engine import (
    configure_engine,
    engine_refusal,
    is_async_engine,
    restart_sqlite_for_writing,
)
from tactical.sqlalchemy._mapper import RelationalMapper
from tactical.sqlalchemy._orm import OrmMapper
from tactical.sqlalchemy._statements import (
    Commit,
    Execute,
    MapperCall,
    Operation,
    ReadAlone,
    Rollback,
    Select,
)
from tactical.sqlalchemy._storage import AnyMapper, DocumentStorage
from tactical.sqlalchemy._watchdog import watch_connection, watched_engine

__all__ = ["SqlUnitOfWorkBase", "begins_at_start", "carry_out", "release_connection"]

_default_codec = JsonCodec()


if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine  # at run time only with greenlet

E = TypeVar("E", sa.Engine, "AsyncEngine")


class SqlUnitOfWorkBase(UnitOfWorkCore, Generic[E]):
    """The constructor, settings and decisions of a SQL unit of work that involve no I/O.

    The sync and the async unit of work subclass it with their engine type and set
    ``_asynchronous``; they add only how operations are carried out (and :meth:`_setup`
    for their own state).
    """

    _asynchronous: ClassVar[bool]

    def __init__(
        self,
        engine: E,
        bus: EventBus | None = None,
        *,
        codec: JsonCodec | None = None,
        mappers: Iterable[RelationalMapper[Any, Any] | OrmMapper[Any, Any, Any]] = (),
        allow_multiple_aggregates: bool = False,
        database_timeout: float | None = 30.0,
    ) -> None:
        super().__init__(bus, allow_multiple_aggregates=allow_multiple_aggregates)
        candidate: object = engine
        if self._asynchronous and is_async_engine(candidate):
            sync_engine = candidate.sync_engine
        elif not self._asynchronous and isinstance(candidate, sa.Engine):
            sync_engine = candidate
        else:
            raise TypeError(engine_refusal(candidate, asynchronous=self._asynchronous))
        if database_timeout is not None and not database_timeout > 0:
            raise ValueError(f"database_timeout must be positive, got {database_timeout}")
        configure_engine(sync_engine)  # refuses a database other than SQLite and PostgreSQL
        self._engine: E = engine
        self._database_timeout = database_timeout
        self._sqlite = sync_engine.dialect.name == "sqlite"
        self._codec = codec if codec is not None else _default_codec
        self._mappers: dict[type[AggregateRoot[Any]], AnyMapper] = {}
        for mapper in mappers:
            existing = self._mappers.get(mapper.aggregate_type)
            if existing is not None:
                raise ValueError(
                    f"two relational mappers for {mapper.aggregate_type.__qualname__}: "
                    f"{existing!r} and {mapper!r} (pass one per aggregate type)"
                )
            self._mappers[mapper.aggregate_type] = mapper
        # Compiled on the first connection, once the dialect knows its server.
        self._storage: DocumentStorage | None = None
        # Decided on the first connection too (the server's default isolation level).
        self._eager: bool | None = None
        # Once statements others run on a block's connection need the deadline (a mapper's,
        # the caller's on ``connection``): the engine blocks connect through from then on,
        # whose connections run the listeners that arm it, and the connection that got them
        # itself (taken before they were needed). Until then no statement pays for them.
        self._watched: E | None = None
        self._watched_sync: sa.Engine | None = None
        self._watched_connection: sa.Connection | None = None
        self._setup()

    def _setup(self) -> None:
        """Set up the subclass's own state, once the arguments are checked."""

    def _watch(self) -> None:
        """Connect through :func:`watched_engine` from the next block on."""
        if self._watched_sync is None:
            engine: Any = self._engine
            sync = watched_engine(engine.sync_engine if self._asynchronous else engine)
            # An async unit of work was given an AsyncEngine: its asyncio layer is loaded.
            self._watched = cast("E", type(engine)(sync) if self._asynchronous else sync)
            self._watched_sync = sync

    def _watch_connection(self, connection: sa.Connection) -> None:
        """Bound the statements others run on ``connection`` (the block's) from now on."""
        if connection.engine is self._watched_sync or connection is self._watched_connection:
            return
        self._watch()
        watch_connection(connection)
        self._watched_connection = connection

    @property
    def engine(self) -> E:
        """The engine this unit of work connects through."""
        return self._engine

    @property
    def codec(self) -> JsonCodec:
        """The codec that turns aggregates and events into JSON."""
        return self._codec

    def _storage_for(self, dialect: Dialect) -> DocumentStorage:
        storage = self._storage
        if storage is None:
            storage = self._storage = DocumentStorage(dialect, self._codec, self._mappers)
        return storage

    def _begins_at_start(self, connection: sa.Connection) -> bool:
        """Whether each block begins its transaction at once (see :func:`begins_at_start`)."""
        eager = self._eager
        if eager is None:
            eager = self._eager = begins_at_start(connection)
        return eager

    def _not_in_transaction(self) -> RuntimeError:
        return RuntimeError(f"{type(self).__name__} is not in a transaction")

    def _refuse_begin(self, error: BaseException) -> NoReturn:
        """Raise what a transaction that could not begin with ``error`` should raise."""
        # The SQLite "begin" listener talks to the driver directly: its error is sqlite3's.
        if isinstance(
            error, exc.OperationalError | sqlite3.OperationalError
        ) and "cannot start a transaction within a transaction" in str(error):
            raise RuntimeError(
                f"{type(self).__name__} cannot begin: the engine's only SQLite connection "
                "is in another unit of work's transaction. An in-memory database "
                "('sqlite://') is one connection, so its units of work cannot overlap; "
                "use a file database ('sqlite:///path') for concurrent units of work"
            ) from error
        raise error

    def _note_cut(self, error: BaseException) -> None:
        """Say on ``error`` that the database_timeout cut the round trip it reports."""
        error.add_note(
            f"the database did not answer within database_timeout "
            f"({self._database_timeout}s), so tactical shut its connection down; "
            "nothing was stored"
        )


_STRICT_LEVELS = ("REPEATABLE READ", "SERIALIZABLE")


def begins_at_start(connection: sa.Connection) -> bool:
    """Whether a block on ``connection`` must begin its transaction when it starts.

    SQLite does: a deferred transaction gives the block's reads one snapshot, and a read
    costs no round trip there, so reading outside it would save nothing. So does a
    PostgreSQL engine set to an isolation level stricter than READ COMMITTED (on the engine,
    its connect arguments or the server): it asked for the block's reads to share one
    snapshot. At PostgreSQL's default READ COMMITTED every statement sees its own snapshot
    anyway, so the block's transaction begins at its first write (or when
    ``uow.connection`` is taken, or a relational mapper loads), and a document read before
    that runs alone: one round trip instead of ``BEGIN``, the read and ``ROLLBACK``.
    """
    if connection.dialect.name == "sqlite":
        return True
    level = connection.get_execution_options().get("isolation_level")
    return (level or connection.default_isolation_level) in _STRICT_LEVELS


def carry_out(connection: sa.Connection, operation: Operation) -> object:
    """Run ``operation`` on ``connection``; its result, as the flow expects it."""
    if isinstance(operation, Execute):
        return operation.outcome(connection.exec_driver_sql(operation.sql, operation.parameters))
    if isinstance(operation, ReadAlone):
        if connection.in_transaction():
            return carry_out(connection, operation.execute)
        return _read_alone(connection, operation.execute)
    if isinstance(operation, MapperCall):
        if not operation.isolated:
            return operation.method(connection, operation.argument)
        with connection.begin_nested():
            return operation.method(connection, operation.argument)
    if isinstance(operation, Select):
        return list(connection.execute(operation.statement).all())
    if isinstance(operation, Commit):
        connection.commit()
    elif isinstance(operation, Rollback):
        # Also an inactive transaction (a failed COMMIT): the lookups that may follow
        # begin a new one.
        if connection.get_transaction() is not None:
            connection.rollback()
    else:
        restart_sqlite_for_writing(connection)
    return None


def _read_alone(connection: sa.Connection, execute: Execute) -> object:
    """Run ``execute`` in PostgreSQL's autocommit mode, leaving the connection as it was.

    The driver's ``autocommit`` (psycopg's, and SQLAlchemy's adapters of psycopg's async
    mode and of asyncpg) sends no ``BEGIN``; SQLAlchemy's own transaction, begun by the
    statement, is then ended without a round trip (the database has none open). The
    connection never goes back to the pool in autocommit mode: one that cannot be set back
    is invalidated. A connection the sync unit of work kept between blocks is in autocommit
    mode already, and stays so.
    """
    dbapi_connection: Any = connection.connection.dbapi_connection
    if dbapi_connection.autocommit:
        try:
            return carry_out(connection, execute)
        finally:
            if connection.in_transaction():
                connection.rollback()
    dbapi_connection.autocommit = True
    try:
        return carry_out(connection, execute)
    finally:
        try:
            if connection.in_transaction():
                connection.rollback()
        finally:
            if not connection.invalidated:
                try:
                    dbapi_connection.autocommit = False
                except BaseException:
                    connection.invalidate()
                    raise


def release_connection(connection: sa.Connection) -> None:
    """Close ``connection``, which rolls back a transaction it still has."""
    transaction = connection.get_transaction()
    if transaction is not None and not transaction.is_active:
        # A failed COMMIT leaves its transaction inactive, and closing that would return the
        # driver's connection unreset (SQLite's still holding its write lock): rolling it
        # back first lets the pool reset it. An active one is rolled back by close()
        # itself, once (a rollback before would make the pool roll back again).
        connection.rollback()
    connection.close()
