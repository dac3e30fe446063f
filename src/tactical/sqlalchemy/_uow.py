"""SqlAlchemyUnitOfWork: the unit of work over SQLAlchemy 2 (SQLite, PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._flow import run
from tactical._model import AggregateRoot
from tactical._query import Query
from tactical._uow import Change, TransactionalUnitOfWork
from tactical.sqlalchemy._kept import (
    give_back,
    keep_connection,
    keeps_connections,
    take_connection,
)
from tactical.sqlalchemy._shared import SqlUnitOfWorkBase, carry_out, release_connection
from tactical.sqlalchemy._statements import MapperCall, Operation, ReadAlone
from tactical.sqlalchemy._watchdog import RoundTripDeadline, install_guard, remove_guard

__all__ = ["SqlAlchemyUnitOfWork"]

A = TypeVar("A", bound=AggregateRoot[Any])


class SqlAlchemyUnitOfWork(SqlUnitOfWorkBase[sa.Engine], TransactionalUnitOfWork):
    """A unit of work over a SQLAlchemy 2 :class:`~sqlalchemy.engine.Engine`.

    Each ``with`` block runs in one database transaction on its own connection. On
    PostgreSQL at READ COMMITTED (its default) the transaction begins when the block first
    needs it: at the commit's first write, when :attr:`connection` is taken or when a
    relational mapper loads; a document loaded before that is read alone, in the
    driver's autocommit mode (one round trip; the write checks its version all the same).
    SQLite, and PostgreSQL at a stricter isolation level, begin it when the block starts
    (``.. versionchanged:: 0.2.0``). With SQLAlchemy's ``QueuePool`` on a SQLite file or
    on PostgreSQL over psycopg, the connection of a block that ended stays checked out,
    outside any transaction (it then holds no lock and no snapshot), and the next block in
    the same thread on the same engine takes it: one connection a thread at most, only
    while the pool has fewer than its ``pool_size`` checked out and for a second after its
    checkout (then it goes back through the pool, whose ``pool_recycle`` and
    ``pool_pre_ping`` apply), never with pool checkout, checkin or reset listeners, closed
    when the thread ends. A kept PostgreSQL connection waits in the driver's autocommit
    mode, so a block that only loads switches nothing; one that died while kept (a server
    restart) is replaced: a block's first round trip on it is sent again, once, on a
    connection from the pool when it fails with a disconnect (``.. versionchanged::
    0.2.0``: pool checkout and return cost a fifth of a SQLite load, and about a tenth of
    a PostgreSQL one's CPU time). By default
    an aggregate is stored as one JSON document row (type, id, version, state) in
    ``tactical_aggregates``, with no mapping code; register a :class:`RelationalMapper` or an
    :class:`OrmMapper` to store a type in tables of your own. Every write is version-checked
    (``UPDATE ... WHERE id = :id AND version = :loaded``); a mismatch raises
    :class:`~tactical.ConcurrencyError` and the whole transaction rolls back.

    The events of every saved aggregate are inserted into ``tactical_outbox`` in the same
    transaction (position order = recorded order), and published on the bus when the
    committed block ends (``.. versionchanged:: 0.2.0``: no longer inside ``commit()``).
    Timers scheduled or cancelled in the block (:meth:`~tactical.SchedulingUnitOfWork.schedule`)
    are written to ``tactical_scheduled`` in that transaction too
    (``.. versionadded:: 0.2.0``); a :class:`~tactical.outbox.TimerWorker` fires them.

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
        mappers: Mappers to tables of your own, one per aggregate type they store: a
            :class:`RelationalMapper` (Core statements) or an :class:`OrmMapper` (ORM
            models; ``.. versionadded:: 0.2.0``).
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
        ValueError: Two of ``mappers`` store the same aggregate type,
            ``database_timeout`` is not positive, or the engine's database is neither
            SQLite nor PostgreSQL.

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

    _asynchronous = False

    def _setup(self) -> None:
        # The block's round-trip deadline, with the pooled connection's info it is in.
        self._guard: tuple[RoundTripDeadline, dict[Any, Any]] | None = None
        self._cut = False  # set by the deadline thread when it shut a connection down
        # Drivers without a socket (SQLite) are not guarded.
        self._guarded = self._database_timeout is not None and not self._sqlite
        self._seconds = self._database_timeout or 0.0  # used when guarded
        # The unit of work arms the deadline around its own round trips; a mapper's
        # statements are bounded through the events of the watched engine's connections.
        if self._guarded and self._mappers:
            self._watch()
        self._connection: sa.Connection | None = None
        # The thread keeps its connection between blocks (see _kept), taken from the pool at
        # _since (time.monotonic()).
        self._keeps = keeps_connections(self._engine)
        self._since = 0.0
        # PostgreSQL, on a kept connection: it is in the driver's autocommit mode (switched
        # off before the block begins a transaction), and it has not answered yet in this
        # block (its first round trip is retried on a disconnect).
        self._autocommit = False
        self._untried = False

    @property
    def connection(self) -> sa.Connection:
        """The current transaction's connection, for queries (read models, reports).

        Taking it begins the block's transaction if it has not begun, so what you run on
        it commits or rolls back with the block (and the block's later loads run in it);
        do not begin, commit or roll back this connection yourself. Write aggregates
        through repositories, not through this connection: only repository writes are
        version-checked and produce outbox rows.

        Raises:
            RuntimeError: Not inside a ``with`` block.
        """
        if self._connection is None:
            raise self._not_in_transaction()
        if self._untried:
            # Its statements are the caller's, not retried: a connection of the pool's instead.
            self._exchange()
        elif self._autocommit:
            self._end_autocommit()
        connection = self._connection  # _exchange() may have replaced it
        if self._guarded:
            self._watch_connection(connection)  # the caller's statements get the deadline too
        if not (self._finished or connection.in_transaction()):
            connection.begin()  # PostgreSQL: sends nothing, the driver begins with a statement
        return connection

    # -- hooks -------------------------------------------------------------------------------

    def _begin(self) -> None:
        engine = self._watched or self._engine
        if self._keeps:
            connection, self._since, kept = take_connection(engine)
        else:
            connection, kept = engine.connect(), False
        self._open(connection, kept=kept and not self._sqlite)

    def _open(self, connection: sa.Connection, *, kept: bool) -> None:
        """Make ``connection`` the block's; ``kept``: a kept PostgreSQL one (in autocommit)."""
        self._autocommit = self._untried = kept
        if self._begins_at_start(connection):
            try:
                if kept:
                    self._end_autocommit(connection)
                connection.begin()
            except BaseException as error:
                give_back(connection, connection.engine.pool)
                self._refuse_begin(error)
        self._connection = connection
        if self._guarded:
            self._cut = False
            # Installed and removed directly (no context manager): a load pays for it.
            self._guard = install_guard(connection, self._seconds, self._mark_cut)

    def _end_autocommit(self, connection: sa.Connection | None = None) -> None:
        """Switch the driver's autocommit off, before the block begins a transaction."""
        connection = connection or cast("sa.Connection", self._connection)
        driver: Any = connection.connection.dbapi_connection
        driver.autocommit = False  # idle: psycopg sends nothing
        self._autocommit = False

    def _exchange(self) -> None:
        """Give the block's kept connection back and take one from the pool instead.

        The pool's care (``pool_pre_ping``, the refresh of connections older than a
        disconnect) applies to the new one.
        """
        connection, guard = cast("sa.Connection", self._connection), self._guard
        self._connection = self._guard = None
        if guard is not None:
            remove_guard(guard)
        give_back(connection, connection.engine.pool)
        self._since = time.monotonic()
        self._open((self._watched or self._engine).connect(), kept=False)

    def _end(self) -> None:
        self._release()

    def _rollback(self) -> None:
        self._release()

    def _release(self) -> None:
        """Keep the connection for the next block, or close it; a transaction it still has is
        rolled back either way."""
        connection, guard = self._connection, self._guard
        if connection is None:
            return
        self._connection = self._guard = None
        self._autocommit = self._untried = False
        # Not a connection that got listeners of its own (_watch_connection).
        keep = self._keeps and connection is not self._watched_connection
        deadline = None
        if guard is not None:
            remove_guard(guard)  # before the connection goes back to the pool
            # Keeping it sends nothing, unless a transaction is still to be rolled back.
            if not keep or connection.get_transaction() is not None:
                deadline = guard[0]
                deadline.arm()
        try:
            if keep:
                keep_connection(connection, self._since)
            else:
                release_connection(connection)
        finally:
            if deadline is not None:
                deadline.disarm()

    def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        storage = self._storage or self._storage_for(
            cast("sa.Connection", self._connection).dialect
        )
        return run(storage.load(aggregate_type, aggregate_id), self._perform)

    def _find(self, query: Query[A], held: frozenset[object]) -> list[A]:
        storage = self._storage or self._storage_for(
            cast("sa.Connection", self._connection).dialect
        )
        return run(storage.find(query, held), self._perform)

    def _store(self, changes: Sequence[Change]) -> None:
        storage = self._storage or self._storage_for(
            cast("sa.Connection", self._connection).dialect
        )
        run(storage.store(changes, self._timer_writes()), self._perform)

    def _perform(self, operation: Operation) -> object:
        """Carry out one operation of a storage flow, under the round-trip deadline."""
        if self._autocommit and not isinstance(operation, ReadAlone):
            self._end_autocommit()
        if self._untried:
            return self._first_round_trip(operation)
        # A mapper's statements are bounded one by one by the events of the watched
        # engine's connections.
        guard = None if isinstance(operation, MapperCall) else self._guard
        deadline = None if guard is None else guard[0]
        if deadline is not None:
            deadline.arm()
        try:
            return carry_out(self._connection, operation)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]  # not cast(): a call per round trip
        except exc.DBAPIError as error:
            self._note_deadline(error)
            raise
        finally:
            if deadline is not None:
                deadline.disarm()

    def _first_round_trip(self, operation: Operation) -> object:
        """The block's first round trip on a kept connection: retried once on a disconnect.

        The connection may have died while it was kept (a server restart, an idle timeout,
        ``pg_terminate_backend``), which the pool would have noticed (``pool_pre_ping``) or
        refreshed. Nothing of the block has reached the database before this round trip,
        and what it sends cannot commit (a read alone, or the first statement of the
        transaction): it is sent again on a connection from the pool. Not when the deadline
        cut it (the database did not answer), nor a mapper's statements (its own calls):
        they run on a connection from the pool.
        """
        self._untried = False
        if not isinstance(operation, MapperCall):
            try:
                return self._perform(operation)
            except exc.DBAPIError as error:
                if not error.connection_invalidated or self._cut:
                    raise
        self._exchange()
        return self._perform(operation)

    def _mark_cut(self) -> None:
        self._cut = True

    def _note_deadline(self, error: exc.DBAPIError) -> None:
        if self._cut:
            self._note_cut(error)
