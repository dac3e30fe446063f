"""What a projection runner does, written once: flows that the sync and async runners drive.

Every decision (which outbox rows a projection may read, in which order, what to apply,
where its checkpoint goes, what a handler's failure means, when to wait and retry) lives
here, in generators that yield the I/O they need (see :mod:`tactical._flow`).
:class:`ProjectionRunner` carries the operations out on a ``Connection`` and calls the
handlers; :class:`AsyncProjectionRunner` awaits them on an ``AsyncConnection``.

**Which rows are final.** On SQLite one writer at a time holds the write lock from its
first write to its commit, so outbox positions are assigned in commit order and any
snapshot sees a prefix of them: a projection reads ``position > checkpoint``. On PostgreSQL
positions come from a sequence, taken at insert, and become visible at commit: a reader
that saw position 7 may later see 6 appear. Each row therefore carries ``transaction_order``
= ``greatest(xid of its transaction, xmax of the inserting statement's snapshot)``, set by
the server, and a projection reads rows in ``(transaction_order, position)`` order, only
those below a *horizon* ``H`` under which no row can still appear:

- per-aggregate order: a later event of an aggregate is inserted by a transaction that
  read the aggregate after the earlier one committed (the version check refuses it
  otherwise), so its insert's snapshot ``xmax`` exceeds the earlier transaction's xid and
  is at least the earlier insert's ``xmax`` (``xmax`` never goes back): its key is at least
  the earlier one's, and its position (taken after that commit) larger.
- the horizon: statement A (the checkpoint's read) takes ``X = xmax`` of its snapshot, then
  reads the lock table: ``W`` = the transactions holding a write lock on the outbox. The
  events' statement B, later, with snapshot ``S``, uses ``H = least(X, lowest xid in S's
  running list that is in W)``. Take a row with key ``k < H`` and its writer ``w`` (``w <=
  k``). If ``w`` were running at ``S``: it is in ``S``'s running list (``w < H <= X <=
  xmax(S)``), so not in ``W``; it was running when A read the lock table (before ``S``), and
  a transaction holds every lock until after it stops being running, so it had not yet
  inserted into the outbox then; so its row was inserted after A's snapshot and ``k >=
  X >= H``, a contradiction. So ``w`` has ended at ``S``: the row is visible to B, or
  never will be (rolled back). A row inserted after ``S`` has ``k >= xmax(S) >= X >= H``.

So an open transaction holds projections back only if it has written to this outbox (not
one in another database of the cluster, nor one that only wrote other tables), and only
from the rows written after it began. ``xmax`` alone as the key is not enough (a
transaction whose xid is above the ``xmax`` of its own insert, because an older one was
still running, could still be open when a plain ``xmin`` horizon passes its key); the xid
alone breaks per-aggregate order when a transaction got its xid before it loaded the
aggregate. The greater of the two has both properties.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeAlias, TypeVar

from sqlalchemy.dialects import postgresql, sqlite

import sqlalchemy as sa
from tactical._backoff import check_loop_waits
from tactical._codec import JsonCodec
from tactical._flow import Flow
from tactical._model import DomainEvent
from tactical.outbox._message import backoff_delay
from tactical.outbox._relay_flow import COMMIT, ROLLBACK, Statement, Transaction
from tactical.outbox._worker import Connected, LoopOp, Stopped, Wait, WorkerCore
from tactical.projections._projection import ProjectionError, _Projection  # pyright: ignore[reportPrivateUsage]
from tactical.sqlalchemy._engine import _BEGIN_IMMEDIATE  # pyright: ignore[reportPrivateUsage]
from tactical.sqlalchemy._schema import (
    TRANSACTION_ORDER_POSTGRESQL,
    outbox_table,
    projection_checkpoints_table,
)

__all__ = [
    "READ_COMMITTED",
    "Apply",
    "Begin",
    "Clear",
    "DatabaseOp",
    "ProjectionCore",
    "RunnerOp",
]

_log = logging.getLogger("tactical.projections")

P = TypeVar("P", bound=_Projection[Any, Any])
R = TypeVar("R")

_START = (0, 0)

READ_COMMITTED = "READ COMMITTED"
"""The isolation of a batch on PostgreSQL, whatever the engine's: the horizon needs the
events' statement to take a snapshot of its own, after the checkpoint's statement."""


@dataclass(frozen=True, slots=True)
class Begin:
    """Begin a transaction; on SQLite one holding the write lock (``BEGIN IMMEDIATE``)."""

    immediate: bool

    def start(self, connection: Any) -> Any:
        if self.immediate:
            # An AsyncConnection's pooled connection is its sync_connection's.
            sync = getattr(connection, "sync_connection", None) or connection
            sync.connection.info[_BEGIN_IMMEDIATE] = True
        return connection.begin()

    def finish(self, _raw: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Apply:
    """Call (or await) ``handler(event, connection)`` on the transaction's connection."""

    handler: Callable[..., Any]
    event: DomainEvent


