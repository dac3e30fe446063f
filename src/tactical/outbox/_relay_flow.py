"""What a relay does, written once: flows that :class:`OutboxRelay` and :class:`AsyncOutboxRelay` drive.

Every decision of a relay (which rows to read, what to publish, what to mark and to park,
when to retry, what to log) lives here, in generators that yield the I/O they need as the
operations below (see :mod:`tactical._flow`). The sync relay carries the operations out on a
SQLAlchemy ``Connection`` and a :class:`~tactical.outbox.Publisher`; the async one awaits
them on an ``AsyncConnection`` and an :class:`~tactical.outbox.AsyncPublisher`. Neither
decides anything of its own, so the two cannot drift apart.

Each database operation knows how to start itself on a connection (``start``: the value, or
for an ``AsyncConnection`` the awaitable of it) and how to read what came back (``finish``),
so that a driver is one line for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias, TypeVar

import sqlalchemy as sa
from tactical._backoff import check_loop_waits
from tactical._flow import Flow
from tactical._partitions import partition_key
from tactical.outbox._leases import (
    LeaseStatements,
    check_partitioned,
    fair_share,
    fill_key_statement,
    unkeyed_aggregates,
)
from tactical.outbox._message import OutboxMessage, UndeliverableError
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
from tactical.outbox._telemetry import (
    backlog_statement,
    count_relay_parked,
    destination_of,
    publishing,
    record_backlog,
    record_owned_partitions,
)
from tactical.outbox._worker import Connected, LoopOp, LoopWords, WorkerCore
from tactical.sqlalchemy._engine import begin_for_writing, configure_engine
from tactical.sqlalchemy._schema import outbox_table

__all__ = [
    "DEFAULT_DATABASE_TIMEOUT",
    "RELAY_LOCK_KEY",
    "BatchOp",
    "DatabaseOp",
    "Publish",
    "RelayCore",
    "Statement",
    "Transaction",
]

_log = logging.getLogger("tactical.outbox")

RELAY_LOCK_KEY: int = 0x7461_6374_6F75_7462  # "tactoutb": the PostgreSQL advisory lock of relays
"""The PostgreSQL advisory lock key relays take, one at a time, for each batch."""

DEFAULT_DATABASE_TIMEOUT: float = 10.0
"""Seconds one database round trip of a relay on PostgreSQL may take before it is cut.

.. versionadded:: 0.2.0
"""

R = TypeVar("R")


# -- operations on the database (a Connection or an AsyncConnection) ----------------------


@dataclass(frozen=True, slots=True)
class Transaction:
    """Begin, commit or roll back the connection's transaction."""

    step: Literal["begin", "commit", "rollback"]

    def start(self, connection: Any) -> Any:
        return getattr(connection, self.step)()

    def finish(self, _raw: object) -> None:
        return None


BEGIN, COMMIT, ROLLBACK = Transaction("begin"), Transaction("commit"), Transaction("rollback")


@dataclass(frozen=True, slots=True)
class Statement:
    """Run a statement; its result is every row (a query) or how many rows it changed."""

    statement: sa.Executable
    rows: bool

    def start(self, connection: Any) -> Any:
        return connection.execute(self.statement)

    def finish(self, raw: sa.CursorResult[Any]) -> list[sa.Row[Any]] | int:
        return list(raw.all()) if self.rows else raw.rowcount


@dataclass(frozen=True, slots=True)
class BeginForWriting:
    """SQLite: begin the transaction holding the write lock (``BEGIN IMMEDIATE``)."""

    def start(self, connection: Any) -> Any:
        if isinstance(connection, sa.Connection):
            return begin_for_writing(connection)
        return connection.run_sync(begin_for_writing)  # an AsyncConnection: awaited

    def finish(self, _raw: object) -> None:
        return None


BEGIN_FOR_WRITING = BeginForWriting()

DatabaseOp: TypeAlias = Transaction | Statement | BeginForWriting


# -- the other operations -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publish:
    """Hand messages to the publisher; returns once the broker confirmed them, or raises."""

    messages: tuple[OutboxMessage, ...]


BatchOp: TypeAlias = DatabaseOp | Publish


