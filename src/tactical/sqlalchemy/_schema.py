"""The tables the SQL unit of work writes: aggregate documents, the outbox, the timers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar

from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

import sqlalchemy as sa
from sqlalchemy import exc

__all__ = [
    "UtcDateTime",
    "aggregates_table",
    "create_schema",
    "dead_letters_table",
    "inbox_table",
    "metadata",
    "outbox_table",
    "projection_checkpoints_table",
    "relay_leases_table",
    "relays_table",
    "scheduled_table",
    "with_schema_hint",
]


class _BindsDatetime(Protocol):
    """A bind processor of datetimes, as SQLAlchemy calls it."""

    def __call__(self, value: datetime | None) -> Any: ...


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime column that reads back aware on every database.

    SQLite has no timezone type: values are stored as UTC without offset and read back with
    UTC attached. Naive datetimes are refused on write with a ``ValueError`` naming the
    value (SQLAlchemy raises it wrapped in a ``StatementError``), since their meaning is
    ambiguous.

    .. versionadded:: 0.1.0
    """

    # Declared as on TypeDecorator: an undeclared override is a type checkers may infer apart.
    impl: sa.types.TypeEngine[Any] | type[sa.types.TypeEngine[Any]] = sa.DateTime(timezone=True)
    cache_ok: bool | None = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} cannot be stored as UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> _BindsDatetime | None:
        """SQLite: one function doing what :meth:`process_bind_param` and the dialect's own do.

        Every commit binds two or more of these; the two steps cost twice the fused one.
        The fused text is SQLite's ``DATETIME`` storage format, checked once per dialect
        against the two steps, which stay in use for anything the check does not cover (a
        subclass of ``datetime``, a dialect formatting otherwise, a subclass of this type
        with a ``process_bind_param`` of its own).
        """
        composed = super().bind_processor(dialect)
        if (
            dialect.name != "sqlite"
            or composed is None
            # A subclass's own process_bind_param is called as SQLAlchemy would.
            or type(self).process_bind_param is not UtcDateTime.process_bind_param
        ):
            return composed
        sample = datetime(1, 2, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=-8)))
        if _sqlite_text(sample) != composed(sample):
            return composed

        def process(value: Any) -> Any:
            if type(value) is not datetime:
                return composed(value)
            if value.utcoffset() is None:
                raise ValueError(f"naive datetime {value.isoformat()} cannot be stored as UTC")
            return _sqlite_text(value)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101  (the column type guarantees it)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_text(value: datetime) -> str:
    """An aware datetime as SQLite's ``DATETIME`` stores it: UTC, without offset."""
    # An aware datetime in UTC always ends in "+00:00".
    return value.astimezone(UTC).isoformat(" ", "microseconds")[:-6]


# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
Document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite only autoincrements an INTEGER PRIMARY KEY; elsewhere positions need 64 bits.
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


TRANSACTION_ORDER_POSTGRESQL = (
    "(greatest(pg_current_xact_id(), pg_snapshot_xmax(pg_current_snapshot()))::text::bigint)"
)
"""The server default of ``tactical_outbox.transaction_order`` on PostgreSQL."""


class TransactionOrder(FunctionElement[int]):
    """The server default of ``tactical_outbox.transaction_order`` (see the column).

    On PostgreSQL ``greatest(pg_current_xact_id(), pg_snapshot_xmax(pg_current_snapshot()))``
    as a BIGINT, evaluated by the server for each inserted row (no round trip, no change to
    the unit of work's INSERT); on SQLite 0, since its positions are already in commit
    order (one writer at a time holds the write lock from its insert to its commit).
    """

    type = sa.BigInteger()
    name = "tactical_transaction_order"
    inherit_cache = True


# The PostgreSQL expression is the default form, so that a migration tool rendering the
# default without a dialect (Alembic's autogenerate does) writes it rather than SQLite's 0,
# which would make projections read in position order, the very bug the key prevents.
@compiles(TransactionOrder)
def _transaction_order_postgresql(
    _element: TransactionOrder, _compiler: SQLCompiler, **_kw: Any
) -> str:
    # xid8 has no cast to bigint; its text form is the 64-bit number (epoch and xid).
    return TRANSACTION_ORDER_POSTGRESQL


@compiles(TransactionOrder, "sqlite")
def _transaction_order_sqlite(
    _element: TransactionOrder, _compiler: SQLCompiler, **_kw: Any
) -> str:
    return "0"


metadata: sa.MetaData = sa.MetaData()
"""All tables of the SQL unit of work, for ``create_all`` or Alembic's ``target_metadata``."""