@dataclass(frozen=True, slots=True)
class Clear:
    """Call (or await) a projection's clear hook with the transaction's connection."""

    hook: Callable[..., Any]


DatabaseOp: TypeAlias = Begin | Transaction | Statement
RunnerOp: TypeAlias = DatabaseOp | Apply | Clear


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    """A projection's checkpoint, and on PostgreSQL what its horizon is made of.

    ``xmax`` is the ``xmax`` of the snapshot of the statement that read the checkpoint, and
    ``writers`` the transaction ids (32-bit) that held a write lock on the outbox when that
    statement read the lock table, after its snapshot was taken (None on SQLite).
    """

    checkpoint: tuple[int, int]
    xmax: int
    writers: tuple[int, ...] | None


def _as_bigint(sql: str) -> str:
    # xid8 and xid have no cast to bigint; their text form is the number.
    return f"({sql})::text::bigint"


_XMAX = sa.literal_column(_as_bigint("pg_snapshot_xmax(pg_current_snapshot())"), sa.BigInteger)

# One read of the lock table (pg_locks gathers it anew at each mention): the top-level and
# subtransaction ids of the transactions that hold, or wait for, a lock on the outbox
# other than a reader's. Inserting takes RowExclusiveLock and keeps it to the end.
_WRITERS = sa.literal_column(
    """ARRAY(
    WITH locks AS MATERIALIZED (
        SELECT locktype, transactionid, virtualtransaction, database, relation, mode, granted
        FROM pg_locks
    )
    SELECT own.transactionid::text::bigint
    FROM locks AS own JOIN locks AS outbox ON outbox.virtualtransaction = own.virtualtransaction
    WHERE own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
      AND outbox.locktype = 'relation'
      AND outbox.relation = to_regclass('tactical_outbox')
      AND outbox.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND outbox.mode NOT IN ('AccessShareLock', 'RowShareLock')
)""",
    postgresql.ARRAY(sa.BigInteger),
)

# The writers still running when the events' statement took its snapshot: the lowest of
# their (64-bit) ids, compared with the lock table's 32-bit ones.
_RUNNING_WRITER_SQL = (
    "SELECT min(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot()) AS x "
    "WHERE (x::xid)::text::bigint = ANY(:writers)"
)


def _horizon(xmax: int, writers: tuple[int, ...]) -> sa.ColumnElement[int]:
    """The events' statement reads rows whose ``transaction_order`` is below this.

    ``least(xmax, lowest id of a writer in this snapshot's running list)``: see the
    module's docstring for why no row below it can still appear.
    """
    bound = sa.literal(xmax, sa.BigInteger)
    if not writers:
        return bound
    running = (
        sa.text(_RUNNING_WRITER_SQL)
        .bindparams(sa.bindparam("writers", list(writers), postgresql.ARRAY(sa.BigInteger)))
        .columns(sa.column("lowest", sa.BigInteger))
        .scalar_subquery()
    )
    return sa.func.least(bound, running, type_=sa.BigInteger)


