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
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._codec import JsonCodec
from tactical._model import AggregateRoot
from tactical.sqlalchemy._engine import (
    configure_engine,
    engine_refusal,
    restart_sqlite_for_writing,
)
from tactical.sqlalchemy._mapper import RelationalMapper
from tactical.sqlalchemy._statements import (
    SUPPORTED_DIALECTS,
    Commit,
    Execute,
    MapperCall,
    Operation,
    Rollback,
)
from tactical.sqlalchemy._storage import DocumentStorage

__all__ = ["SqlUnitOfWorkBase", "carry_out", "release_connection"]

_default_codec = JsonCodec()


class SqlUnitOfWorkBase:
    """The settings and the decisions of a SQL unit of work that involve no I/O."""

    _codec: JsonCodec
    _mappers: dict[type[AggregateRoot[Any]], RelationalMapper[Any, Any]]
    _database_timeout: float | None
    _sqlite: bool
    _storage: DocumentStorage | None

    def _configure(
        self,
        engine: object,
        *,
        asynchronous: bool,
        codec: JsonCodec | None,
        mappers: Iterable[RelationalMapper[Any, Any]],
        database_timeout: float | None,
    ) -> sa.Engine:
        """Check and keep the constructor's arguments; the engine's sync side, configured.

        Raises:
            TypeError: ``engine`` is not the kind of engine this unit of work runs on.
            ValueError: Two mappers store one type, ``database_timeout`` is not positive,
                or the database is neither SQLite nor PostgreSQL.
        """
        name = type(self).__name__
        if asynchronous and isinstance(engine, AsyncEngine):
            sync_engine = engine.sync_engine
        elif not asynchronous and isinstance(engine, sa.Engine):
            sync_engine = engine
        else:
            raise TypeError(engine_refusal(engine, asynchronous=asynchronous))
        if database_timeout is not None and not database_timeout > 0:
            raise ValueError(f"database_timeout must be positive, got {database_timeout}")
        configure_engine(sync_engine)
        if sync_engine.dialect.name not in SUPPORTED_DIALECTS:
            raise ValueError(
                f"{name} runs on SQLite and PostgreSQL, "
                f"not {sync_engine.dialect.name} ({sync_engine.url!r})"
            )
        self._database_timeout = database_timeout
        self._sqlite = sync_engine.dialect.name == "sqlite"
        self._codec = codec if codec is not None else _default_codec
        self._mappers = {}
        for mapper in mappers:
            existing = self._mappers.get(mapper.aggregate_type)
            if existing is not None:
                raise ValueError(
                    f"two relational mappers for {mapper.aggregate_type.__qualname__}: "
                    f"{existing!r} and {mapper!r} (pass one per aggregate type)"
                )
            self._mappers[mapper.aggregate_type] = mapper
        # Compiled on the first connection, once the dialect knows its server.
        self._storage = None
        return sync_engine

    @property
    def codec(self) -> JsonCodec:
        """The codec that turns aggregates and events into JSON."""
        return self._codec

    def _storage_for(self, dialect: Dialect) -> DocumentStorage:
        storage = self._storage
        if storage is None:
            storage = self._storage = DocumentStorage(dialect, self._codec, self._mappers)
        return storage

    def _not_in_transaction(self) -> RuntimeError:
        return RuntimeError(f"{type(self).__name__} is not in a transaction")

    def _begin_refusal(self, error: BaseException) -> BaseException:
        """What to raise when a transaction could not begin with ``error``."""
        # The SQLite "begin" listener talks to the driver directly: its error is sqlite3's.
        if isinstance(
            error, exc.OperationalError | sqlite3.OperationalError
        ) and "cannot start a transaction within a transaction" in str(error):
            refusal = RuntimeError(
                f"{type(self).__name__} cannot begin: the engine's only SQLite connection "
                "is in another unit of work's transaction. An in-memory database "
                "('sqlite://') is one connection, so its units of work cannot overlap; "
                "use a file database ('sqlite:///path') for concurrent units of work"
            )
            refusal.__cause__ = error
            return refusal
        return error

    def _note_cut(self, error: BaseException) -> None:
        """Say on ``error`` that the database_timeout cut the round trip it reports."""
        error.add_note(
            f"the database did not answer within database_timeout "
            f"({self._database_timeout}s), so tactical shut its connection down; "
            "nothing was stored"
        )


def carry_out(connection: sa.Connection, operation: Operation) -> object:
    """Run ``operation`` on ``connection``; its result, as the flow expects it."""
    if isinstance(operation, Execute):
        return operation.outcome(connection.exec_driver_sql(operation.sql, operation.parameters))
    if isinstance(operation, MapperCall):
        if not operation.isolated:
            return operation.method(connection, operation.argument)
        with connection.begin_nested():
            return operation.method(connection, operation.argument)
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
