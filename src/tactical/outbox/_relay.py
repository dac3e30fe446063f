"""OutboxRelay: moves committed outbox rows to a publisher, at least once, in order."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Generator, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import exc
from tactical.outbox._message import OutboxMessage, Publisher, UndeliverableError, backoff_delay
from tactical.outbox._parking import (
    BatchPlan,
    ParkedRow,
    eligible_rows,
    park_statement,
    parked_row,
    parked_rows,
    plan_after_refusal,
    plan_batch,
    retry_statement,
)
from tactical.sqlalchemy._engine import configure_engine
from tactical.sqlalchemy._schema import outbox_table
from tactical.sqlalchemy._watchdog import guard_round_trips, watch_round_trips

__all__ = ["DEFAULT_DATABASE_TIMEOUT", "RELAY_LOCK_KEY", "OutboxRelay"]

_log = logging.getLogger("tactical.outbox")

RELAY_LOCK_KEY: int = 0x7461_6374_6F75_7462  # "tactoutb": the PostgreSQL advisory lock of relays
"""The PostgreSQL advisory lock key relays take, one at a time, for each batch."""

DEFAULT_DATABASE_TIMEOUT: float = 10.0
"""Seconds one database round trip of a relay on PostgreSQL may take before it is cut.

.. versionadded:: 0.2.0
"""


class OutboxRelay:
    """Publishes the outbox's unpublished rows through a :class:`Publisher`, oldest first.

    Each :meth:`relay_once` reads up to ``batch_size`` rows whose ``published_at`` is NULL
    (and that are not parked, nor behind a parked row of their aggregate), in position
    order, hands them to the publisher, and marks them published only after
    ``publish`` returned (the broker confirmed every message). A failed publish marks
    nothing; a crash between publish and mark makes the relay send the batch again: delivery
    is *at least once*, and consumers deduplicate by event id (see :class:`InboxConsumer`).
    Nothing is held in memory between batches, so a restarted relay resumes where the
    outbox says it is.

    **Parked rows.** A row that can never be published is *parked* instead of failing
    every batch: its payload cannot be read (not JSON, not UTF-8, nested deeper than
    Python's recursion limit), or the publisher refused it for good with
    :class:`UndeliverableError` (a body it cannot encode, a type name the broker's protocol
    cannot carry, an event type the bus cannot decode). The row keeps the time and the
    error (columns ``parked_at`` and ``error``) until :meth:`retry_parked` un-parks it;
    :meth:`parked` lists them. The later rows of its aggregate wait behind it, so that
    aggregate's order holds, while every other aggregate's rows keep flowing. A transient
    failure (the broker or the database is down, a timeout, a lost connection) parks
    nothing: the batch is sent again later.

    **Several relays on PostgreSQL.** Each batch runs in one transaction that first takes a
    transaction-scoped advisory lock (``pg_try_advisory_xact_lock(lock_key)``); a relay that
    does not get it publishes nothing this round and tries again later. So at most one relay
    publishes at any moment, the others are hot standbys, and a crashed relay's lock is
    released with its connection. Row-level ``FOR UPDATE SKIP LOCKED`` alone is not enough:
    relay B would skip row 1 of aggregate X that relay A holds and publish X's row 2 before
    it, breaking per-aggregate order. Selecting only each aggregate's first unpublished row
    would keep order but publish one event per aggregate per batch, which collapses
    throughput for busy aggregates. One publisher at a time keeps the proof simple: rows go
    out in position order, and every row of an aggregate has a larger position than its
    predecessors, since a writer of an aggregate waits for (and is then refused by) the
    version check of any concurrent writer of it, so its outbox row is inserted after the
    earlier one committed. A relay reading after the lock was handed over sees the previous
    holder's marks (the lock is released after its commit is visible), so no row is
    published twice by relays that did not crash. Scale out by running a second relay for
    availability, not throughput (see ``benchmarks/bench_relay.py`` for what one achieves).

    **SQLite.** Run a single relay per database file: the read and the mark are two short
    transactions around the publish, so application writers are never blocked by a slow
    broker, but two relays would publish the same rows.
    SQLite has one writer at a time and refuses the write of a transaction that read before
    another writer committed, so the relay's marks (like any other writer) can make a
    concurrent unit of work's commit fail with :class:`~tactical.ConcurrencyError`: run
    application services through :func:`~tactical.retry_on_conflict`, as you should on SQLite
    anyway.

    **A database that stops answering.** psycopg has no read timeout, so on PostgreSQL each
    round trip of the relay (a statement, the commit, a rollback) that has not returned after
    ``database_timeout`` seconds has its connection's socket shut down from a watchdog
    thread (one per process): the call fails at once, SQLAlchemy discards the connection,
    and :meth:`run` logs the database's address and tries again on a new one. The publish
    between the read and the mark is not limited by it (publishers have their own timeout).
    Connecting is bounded by psycopg's ``connect_timeout`` (130 s unless set: set it in the
    engine's ``connect_args``); see the outbox how-to for the engine settings.

    Args:
        engine: The engine of the database holding ``tactical_outbox``.
        publisher: Where the messages go.
        batch_size: The most rows published (and confirmed) per batch.
        lock_key: The PostgreSQL advisory lock key; relays of one outbox must share it.
        database_timeout: Seconds a database round trip may take on PostgreSQL before its
            connection is cut; None for no limit.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``Engine``.
        ValueError: ``batch_size`` is below 1, or ``database_timeout`` is not positive.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``database_timeout``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        publisher: Publisher,
        *,
        batch_size: int = 100,
        lock_key: int = RELAY_LOCK_KEY,
        database_timeout: float | None = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if database_timeout is not None and not database_timeout > 0:
            raise ValueError(f"database_timeout must be positive, got {database_timeout}")
        self._database_timeout = database_timeout
        self._database = _database_address(engine.url)
        self._cut = threading.Event()
        self._engine = configure_engine(engine)
        self._publisher = publisher
        self._batch_size = batch_size
        self._lock_key = lock_key
        self._postgres = engine.dialect.name == "postgresql"
        if self._postgres and database_timeout is not None:
            watch_round_trips(engine)
        self._eligible = eligible_rows(batch_size, engine.dialect.name)

    @property
    def batch_size(self) -> int:
        """The most rows published per batch."""
        return self._batch_size

    def relay_once(self) -> int:
        """Publish one batch of unpublished rows and mark them; return how many were published.

        Rows that can never be published are parked instead, with their error (see
        :meth:`parked`): a row whose payload cannot be read, and the messages the publisher
        refused for good with :class:`UndeliverableError`. The later rows of a parked row's
        aggregate wait behind it; the rest of the batch is published. Returns 0 when there
        is nothing to publish, or (PostgreSQL) when another relay is publishing right now.

        Raises:
            Exception: Whatever the publisher raised other than :class:`UndeliverableError`
                (a transient failure): no row of the batch was marked; rows found
                unpublishable before it are parked all the same.
        """
        with self._connect() as connection:
            if self._postgres:
                with connection.begin():
                    locked = connection.execute(
                        sa.select(sa.func.pg_try_advisory_xact_lock(self._lock_key))
                    ).scalar_one()
                    if not locked:
                        return 0
                    plan = plan_batch(connection.execute(self._eligible).all())
                    published, plan, failure = self._publish(plan)
                    self._record(connection, published, plan.park)
            else:
                with connection.begin():
                    plan = plan_batch(connection.execute(self._eligible).all())
                if not plan.publish and not plan.park:
                    return 0
                published, plan, failure = self._publish(plan)
                if published or plan.park:
                    with connection.begin():
                        self._record(connection, published, plan.park)
        if failure is not None:
            raise failure
        return len(published)

    def parked(self, *, aggregate: tuple[str, str] | None = None) -> list[ParkedRow]:
        """The outbox rows this relay's outbox holds parked, oldest first, with their error.

        Args:
            aggregate: Only the rows of this aggregate, as ``(aggregate_type, aggregate_id)``
                (the codec's type name and the id as text, as in the outbox).

        .. versionadded:: 0.2.0
        """
        with self._engine.connect() as connection:
            rows = connection.execute(parked_rows(aggregate)).all()
        return [parked_row(row) for row in rows]

    def retry_parked(
        self, *, position: int | None = None, aggregate: tuple[str, str] | None = None
    ) -> int:
        """Un-park rows so that the next batches try them again; return how many.

        With neither argument every parked row is un-parked. A row that still cannot be
        published is parked again by the next batch, with its new error; fix the cause first
        (register the event type, correct the row). Un-parked rows and the rows that waited
        behind them go out in position order, so their aggregate's order holds.

        There is no discard call: dropping an event its consumers will then never see is a
        decision to take by hand, by setting its row's ``published_at`` (it stays in the
        outbox, with its error) or deleting the row. Either frees the rows behind it.

        Args:
            position: Only the row at this outbox position.
            aggregate: Only the rows of this aggregate, as ``(aggregate_type, aggregate_id)``.

        Raises:
            ValueError: Both ``position`` and ``aggregate`` were given.

        .. versionadded:: 0.2.0
        """
        statement = retry_statement(position, aggregate)
        with self._engine.begin() as connection:
            count = connection.execute(statement).rowcount
        if count:
            _log.info("outbox relay: %d parked row(s) will be tried again", count)
        return count

    def run(
        self,
        stop: threading.Event,
        *,
        idle_interval: float = 0.5,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        """Relay batches until ``stop`` is set; never raises for publisher or database errors.

        A full batch is followed at once by the next; otherwise the relay waits
        ``idle_interval`` seconds. While publishing (or the database) fails, it waits with
        bounded exponential backoff (``initial_backoff`` doubling up to ``max_backoff``,
        with jitter) and logs each failure once on the ``tactical.outbox`` logger, saying
        whether the database (and which) or the publisher failed and when it tries again;
        the first success after failures is logged too.

        Args:
            stop: Set it (from another thread or a signal handler) to end the loop.
            idle_interval: Seconds to wait when the outbox had less than a full batch.
            initial_backoff: Seconds to wait after the first failure.
            max_backoff: The longest wait between attempts while failures continue.
        """
        failures = 0
        _log.info(
            "outbox relay started on the database at %s (batch size %d)",
            self._database,
            self._batch_size,
        )
        while not stop.is_set():
            self._cut.clear()
            try:
                count = self.relay_once()
            except Exception as error:
                failures += 1
                delay = backoff_delay(failures, initial_backoff, max_backoff)
                _log.warning(
                    "outbox relay: %s (attempt %d); nothing was marked published, retrying in "
                    "%.1fs",
                    self._what_failed(error),
                    failures,
                    delay,
                    exc_info=_log.isEnabledFor(logging.DEBUG),
                )
                stop.wait(delay)
                continue
            if failures:
                _log.info(
                    "outbox relay: publishing from the database at %s again after %d failed "
                    "attempt(s)",
                    self._database,
                    failures,
                )
                failures = 0
            if count:
                _log.debug("outbox relay: published %d message(s)", count)
            if count < self._batch_size:
                stop.wait(idle_interval)
        _log.info("outbox relay stopped")

    def _what_failed(self, error: Exception) -> str:
        if self._cut.is_set():
            return (
                f"the database at {self._database} did not answer within "
                f"{self._database_timeout}s, so its connection was cut"
            )
        if isinstance(error, exc.SQLAlchemyError):
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            return f"the database at {self._database} failed ({type(error).__name__}: {reason})"
        return f"publishing failed ({type(error).__name__}: {error})"

    @contextlib.contextmanager
    def _connect(self) -> Generator[sa.Connection, None, None]:
        with self._engine.connect() as connection:
            if not self._postgres or self._database_timeout is None:
                yield connection
                return
            with guard_round_trips(connection, self._database_timeout, self._cut.set):
                yield connection

    def _publish(
        self, plan: BatchPlan
    ) -> tuple[Sequence[OutboxMessage], BatchPlan, Exception | None]:
        # Publish the plan's messages; on a refusal of some, park them and send the rest.
        # Each round parks at least one more message, so the loop ends.
        while plan.publish:
            try:
                self._publisher.publish(plan.publish)
            except UndeliverableError as refusal:
                after = plan_after_refusal(plan, refusal)
                if after is None:
                    return (), plan, refusal
                plan = after
            except Exception as error:  # raised after the parks are written
                return (), plan, error
            else:
                return plan.publish, plan, None
        return (), plan, None

    def _record(
        self,
        connection: sa.Connection,
        published: Sequence[OutboxMessage],
        park: dict[int, str],
    ) -> None:
        now = datetime.now(UTC)
        if published:
            t = outbox_table
            connection.execute(
                t.update()
                .where(t.c.position.in_([m.position for m in published]))
                .values(published_at=now)
            )
        for statement in park_statement(park, now):
            connection.execute(statement)
        for position, error in park.items():
            _log.warning(
                "outbox relay parked the row at position %d, which can never be published: %s; "
                "later events of its aggregate wait until it is retried "
                "(OutboxRelay.retry_parked)",
                position,
                error,
            )


def _database_address(url: sa.URL) -> str:
    """``host:port/database`` of ``url`` (never its password), or a SQLite file's path."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"