# The outbox's transaction_order default as the server has it (None if it has none).
# Whether the outbox exists, and its transaction_order column's default.
_ORDER_DEFAULT = sa.text(
    "SELECT to_regclass('tactical_outbox') IS NOT NULL AS outbox_exists, "
    "(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef AS d "
    "JOIN pg_attribute AS a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
    "WHERE d.adrelid = to_regclass('tactical_outbox') AND a.attname = 'transaction_order') "
    "AS order_default"
)


def _fetch(statement: sa.Executable) -> Flow[RunnerOp, list[sa.Row[Any]]]:
    rows: list[sa.Row[Any]] = yield Statement(statement, rows=True)
    return rows


def _execute(statement: sa.Executable) -> Flow[RunnerOp, int]:
    count: int = yield Statement(statement, rows=False)
    return count


class ProjectionCore(WorkerCore, Generic[P]):
    """What the sync and the async runner share: their settings and every decision.

    Raises:
        ValueError: No projections, two with one name, or ``batch_size`` below 1.
    """

    def __init__(
        self,
        url: sa.URL,
        projections: Sequence[P],
        codec: JsonCodec,
        batch_size: int,
        database_timeout: float | None,
    ) -> None:
        if not projections:
            raise ValueError("a projection runner needs at least one projection")
        names = [p.name for p in projections]
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"two projections are named {', '.join(map(repr, twice))}")
        super().__init__(url, batch_size, database_timeout)
        dialect = url.get_backend_name()
        if dialect not in {"postgresql", "sqlite"}:
            raise ValueError(f"projections support PostgreSQL and SQLite, not {dialect}")
        self._projections: tuple[P, ...] = tuple(projections)
        self._codec = codec
        self._begin = Begin(immediate=not self._postgres)
        self._schema_checked = not self._postgres

    @property
    def projections(self) -> tuple[P, ...]:
        """The projections this runner keeps up to date, in the order it serves them."""
        return self._projections

    @property
    def batch_size(self) -> int:
        """The most outbox rows a projection reads per transaction."""
        return self._batch_size

    def _named(self, projection: P | str) -> P:
        for candidate in self._projections:
            if candidate is projection or candidate.name == projection:
                return candidate
        raise ValueError(f"this runner has no projection {projection!r}")

    # -- statements --------------------------------------------------------------------------

    def _checkpoint_query(self, name: str, *, wait: bool) -> sa.Executable:
        c = projection_checkpoints_table
        query = sa.select(c.c.transaction_order, c.c.position).where(c.c.name == name)
        if self._postgres:
            # The horizon's first half, read after this statement's snapshot was taken.
            query = query.add_columns(_XMAX.label("xmax"), _WRITERS.label("writers"))
            # A second runner of the same projection skips it while the first holds it.
            query = query.with_for_update(of=c, skip_locked=not wait)
        return query

    def _register_statement(self, name: str) -> sa.Executable:
        values = {
            "name": name,
            "transaction_order": _START[0],
            "position": _START[1],
            "updated_at": datetime.now(UTC),
        }
        c = projection_checkpoints_table
        if self._postgres:
            return postgresql.insert(c).values(values).on_conflict_do_nothing()
        return sqlite.insert(c).values(values).on_conflict_do_nothing()

    def _events_query(self, read: _Checkpoint, limit: int) -> sa.Executable:
        t = outbox_table
        query = sa.select(
            t.c.transaction_order,
            t.c.position,
            t.c.event_type,
            t.c.event_version,
            t.c.event_id,
            t.c.payload,
        )
        if read.writers is not None:
            query = query.where(
                sa.tuple_(t.c.transaction_order, t.c.position) > sa.tuple_(*read.checkpoint),
                t.c.transaction_order < _horizon(read.xmax, read.writers),
            ).order_by(t.c.transaction_order, t.c.position)
        else:
            # Positions are in commit order (one writer at a time), transaction_order is 0.
            query = query.where(t.c.position > read.checkpoint[1]).order_by(t.c.position)
        return query.limit(limit)

    def _move_statement(self, name: str, checkpoint: tuple[int, int]) -> sa.Executable:
        c = projection_checkpoints_table
        return (
            c.update()
            .where(c.c.name == name)
            .values(
                transaction_order=checkpoint[0],
                position=checkpoint[1],
                updated_at=datetime.now(UTC),
            )
        )

    # -- one batch ---------------------------------------------------------------------------

    def _checkpoint(self, name: str, *, wait: bool) -> Flow[RunnerOp, _Checkpoint | None]:
        """The projection's checkpoint, locked; None if another runner holds it."""
        rows = yield from _fetch(self._checkpoint_query(name, wait=wait))
        if not rows and (yield from _execute(self._register_statement(name))):
            rows = yield from _fetch(self._checkpoint_query(name, wait=wait))
        if not rows:
            return None
        row = rows[0]
        checkpoint = (int(row.transaction_order), int(row.position))
        if not self._postgres:
            return _Checkpoint(checkpoint, 0, None)
        return _Checkpoint(checkpoint, int(row.xmax), tuple(int(x) for x in row.writers))

    def _batch(self, projection: P, limit: int) -> Flow[RunnerOp, int]:
        """Apply up to ``limit`` events to ``projection`` and move its checkpoint past them.

        All in one transaction. Returns how many outbox rows were read (the projection's
        own and the others). A handler that fails makes the transaction roll back; the
        events before the failing one are then applied again in a transaction of their own
        (so that progress is kept), and :class:`ProjectionError` is raised for the failing one.
        """
        yield self._begin
        try:
            yield from self._check_schema()
            read = yield from self._checkpoint(projection.name, wait=False)
            if read is None:
                yield ROLLBACK
                return 0
            rows = yield from _fetch(self._events_query(read, limit))
            for index, row in enumerate(rows):
                try:
                    yield from self._apply(projection, row)
                except Exception as error:
                    failed, cause = index, error
                    break
            else:
                if rows:
                    last = rows[-1]
                    yield from _execute(
                        self._move_statement(
                            projection.name, (int(last.transaction_order), int(last.position))
                        )
                    )
                yield COMMIT
                return len(rows)
        except BaseException:
            yield ROLLBACK
            raise
        yield ROLLBACK
        if failed:
            yield from self._batch(projection, failed)
        row = rows[failed]
        raise ProjectionError(projection.name, row.position, row.event_type, cause) from cause

    def _check_schema(self) -> Flow[RunnerOp, None]:
        """Refuse an outbox whose ``transaction_order`` is not tactical's (once per runner).

        A migration that gave the column another default (0, say) would make every key
        equal: the projection would read in position order and skip what commits late.
        """
        if self._schema_checked:
            return
        (row,) = yield from _fetch(_ORDER_DEFAULT)
        default = row.order_default
        if not row.outbox_exists:
            return  # the statements that follow fail, saying how to create tactical's tables
        if not (default and "pg_current_xact_id" in default and "pg_snapshot_xmax" in default):
            raise RuntimeError(
                f"tactical_outbox.transaction_order has the default {default!r}, not "
                f"{TRANSACTION_ORDER_POSTGRESQL!r}: projections would read events out of "
                "commit order and skip some; set that default (see the Alembic how-to)"
            )
        self._schema_checked = True

    def _apply(self, projection: P, row: sa.Row[Any]) -> Flow[RunnerOp, None]:
        cls = self._codec.resolve(row.event_type)
        handler = projection.handler_for(cls)
        if handler is None:
            return
        event = self._codec.event_from_record(
            row.event_type,
            row.event_version,
            row.payload,
            context=f"outbox position {row.position}, event_id={row.event_id}",
        )
        yield Apply(handler, event)

    # -- several batches -----------------------------------------------------------------------

    def _catch_up(self, projection: P | str, batches: int | None) -> Flow[Connected[RunnerOp], int]:
        """Batches of ``projection`` until one reads nothing (or ``batches`` ran); rows read.

        Not until a batch is less than full: on PostgreSQL a row can be final but not yet
        below the horizon (its key is the ``xmax`` of a snapshot, and only a transaction
        ending after it moves ``xmax`` on). Each batch's transaction holds a transaction id
        (locking the checkpoint takes one), so its end moves ``xmax`` past every row
        committed before it began: the batch after it reads them.
        """
        chosen = self._named(projection)
        total, done = 0, 0
        while batches is None or done < batches:
            count: int = yield Connected(self._batch(chosen, self._batch_size))
            total, done = total + count, done + 1
            if count == 0:
                break
        return total

    def _run_once(self) -> Flow[Connected[RunnerOp], int]:
        """One batch of every projection; a handler's failure is raised after all ran."""
        total = 0
        failure: ProjectionError | None = None
        for projection in self._projections:
            try:
                total += yield from self._catch_up(projection, 1)
            except ProjectionError as error:
                failure = failure or error
        if failure is not None:
            raise failure
        return total

    # -- rebuild -----------------------------------------------------------------------------

    def _rebuild(self, projection: P) -> Flow[RunnerOp, None]:
        """Clear the read model and move the checkpoint to the start, in one transaction."""
        hook = projection.clear_hook()
        yield self._begin
        try:
            yield from self._checkpoint(projection.name, wait=True)
            yield Clear(hook)
            yield from _execute(self._move_statement(projection.name, _START))
        except BaseException:
            yield ROLLBACK
            raise
        yield COMMIT
        _log.info("projection %r rebuilt: cleared, and replaying from the start", projection.name)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(
        self, idle_interval: float, initial_backoff: float, max_backoff: float
    ) -> Flow[LoopOp, None]:
        """Serve every projection until stopped: catch up, then follow the outbox.

        Each round gives every projection one batch, in its own transaction; a projection
        whose batch was full is served again at once, the others wait ``idle_interval``
        (or until the next retry is due). A projection whose batch failed is retried after
        a backoff that grows with its consecutive failures, logged each time; the others go
        on at their own pace.
        """
        check_loop_waits("idle_interval", idle_interval, initial_backoff, max_backoff)
        failures = dict.fromkeys(self._projections, 0)
        retry_at = dict.fromkeys(self._projections, 0.0)
        _log.info(
            "projection runner started for %s",
            ", ".join(repr(p.name) for p in self._projections),
        )
        while not (yield Stopped()):
            busy = False
            for projection in self._projections:
                if time.monotonic() < retry_at[projection]:
                    continue
                try:
                    count: int = yield Connected(self._batch(projection, self._batch_size))
                except Exception as error:
                    failures[projection] += 1
                    delay = backoff_delay(failures[projection], initial_backoff, max_backoff)
                    retry_at[projection] = time.monotonic() + delay
                    _log.error(
                        "%s (attempt %d); retrying in %.1fs",
                        error
                        if isinstance(error, ProjectionError)
                        else f"projection {projection.name!r}: {type(error).__name__}: {error}",
                        failures[projection],
                        delay,
                        exc_info=_log.isEnabledFor(logging.DEBUG),
                    )
                    continue
                if failures[projection]:
                    _log.info(
                        "projection %r goes on after %d failed attempt(s)",
                        projection.name,
                        failures[projection],
                    )
                    failures[projection] = 0
                busy = busy or count >= self._batch_size
            if not busy:
                due = min(retry_at.values()) - time.monotonic()
                yield Wait(min(idle_interval, due) if due > 0 else idle_interval)
        _log.info("projection runner stopped")
