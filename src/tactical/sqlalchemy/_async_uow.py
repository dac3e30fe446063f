"""AsyncSqlAlchemyUnitOfWork: the SQL unit of work over SQLAlchemy's AsyncEngine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

import sqlalchemy as sa
from tactical._flow import run_async
from tactical._model import AggregateRoot
from tactical._query import Query
from tactical._tracking import Change
from tactical._uow_async import AsyncTransactionalUnitOfWork
from tactical.sqlalchemy._shared import SqlUnitOfWorkBase, carry_out, release_connection
from tactical.sqlalchemy._statements import Execute, Operation, ReadAlone
from tactical.sqlalchemy._watchdog import (
    RoundTripDeadline,
    install_guard,
    remove_guard,
    watch_round_trips,
)

__all__ = ["AsyncSqlAlchemyUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])
T = TypeVar("T")


class AsyncSqlAlchemyUnitOfWork(SqlUnitOfWorkBase[AsyncEngine], AsyncTransactionalUnitOfWork):
    """:class:`SqlAlchemyUnitOfWork` for asyncio, over a SQLAlchemy ``AsyncEngine``.

    The same tables, rows and decisions as the sync unit of work (the two share their
    storage logic; only the way a statement is carried out differs), so a sync worker and
    an async web application can share one database. Drivers: aiosqlite for SQLite (a file
    database, ``sqlite+aiosqlite:///path``), psycopg's async mode
    (``postgresql+psycopg://``) or asyncpg (``postgresql+asyncpg://``) for PostgreSQL.

    Each ``async with`` block is one database transaction on its own connection, which
    begins when the sync unit of work's would (on PostgreSQL at READ COMMITTED, at the
    first write, when :attr:`connection` is taken or a relational mapper loads). Every
    write is version-checked and raises :class:`~tactical.ConcurrencyError` on a mismatch
    (on SQLite only a moved version, or a write lock held past the busy timeout, ever
    does); the outbox rows of the events are written in the same transaction, and the
    events are published after the commit in recorded order, ``async def`` handlers
    awaited. A cancellation (``task.cancel()``, ``asyncio.timeout``) at any await rolls
    the transaction back: a connection interrupted in the middle of a round trip is
    invalidated, never returned to the pool inside a transaction. Only a cancellation
    while the ``COMMIT`` itself is in flight leaves it to the database whether the commit
    happened (everything of it stored, or nothing).

    Create the tables with :func:`create_schema` (``await conn.run_sync(metadata.create_all)``
    on an async connection).

    Args:
        engine: The :class:`~sqlalchemy.ext.asyncio.AsyncEngine` to use; it is prepared
            with :func:`configure_engine`.
        bus: Where committed events are published; a new :class:`~tactical.EventBus` if
            omitted.
        codec: How aggregates and events become JSON; a shared default
            :class:`~tactical.JsonCodec` if omitted.
        mappers: Relational mappers, one per aggregate type they store (their methods are
            sync: they run on the connection through ``run_sync``).
        allow_multiple_aggregates: Let one transaction change several aggregates; by
            default :meth:`~tactical.AsyncUnitOfWork.commit` refuses that with
            :class:`~tactical.TransactionBoundaryError`.
        database_timeout: Seconds each await on PostgreSQL (connecting, a statement, a
            commit, a rollback) may take (30 by default): past it the await is cancelled,
            the connection invalidated, and :class:`TimeoutError` raised with a note
            saying so; the transaction is rolled back. Statements you run yourself on
            :attr:`connection` get the same bound: past it their connection is cut (the
            socket shut down, asyncpg's connection terminated) and they fail with
            SQLAlchemy's ``OperationalError`` or ``InterfaceError``, with the same note
            (``.. versionchanged:: 0.2.0``). None turns it off. SQLite is not bounded (a
            busy timeout applies).

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``AsyncEngine`` (a sync ``Engine`` or a
            URL string, say) or ``bus`` is not an :class:`~tactical.EventBus`.
        ValueError: Two of ``mappers`` store the same aggregate type, ``database_timeout``
            is not positive, or the engine's database is neither SQLite nor PostgreSQL.

    .. versionadded:: 0.2.0
    """

    _asynchronous = True

    def _setup(self) -> None:
        # Drivers without a socket (SQLite) are not bounded, as in the sync unit of work.
        self._timeout = None if self._sqlite else self._database_timeout
        self._connection: AsyncConnection | None = None
        # The deadline of the statements others run on the connection (set when it is
        # taken), with the pooled connection's info it is registered in.
        self._guard: tuple[RoundTripDeadline, dict[Any, Any]] | None = None
        self._watching = False  # the engine's listeners are installed

    @property
    def connection(self) -> AsyncConnection:
        """The current transaction's connection, for queries (read models, reports).

        Taking it begins the block's transaction if it has not begun (no await is needed:
        on PostgreSQL the driver sends ``BEGIN`` with the next statement), so what you
        run on it commits or rolls back with the block; do not begin, commit or roll back
        this connection yourself. Write aggregates through repositories, not through this
        connection: only repository writes are version-checked and produce outbox rows.

        Raises:
            RuntimeError: Not inside an ``async with`` block.
        """
        connection = self._connection
        if connection is None:
            raise self._not_in_transaction()
        sync_connection = cast("sa.Connection", connection.sync_connection)
        if not (self._finished or connection.in_transaction()):
            # Only on PostgreSQL (SQLite's blocks begin at once), where beginning sends
            # nothing (the driver begins with the next statement): no await is needed.
            sync_connection.begin()
        # An invalidated connection (an await of the block was cut) is not guarded: its
        # statements fail at once.
        if self._timeout is not None and self._guard is None and not sync_connection.invalidated:
            self._guard_others(sync_connection, self._timeout)
        return connection

    def _guard_others(self, connection: sa.Connection, seconds: float) -> None:
        """Bound the statements others run on ``connection`` (the caller, an inbox consumer).

        The sync engine's events arm a deadline around each of them (SQLAlchemy runs them
        in its greenlet for async statements too); past it, the connection is cut from its
        event loop, as the sync unit of work's watchdog does.
        """
        if not self._watching:
            watch_round_trips(self._engine.sync_engine)
            self._watching = True
        self._guard = install_guard(connection, seconds, _nothing, self._note_cut)

    # -- hooks -------------------------------------------------------------------------------

    async def _begin(self) -> None:
        connection = await self._bounded(self._engine.connect())
        if self._begins_at_start(cast("sa.Connection", connection.sync_connection)):
            try:
                await self._bounded(connection.begin())
            except BaseException as error:
                await connection.close()
                self._refuse_begin(error)
        self._connection = connection

    async def _end(self) -> None:
        await self._release()

    async def _rollback(self) -> None:
        await self._release()

    async def _release(self) -> None:
        connection, guard = self._connection, self._guard
        if connection is None:
            return
        self._connection = self._guard = None
        if guard is not None:
            remove_guard(guard)  # before the connection goes back to the pool
        try:
            await self._bounded(connection.run_sync(release_connection))
        except BaseException:
            await _discard(connection)
            raise

    async def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        storage = self._storage or self._storage_for(
            cast("AsyncConnection", self._connection).dialect
        )
        return await run_async(storage.load(aggregate_type, aggregate_id), self._carry_out)

    async def _find(self, query: Query[A], held: frozenset[object]) -> list[A]:
        storage = self._storage or self._storage_for(
            cast("AsyncConnection", self._connection).dialect
        )
        return await run_async(storage.find(query, held), self._carry_out)

    async def _store(self, changes: Sequence[Change]) -> None:
        storage = self._storage or self._storage_for(
            cast("AsyncConnection", self._connection).dialect
        )
        await run_async(storage.store(changes), self._carry_out)

    async def _carry_out(self, operation: Operation) -> object:
        """Carry out one operation of a storage flow on the connection, bounded."""
        connection = cast("AsyncConnection", self._connection)
        if isinstance(operation, ReadAlone) and connection.in_transaction():
            operation = operation.execute
        if isinstance(operation, Execute):
            result = await self._bounded(
                connection.exec_driver_sql(operation.sql, operation.parameters)
            )
            return operation.outcome(result)
        # A mapper's calls, a read alone (it sets the driver's autocommit), commit, rollback
        # and SQLite's restart are the sync driver's own, run on the connection's sync side.
        return await self._bounded(connection.run_sync(carry_out, operation))

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` within database_timeout (a round trip to the database).

        Cancelled in the middle of a driver call, SQLAlchemy invalidates the connection
        (its state is unknown), so it is discarded instead of going back to the pool.
        """
        if self._timeout is None:
            return await awaitable
        # Its own round trips are bounded here: the engine's listeners leave them alone.
        guard = self._guard
        if guard is not None:
            guard[0].suspended = True
        try:
            async with asyncio.timeout(self._timeout):
                return await awaitable
        except TimeoutError as error:
            self._note_cut(error)
            raise
        finally:
            if guard is not None:
                guard[0].suspended = False


def _nothing() -> None:
    """What the deadline does before it cuts: nothing more (its note marks the error)."""


async def _discard(connection: AsyncConnection) -> None:
    """Close ``connection`` after an interrupted round trip, invalidating it first.

    Interrupted while closing, it is closed already: the pool discarded its driver
    connection when the reset (a rollback) failed.
    """
    if connection.closed:
        return
    try:
        if not connection.invalidated:
            await connection.invalidate()
    finally:
        await connection.close()
