"""OutboxRelay: moves committed outbox rows to a publisher, at least once, in order."""

from __future__ import annotations

import sqlalchemy as sa
from tactical.outbox._leases import DEFAULT_LEASE_TTL
from tactical.outbox._message import Publisher
from tactical.outbox._parking import ParkedRow
from tactical.outbox._relay_flow import (
    DEFAULT_DATABASE_TIMEOUT,
    RELAY_LOCK_KEY,
    BatchOp,
    Publish,
    RelayCore,
)
from tactical.outbox._worker import IdlingWorker
from tactical.sqlalchemy._engine import sync_engine

__all__ = ["DEFAULT_DATABASE_TIMEOUT", "RELAY_LOCK_KEY", "OutboxRelay"]


class OutboxRelay(RelayCore, IdlingWorker[BatchOp]):
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

    **Partitioned relays on PostgreSQL** (``partitions=N``, opt-in). The outbox is split into
    N partitions by :func:`partition_key` of the aggregate (the unit of work writes it in
    each row's ``partition_key`` column), and the relays of one outbox share them, each
    partition owned by one relay at a time through a lease row in
    ``tactical_relay_leases`` (owner, expiry), each relay alive through a heartbeat row in
    ``tactical_relays``. Every batch is one transaction that writes the heartbeat, renews
    the relay's live leases, keeps its fair share (``ceil(N / relays alive)``: it releases
    the extra partitions, or claims expired ones), reads the oldest rows of the partitions
    it owns (``partition_key % N IN (...)``, in position order), publishes and marks them.
    The lease rows it renewed stay row-locked until that commit, and claims skip locked
    rows (``FOR UPDATE SKIP LOCKED``), so no other relay takes a partition while its owner
    publishes from it; a relay whose lease expired and was taken finds it gone at its next
    renewal and publishes nothing from it. Leases rather than advisory locks: an advisory
    lock held across batches lives as long as a session (a relay would keep a connection
    checked out for ever, and a hung one would hold its partitions without limit), and
    whether a relay is alive, whom it owns and when that ends are rows an operator can
    read; the expiry is the database's clock, so hosts' clocks need not agree. A relay
    that stops (:meth:`run` returns) releases its partitions and the others take them at
    their next batch; one that dies has them taken over once its leases expire, within
    ``lease_ttl`` plus one ``idle_interval`` (a vanished host's open batch is ended by the
    server within about one lease, at least 2 s: each batch sets TCP keepalives scaled to
    ``lease_ttl`` on its session); one that joins gets its share once the others
    gave up theirs, within one ``idle_interval``. Per-aggregate order holds: an aggregate's
    rows are all in one partition, published in position order by its one owner, and a new
    owner reads after the previous one's marks committed. Rows written without a partition
    key (by an older writer) are given one, and their aggregate's later rows wait for it.

    **SQLite.** Run a single relay per database file (``partitions`` is refused there): the read and the mark are two short
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
        partitions: Split the outbox into this many partitions shared by the relays (see
            above; :data:`DEFAULT_PARTITIONS` is 16); None (the default) for one relay
            at a time. Every relay of an outbox must use the same count.
        lease_ttl: Seconds a partition's lease lasts unless renewed (a partitioned relay
            renews it at every batch); :data:`DEFAULT_LEASE_TTL` is 10.
        name: The relay's name among partitioned relays, unique among those running;
            by default the host name, the process id and a random suffix.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``Engine``, or ``partitions`` is not an
            ``int``.
        ValueError: ``batch_size`` is below 1, ``database_timeout`` or ``lease_ttl`` is
            not positive, ``partitions`` is below 1 or given on SQLite, or ``name`` is
            empty or longer than 255 characters.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``database_timeout``; ``partitions``, ``lease_ttl`` and ``name``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        publisher: Publisher,
        *,
        batch_size: int = 100,
        lock_key: int = RELAY_LOCK_KEY,
        database_timeout: float | None = DEFAULT_DATABASE_TIMEOUT,
        partitions: int | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        name: str | None = None,
    ) -> None:
        sync_engine(engine, "use AsyncOutboxRelay for it")
        super().__init__(
            engine, publisher, batch_size, lock_key, database_timeout, partitions, lease_ttl, name
        )
        self._use_engine(engine)
        self._publisher = publisher

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
        return self._on_connection(self._relay_batch())

    def parked(self, *, aggregate: tuple[str, str] | None = None) -> list[ParkedRow]:
        """The outbox rows this relay's outbox holds parked, oldest first, with their error.

        Args:
            aggregate: Only the rows of this aggregate, as ``(aggregate_type, aggregate_id)``
                (the codec's type name and the id as text, as in the outbox).

        .. versionadded:: 0.2.0
        """
        return self._on_connection(self._parked(aggregate))

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
        return self._on_connection(self._retry_parked(position, aggregate))

    # run() is IdlingWorker's; this is its documentation on this class.
    _run_doc = """Relay batches until ``stop`` is set; never raises for publisher or database errors.

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

    Raises:
        ValueError: A partitioned relay's ``idle_interval`` is not shorter than its
            ``lease_ttl`` (it would lose its partitions while idle).

    A partitioned relay releases its partitions when it stops, so that the others take
    them over at once (if the database cannot be reached then, they expire).
    """

    def _perform(self, connection: sa.Connection, op: BatchOp) -> object:
        if isinstance(op, Publish):
            self._publisher.publish(op.messages)
            return None
        return super()._perform(connection, op)
