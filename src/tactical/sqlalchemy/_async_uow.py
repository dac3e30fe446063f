"""AsyncSqlAlchemyUnitOfWork: the SQL unit of work over SQLAlchemy's AsyncEngine."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from tactical._flow import Flow, run
from tactical._model import AggregateRoot
from tactical._query import Query
from tactical._tracking import Change
from tactical._uow_async import AsyncTransactionalUnitOfWork
from tactical.sqlalchemy._greenlets import run_in_greenlet
from tactical.sqlalchemy._shared import SqlUnitOfWorkBase, carry_out, release_connection
from tactical.sqlalchemy._statements import Operation
from tactical.sqlalchemy._task_deadline import TaskDeadline
from tactical.sqlalchemy._watchdog import (
    RoundTripDeadline,
    install_guard,
    remove_guard,
)

__all__ = ["AsyncSqlAlchemyUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])
T = TypeVar("T")


if TYPE_CHECKING:
    # At run time only where greenlet is installed (extras "async", "asyncpg"): importing
    # tactical.sqlalchemy must work with the extra "sql" alone (the connection property
    # imports AsyncConnection when it makes one).
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class AsyncSqlAlchemyUnitOfWork(SqlUnitOfWorkBase["AsyncEngine"], AsyncTransactionalUnitOfWork):
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
    events are published when the committed block ends, in recorded order, ``async def``
    handlers awaited. A cancellation (``task.cancel()``, ``asyncio.timeout``) at any await rolls
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
        mappers: Mappers to tables of your own, one per aggregate type they store:
            :class:`RelationalMapper` or :class:`OrmMapper` (their methods are sync: they
            run on the connection through ``run_sync``, an ORM mapper's session too).
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
        self._deadline = None if self._timeout is None else TaskDeadline(self._timeout)
        # The block's connection: SQLAlchemy's sync ``Connection`` on the async driver,
        # which the storage flows run on in SQLAlchemy's greenlet, with the engine it came
        # from; the ``AsyncConnection`` around it is made only when :attr:`connection` is
        # taken (a block that loads and commits never needs one).
        self._connection: sa.Connection | None = None
        self._connected_via: AsyncEngine = self._engine
        self._async_connection: AsyncConnection | None = None
        # The deadline of the statements others run on the connection (set when it is
        # taken), with the pooled connection's info it is registered in.
        self._guard: tuple[RoundTripDeadline, dict[Any, Any]] | None = None

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
        sync_connection = self._connection
        if sync_connection is None:
            raise self._not_in_transaction()
        connection = self._async_connection
        if connection is None:
            from sqlalchemy.ext.asyncio import AsyncConnection  # see the imports above

            connection = self._async_connection = AsyncConnection(
                self._connected_via, sync_connection
            )
        if not (self._finished or sync_connection.in_transaction()):
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

        The sync connection's events arm a deadline around each of them (SQLAlchemy runs
        them in its greenlet for async statements too); past it, the connection is cut from
        its event loop, as the sync unit of work's watchdog does.
        """
        self._watch_connection(connection)
        self._guard = install_guard(connection, seconds, _nothing, self._note_cut)

    # -- hooks -------------------------------------------------------------------------------
    # Those that await the database return the awaitable of their one greenlet rather than
    # awaiting it in a coroutine of their own: every round trip suspends and resumes each
    # coroutine of the chain that awaits it, so each level left out is saved five times
    # over in a load + command + commit.

    async def _begin(self) -> None:
        engine = self._watched or self._engine
        connection: sa.Connection = await self._bounded(run_in_greenlet(engine.sync_engine.connect))
        if self._begins_at_start(connection):
            try:
                await self._bounded(run_in_greenlet(connection.begin))
            except BaseException as error:
                await run_in_greenlet(connection.close)
                self._refuse_begin(error)
        self._connection, self._connected_via = connection, engine

    def _end(self) -> Awaitable[None]:
        return self._release()

    def _rollback(self) -> Awaitable[None]:
        return self._release()

    def _release(self) -> Awaitable[None]:
        connection, guard = self._connection, self._guard
        if connection is None:
            return _nothing_to_await()
        self._connection = self._guard = self._async_connection = None
        if guard is not None:
            remove_guard(guard)  # before the connection goes back to the pool
        return self._give_back(connection)

    async def _give_back(self, connection: sa.Connection) -> None:
        try:
            await self._bounded(run_in_greenlet(release_connection, connection))
        except BaseException:
            await run_in_greenlet(_discard, connection)
            raise

    def _load(self, aggregate_type: type[A], aggregate_id: object) -> Awaitable[A | None]:
        connection = cast("sa.Connection", self._connection)
        storage = self._storage or self._storage_for(connection.dialect)
        return self._run_flow(connection, storage.load(aggregate_type, aggregate_id))

    def _find(self, query: Query[A], held: frozenset[object]) -> Awaitable[list[A]]:
        connection = cast("sa.Connection", self._connection)
        storage = self._storage or self._storage_for(connection.dialect)
        return self._run_flow(connection, storage.find(query, held))

    def _store(self, changes: Sequence[Change]) -> Awaitable[None]:
        connection = cast("sa.Connection", self._connection)
        storage = self._storage or self._storage_for(connection.dialect)
        return self._run_flow(connection, storage.store(changes, self._timer_writes()))

    def _run_flow(self, connection: sa.Connection, flow: Flow[Operation, T]) -> Awaitable[T]:
        """Run a storage flow on the sync ``connection``, in one greenlet, bounded.

        SQLAlchemy runs a sync ``Connection`` on an async driver in a greenlet
        (``AsyncConnection.run_sync`` does no more, :func:`run_in_greenlet` too): the
        whole flow, its clean-up included, runs in one, driven by the sync driver with the
        sync unit of work's ``carry_out``.
        Its round trips are the driver's awaits inside it, where a cancellation lands as it
        would at one call per statement: SQLAlchemy invalidates the interrupted connection
        and the exception is thrown into the flow, which rolls back (no I/O on an
        invalidated connection) and raises it. database_timeout bounds each round trip:
        the deadline is moved before each one (:meth:`_round_trip`).
        """
        return self._within_deadline(run_in_greenlet(self._drive, connection, flow))

    def _drive(self, connection: sa.Connection, flow: Flow[Operation, T]) -> T:
        """Drive ``flow`` on ``connection`` (in SQLAlchemy's greenlet, on the event loop)."""
        return run(flow, partial(self._round_trip, connection))

    def _round_trip(self, connection: sa.Connection, operation: Operation) -> object:
        """Carry out one operation of a flow, given database_timeout from now on."""
        deadline = self._deadline
        if deadline is not None:
            # Once expired it stays so: the round trip it cut was invalidated, and what the
            # flow still does (its rollback) sends nothing.
            deadline.rearm()
        return carry_out(connection, operation)

    async def _within_deadline(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` within database_timeout (its round trips to the database).

        Cancelled in the middle of a driver call, SQLAlchemy invalidates the connection
        (its state is unknown), so it is discarded instead of going back to the pool.
        """
        deadline = self._deadline
        if deadline is None:
            return await awaitable
        # Its own round trips are bounded here: the connection's listeners leave them alone.
        guard = self._guard
        if guard is not None:
            guard[0].suspended = True
        deadline.arm()
        try:
            result = await awaitable
        except BaseException as error:
            if deadline.end(error):
                timeout = TimeoutError()
                self._note_cut(timeout)
                raise timeout from error
            raise
        finally:
            if guard is not None:
                guard[0].suspended = False
        deadline.end(None)
        return result

    # One round trip (connecting, beginning, closing): the same bound, under its own name.
    _bounded = _within_deadline


def _nothing() -> None:
    """What the deadline does before it cuts: nothing more (its note marks the error)."""


async def _nothing_to_await() -> None:
    """What releasing awaits when the block has no connection (any more)."""


def _discard(connection: sa.Connection) -> None:
    """Close ``connection`` after an interrupted round trip, invalidating it first.

    Interrupted while closing, it is closed already: the pool discarded its driver
    connection when the reset (a rollback) failed.
    """
    if connection.closed:
        return
    try:
        if not connection.invalidated:
            connection.invalidate()
    finally:
        connection.close()