aggregates_table: sa.Table = sa.Table(
    "tactical_aggregates",
    metadata,
    sa.Column("aggregate_type", sa.String(255), primary_key=True),
    sa.Column("aggregate_id", sa.String(255), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", Document, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    comment="One JSON document per aggregate stored without a relational mapper.",
)
"""``tactical_aggregates``: one JSON document per aggregate stored without a relational mapper."""

outbox_table: sa.Table = sa.Table(
    "tactical_outbox",
    metadata,
    sa.Column("position", Position, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
    sa.Column("event_type", sa.String(255), nullable=False),
    sa.Column("event_version", sa.Integer, nullable=False),
    sa.Column("aggregate_type", sa.String(255), nullable=False),
    sa.Column("aggregate_id", sa.String(255), nullable=False),
    sa.Column("aggregate_version", sa.Integer, nullable=False),
    sa.Column("payload", Document, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("published_at", UtcDateTime, nullable=True),
    # The flow an event belongs to (its first event's id) and the event whose handling
    # recorded it (NULL outside handlers). Nullable, so that existing outboxes can add them.
    sa.Column("correlation_id", sa.Uuid, nullable=True),
    sa.Column("causation_id", sa.Uuid, nullable=True),
    # Set by the relay for a row it can never publish (unreadable, or refused for good by
    # the publisher), with the reason; cleared by OutboxRelay.retry_parked. Nullable, so
    # that existing outboxes can add them (added in 0.2).
    sa.Column("parked_at", UtcDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The order projections read in, with position (added in 0.2): on PostgreSQL positions
    # come from a sequence and become visible out of order when transactions commit out of
    # order; this key lets a reader take only rows whose set is final, in an order that keeps
    # each aggregate's (see docs/explanation/projections.md). Set by the server.
    sa.Column(
        "transaction_order", sa.BigInteger, nullable=False, server_default=TransactionOrder()
    ),
    # tactical.outbox.partition_key(aggregate_type, aggregate_id), written by the unit of
    # work, so that a partitioned relay selects its partitions' rows by
    # ``partition_key % partitions``. Nullable, so that existing outboxes can add it (added
    # in 0.2): a partitioned relay computes it for rows written without it.
    sa.Column("partition_key", sa.Integer, nullable=True),
    # The W3C trace context (JSON: traceparent, tracestate) of the commit that wrote the
    # row, when an OpenTelemetry SDK was active; NULL otherwise (added in 0.2).
    sa.Column("trace_context", sa.Text, nullable=True),
    comment="Events written in the transaction that produced them (transactional outbox).",
)
"""``tactical_outbox``: every event of a committed aggregate, written in its transaction."""
# Each index costs every commit its upkeep (3-5% of a SQLite create each): only those that
# serve the relay's queries are kept. Unpublished positions: the relay's batch query.
sa.Index(
    "ix_tactical_outbox_unpublished",
    outbox_table.c.position,
    postgresql_where=outbox_table.c.published_at.is_(None),
    sqlite_where=outbox_table.c.published_at.is_(None),
)
# The few parked rows, by aggregate: the relay's "no earlier parked row of this aggregate"
# probe and the listing of parked rows read only this index.
sa.Index(
    "ix_tactical_outbox_parked",
    outbox_table.c.aggregate_type,
    outbox_table.c.aggregate_id,
    outbox_table.c.position,
    postgresql_where=outbox_table.c.parked_at.is_not(None),
    sqlite_where=outbox_table.c.parked_at.is_not(None),
)
# Unpublished rows written without a partition key (by a unit of work older than 0.2):
# empty once every writer is upgraded, so its upkeep is a predicate per commit; a
# partitioned relay finds them through it, and holds their aggregate's later rows.
sa.Index(
    "ix_tactical_outbox_unkeyed",
    outbox_table.c.aggregate_type,
    outbox_table.c.aggregate_id,
    outbox_table.c.position,
    postgresql_where=sa.and_(
        outbox_table.c.partition_key.is_(None), outbox_table.c.published_at.is_(None)
    ),
    sqlite_where=sa.and_(
        outbox_table.c.partition_key.is_(None), outbox_table.c.published_at.is_(None)
    ),
)

relays_table: sa.Table = sa.Table(
    "tactical_relays",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("partitions", sa.Integer, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    comment="Partitioned outbox relays alive, each until its heartbeat expires.",
)
"""``tactical_relays``: one row per running partitioned relay, renewed at each batch.

.. versionadded:: 0.2.0
"""

relay_leases_table: sa.Table = sa.Table(
    "tactical_relay_leases",
    metadata,
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("owner", sa.String(255), nullable=True),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    comment="Which partitioned relay owns each outbox partition, and until when.",
)
"""``tactical_relay_leases``: the relay that owns each outbox partition, until its lease expires.

.. versionadded:: 0.2.0
"""

# What projections read on PostgreSQL: (transaction_order, position) after a checkpoint. On
# SQLite transaction_order is always 0 and the primary key serves: there the index is partial
# and empty (no upkeep per insert), rather than absent, so that Alembic finds it on both.
sa.Index(
    "ix_tactical_outbox_transaction_order",
    outbox_table.c.transaction_order,
    outbox_table.c.position,
    sqlite_where=sa.false(),
)

inbox_table: sa.Table = sa.Table(
    "tactical_inbox",
    metadata,
    sa.Column("consumer", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("processed_at", UtcDateTime, nullable=False),
    comment="Events each consumer has handled, written in the handler's transaction (inbox).",
)
"""``tactical_inbox``: one row per (consumer, event id) handled."""
sa.Index("ix_tactical_inbox_processed_at", inbox_table.c.processed_at)

dead_letters_table: sa.Table = sa.Table(
    "tactical_dead_letters",
    metadata,
    sa.Column("consumer", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.Uuid, primary_key=True),
    sa.Column("event_type", sa.String(255), nullable=False),
    sa.Column("aggregate_type", sa.String(255), nullable=False),
    sa.Column("aggregate_id", sa.String(255), nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("headers", Document, nullable=False),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("failed_at", UtcDateTime, nullable=False),
    comment="Messages a consumer gave up on (parked), with the error, for inspection and retry.",
)
"""``tactical_dead_letters``: parked messages with their error and attempt count."""
sa.Index(
    "ix_tactical_dead_letters_aggregate",
    dead_letters_table.c.consumer,
    dead_letters_table.c.aggregate_type,
    dead_letters_table.c.aggregate_id,
    dead_letters_table.c.position,
)

scheduled_table: sa.Table = sa.Table(
    "tactical_scheduled",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("due_at", UtcDateTime, nullable=False),
    sa.Column("message_id", sa.Uuid, nullable=False),
    sa.Column("message_type", sa.String(255), nullable=False),
    sa.Column("message_version", sa.Integer, nullable=False),
    sa.Column("payload", Document, nullable=False),
    sa.Column("occurred_at", UtcDateTime, nullable=False),
    sa.Column("scheduled_at", UtcDateTime, nullable=False),
    sa.Column("correlation_id", sa.Uuid, nullable=True),
    sa.Column("causation_id", sa.Uuid, nullable=True),
    # Set by a timer worker for a row it can never fire (unreadable, unknown type), with
    # the reason; cleared by TimerWorker.retry_parked or by scheduling the key again.
    sa.Column("parked_at", UtcDateTime, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    comment="Messages scheduled for later (durable timers), written in the transaction "
    "that scheduled them; a timer worker moves each to the outbox once due.",
)
"""``tactical_scheduled``: one row per pending durable timer, by key.

.. versionadded:: 0.2.0
"""
# The workers' query: the soonest due rows that are not parked.
sa.Index(
    "ix_tactical_scheduled_due",
    scheduled_table.c.due_at,
    postgresql_where=scheduled_table.c.parked_at.is_(None),
    sqlite_where=scheduled_table.c.parked_at.is_(None),
)
projection_checkpoints_table: sa.Table = sa.Table(
    "tactical_projection_checkpoints",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("transaction_order", sa.BigInteger, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    comment="Where each projection is in the outbox, written with its read model's changes.",
)
"""``tactical_projection_checkpoints``: the last outbox row each projection applied.

``(transaction_order, position)`` of that row, ``(0, 0)`` before the first.

.. versionadded:: 0.2.0
"""


def create_schema(engine: sa.Engine) -> None:
    """Create tactical's tables (and indexes) if they do not exist yet. Idempotent.

    For a quick start and tests; in production manage the schema with Alembic using
    :data:`~tactical.sqlalchemy.metadata` as (part of) its ``target_metadata``.

    Args:
        engine: The database to create the tables in; prepared with
            :func:`~tactical.sqlalchemy.configure_engine`.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy :class:`~sqlalchemy.engine.Engine` (an
            ``AsyncEngine`` is refused saying how to create the tables through it).
        ValueError: ``engine`` is of a database other than SQLite and PostgreSQL.

    .. versionadded:: 0.1.0
    """
    from tactical.sqlalchemy._engine import configure_engine, sync_engine

    sync_engine(
        engine,
        "create the tables in `async with engine.begin() as connection:` with `await "
        "connection.run_sync(tactical.sqlalchemy.metadata.create_all)`",
    )
    configure_engine(engine)
    metadata.create_all(engine, checkfirst=True)


_DbError = TypeVar("_DbError", bound=exc.DBAPIError)
_TABLES = tuple(table.name for table in metadata.sorted_tables)
_MISSING = ("no such table", "does not exist")  # SQLite; PostgreSQL's "relation ... does not exist"
SCHEMA_HINT = (
    "tactical's tables are missing from this database: create them with "
    "tactical.sqlalchemy.create_schema(engine), or with Alembic over "
    "tactical.sqlalchemy.metadata"
)


def with_schema_hint(error: _DbError) -> _DbError:
    """Add a note saying how to create tactical's tables when the error is that one is missing.

    Once: an error that already has the note (from a unit of work inside a consumer, say)
    is returned as it is.
    """
    message = str(error.orig)
    if (
        any(m in message for m in _MISSING)
        and any(t in message for t in _TABLES)
        and SCHEMA_HINT not in getattr(error, "__notes__", ())
    ):
        error.add_note(SCHEMA_HINT)
    return error