def _transaction(body: Flow[BatchOp, R], begin: DatabaseOp = BEGIN) -> Flow[BatchOp, R]:
    """``body`` inside a transaction: committed if it returns, rolled back if it raises."""
    yield begin
    try:
        result = yield from body
    except BaseException:
        yield ROLLBACK
        raise
    yield COMMIT
    return result


def _fetch(statement: sa.Executable) -> Flow[BatchOp, list[sa.Row[Any]]]:
    rows: list[sa.Row[Any]] = yield Statement(statement, rows=True)
    return rows


def _execute(statement: sa.Executable) -> Flow[BatchOp, int]:
    count: int = yield Statement(statement, rows=False)
    return count


_Outcome: TypeAlias = tuple[Sequence[OutboxMessage], BatchPlan, Exception | None]


class RelayCore(WorkerCore):
    """What the sync and the async relay share: their settings and every decision they take.

    Args:
        engine: The (sync) engine of the outbox's database, prepared here for the relay.
        publisher: The relay's publisher, asked where its messages go (for the spans).

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``Engine``, or ``partitions`` not an int.
        ValueError: ``batch_size`` is below 1, ``database_timeout`` or ``lease_ttl`` is not
            positive, ``partitions`` is below 1 or given for a database other than
            PostgreSQL, or ``name`` is empty or too long.
    """

    def __init__(
        self,
        engine: sa.Engine,
        publisher: object,
        batch_size: int,
        lock_key: int,
        database_timeout: float | None,
        partitions: int | None,
        lease_ttl: float,
        name: str | None,
    ) -> None:
        configure_engine(engine)
        # Where the publisher says each message goes, for the publish span (if it says).
        self._destination = destination_of(publisher)
        dialect = engine.dialect.name
        super().__init__(engine.url, batch_size, database_timeout)
        # What the publisher raised in the last batch, to tell it from a database failure
        # (asyncpg, say, raises a plain OSError when it cannot connect).
        self._publisher_failure: Exception | None = None
        self._lock_key = lock_key
        self._eligible = eligible_rows(batch_size, dialect)
        relay_name = check_partitioned(partitions, lease_ttl, name, dialect)
        self._leases = (
            None
            if relay_name is None or partitions is None
            else LeaseStatements(relay_name, partitions, lease_ttl)
        )
        self._lease_ttl = lease_ttl
        self._leases_created = False
        self._owned: frozenset[int] = frozenset()
        self._relays_alive = 0

    @property
    def name(self) -> str | None:
        """This relay's name among partitioned relays (None for a relay without partitions).

        .. versionadded:: 0.2.0
        """
        return None if self._leases is None else self._leases.name

    @property
    def partitions(self) -> int | None:
        """How many partitions the outbox is split into, or None when one relay runs at a time.

        .. versionadded:: 0.2.0
        """
        return None if self._leases is None else self._leases.partitions

    @property
    def owned_partitions(self) -> frozenset[int]:
        """The partitions this relay owned at the commit of its last batch (empty before).

        A partition it gave up in that batch is free for the others once this set no longer
        has it.

        Always empty for a relay without partitions. A partition may have moved to another
        relay since: ownership is checked again, in the database, at every batch.

        .. versionadded:: 0.2.0
        """
        return self._owned

    @property
    def batch_size(self) -> int:
        """The most rows published per batch."""
        return self._batch_size

    # -- one batch ---------------------------------------------------------------------------

    def _relay_batch(self) -> Flow[BatchOp, int]:
        """Publish one batch, mark it, park what can never be sent; how many were published.

        On PostgreSQL one transaction holds the advisory lock from the read to the mark; on
        SQLite the read and the mark are two short transactions around the publish, so that
        a slow broker never blocks the application's writers.
        """
        backlog = backlog_statement()  # None unless metrics are collected
        if backlog is not None:
            record_backlog((yield from _transaction(_fetch(backlog)))[0])
        if self._leases is not None:
            published, plan, failure = yield from self._partitioned_batch(self._leases)
        elif self._postgres:
            published, plan, failure = yield from _transaction(self._locked_batch())
        else:
            plan = plan_batch((yield from _transaction(_fetch(self._eligible))))
            if not plan.publish and not plan.park:
                return 0
            published, plan, failure = yield from self._publish(plan)
            if published or plan.park:
                yield from _transaction(self._record(published, plan.park))
        if failure is not None:
            self._publisher_failure = failure
            raise failure
        return len(published)

    def _locked_batch(self) -> Flow[BatchOp, _Outcome]:
        lock = sa.select(sa.func.pg_try_advisory_xact_lock(self._lock_key))
        ((locked,),) = yield from _fetch(lock)
        if not locked:
            return (), BatchPlan(()), None
        plan = plan_batch((yield from _fetch(self._eligible)))
        published, plan, failure = yield from self._publish(plan)
        yield from self._record(published, plan.park)
        return published, plan, failure

    def _partitioned_batch(self, leases: LeaseStatements) -> Flow[BatchOp, _Outcome]:
        """One batch of a partitioned relay: its leases renewed, its partitions' rows sent.

        One transaction renews (or claims, or gives up) the leases, reads the owned
        partitions' rows, publishes them and marks them: the lease rows it renewed stay
        locked until it commits, so no other relay takes a partition while this one
        publishes from it (the fence). Rows written without a partition key get one in a
        short transaction of their own afterwards.
        """
        if not self._leases_created:
            yield from _transaction(self._create_leases(leases))
            self._leases_created = True
        owned, outcome, unkeyed = yield from _transaction(self._leased_batch(leases))
        # Only now, committed, are the claims and give-ups true for the other relays: a
        # partition given up stays locked (and unclaimable) until this commit.
        self._report_owned(leases, owned)
        if unkeyed:
            yield from _transaction(self._fill_keys(unkeyed))
        return outcome

    def _create_leases(self, leases: LeaseStatements) -> Flow[BatchOp, None]:
        existing = yield from _fetch(leases.existing_leases())
        missing = set(range(leases.partitions)).difference(row[0] for row in existing)
        if missing:
            yield from _execute(leases.create_leases(missing))
        yield from _execute(leases.forget_dead_relays())

    def _leased_batch(
        self, leases: LeaseStatements
    ) -> Flow[BatchOp, tuple[frozenset[int], _Outcome, list[sa.Row[Any]]]]:
        owned = yield from self._own_partitions(leases)
        unkeyed = yield from _fetch(unkeyed_aggregates(self._batch_size))
        if not owned:
            return owned, ((), BatchPlan(()), None), unkeyed
        plan = plan_batch((yield from _fetch(leases.rows_of(self._eligible, sorted(owned)))))
        published, plan, failure = yield from self._publish(plan)
        yield from self._record(published, plan.park)
        return owned, (published, plan, failure), unkeyed

    def _own_partitions(self, leases: LeaseStatements) -> Flow[BatchOp, frozenset[int]]:
        """Renew this relay's leases, then claim or give up some to hold its fair share."""
        # First, so that the server notices within about a lease if this relay's host
        # vanishes while the transaction holds the lease rows (see keepalive_settings).
        yield from _fetch(leases.keepalives())
        yield from _execute(leases.heartbeat())
        relays = yield from _fetch(leases.live_relays())
        others = sorted(
            {(r.name, r.partitions) for r in relays if r.partitions != leases.partitions}
        )
        renewed = frozenset(row[0] for row in (yield from _fetch(leases.renew())))
        if others:
            # Partition p of one count is not partition p of another: owning nothing keeps
            # every aggregate's order while the relays disagree.
            _log.warning(
                "outbox relay %s (partitions=%d) publishes nothing while relays with other "
                "partition counts run: %s; stop every relay before changing partitions",
                leases.name,
                leases.partitions,
                ", ".join(f"{name} (partitions={count})" for name, count in others),
            )
            if renewed:
                yield from _execute(leases.release())
            owned: frozenset[int] = frozenset()
        else:
            share = fair_share(leases.partitions, len(relays))
            owned = renewed
            if len(owned) > share:
                extra = sorted(owned)[share:]
                yield from _execute(leases.release(extra))
                owned = owned.difference(extra)
            elif len(owned) < share:
                claimed = yield from _fetch(leases.claim(share - len(owned)))
                owned = owned.union(row[0] for row in claimed)
        self._relays_alive = len(relays)
        return owned

    def _report_owned(self, leases: LeaseStatements, owned: frozenset[int]) -> None:
        """Record (and log, when it changed) what this relay owns once its batch committed."""
        if owned != self._owned:
            _log.info(
                "outbox relay %s owns partitions %s of %d (%d relay(s) alive)",
                leases.name,
                sorted(owned) or "none",
                leases.partitions,
                self._relays_alive,
            )
        self._owned = owned
        record_owned_partitions(leases.name, leases.partitions, owned)

    def _fill_keys(self, unkeyed: Sequence[sa.Row[Any]]) -> Flow[BatchOp, None]:
        for row in unkeyed:
            aggregate_type, aggregate_id = str(row.aggregate_type), str(row.aggregate_id)
            key = partition_key(aggregate_type, aggregate_id)
            yield from _execute(fill_key_statement(aggregate_type, aggregate_id, key))

    def _release_leases(self) -> Flow[BatchOp, None]:
        """Give up every lease and the heartbeat, so that the others take over at once."""
        leases = self._leases
        if leases is None:
            return
        yield from _transaction(_execute(leases.release()))
        yield from _transaction(_execute(leases.leave()))
        self._owned = frozenset()
        record_owned_partitions(leases.name, leases.partitions, self._owned)
        _log.info("outbox relay %s released its partitions", leases.name)

    def _publish(self, plan: BatchPlan) -> Flow[BatchOp, _Outcome]:
        # Publish the plan's messages; on a refusal of some, park them and send the rest.
        # Each round parks at least one more message, so the loop ends.
        while plan.publish:
            try:
                with publishing(plan.publish, self._destination):
                    yield Publish(plan.publish)
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
        self, published: Sequence[OutboxMessage], park: dict[int, str]
    ) -> Flow[BatchOp, None]:
        now = datetime.now(UTC)
        if published:
            t = outbox_table
            yield from _execute(
                t.update()
                .where(t.c.position.in_([m.position for m in published]))
                .values(published_at=now)
            )
        for statement in park_statement(park, now):
            yield from _execute(statement)
        count_relay_parked(len(park))
        for position, error in park.items():
            _log.warning(
                "outbox relay parked the row at position %d, which can never be published: %s; "
                "later events of its aggregate wait until it is retried "
                "(OutboxRelay.retry_parked)",
                position,
                error,
            )

    # -- parked rows -------------------------------------------------------------------------

    def _parked(self, aggregate: tuple[str, str] | None) -> Flow[BatchOp, list[ParkedRow]]:
        rows = yield from _fetch(parked_rows(aggregate))
        return [parked_row(row) for row in rows]

    def _retry_parked(
        self, position: int | None, aggregate: tuple[str, str] | None
    ) -> Flow[BatchOp, int]:
        count = yield from _transaction(_execute(retry_statement(position, aggregate)))
        if count:
            _log.info("outbox relay: %d parked row(s) will be tried again", count)
        return count

    # -- the loop ----------------------------------------------------------------------------

    def _loop(
        self, idle_interval: float, initial_backoff: float, max_backoff: float
    ) -> Flow[LoopOp, None]:
        """Relay batches until stopped, backing off and logging while they fail."""
        check_loop_waits("idle_interval", idle_interval, initial_backoff, max_backoff)
        if self._leases is not None and not idle_interval < self._lease_ttl:
            raise ValueError(
                f"idle_interval ({idle_interval}s) must be shorter than lease_ttl "
                f"({self._lease_ttl}s), or a partitioned relay loses its partitions while idle"
            )
        _log.info(
            "outbox relay started on the database at %s (batch size %d)",
            self._database,
            self._batch_size,
        )
        words = LoopWords(
            "outbox relay",
            "nothing was marked published",
            f"publishing from the database at {self._database}",
            "published",
        )
        yield from self._polling_loop(
            words, self._round, idle_interval, initial_backoff, max_backoff
        )
        if self._leases is not None:
            try:
                yield Connected(self._release_leases())
            except Exception as error:
                _log.warning(
                    "outbox relay %s could not release its partitions (%s); the others take "
                    "them over when its leases expire, within %.1fs",
                    self._leases.name,
                    self._what_failed(error),
                    self._lease_ttl,
                )
        _log.info("outbox relay stopped")

    def _round(self) -> Flow[BatchOp, int]:
        """The next batch of :meth:`_loop`, its failures' causes forgotten (before it connects)."""
        self._cut.clear()
        self._publisher_failure = None
        return self._relay_batch()

    def _what_failed(self, error: Exception) -> str:
        if error is self._publisher_failure and not self._cut.is_set():
            return f"publishing failed ({type(error).__name__}: {error})"
        return super()._what_failed(error)
