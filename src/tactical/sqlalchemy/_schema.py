"""The tables the SQL unit of work writes: aggregate documents and the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

import sqlalchemy as sa

__all__ = [
    "UtcDateTime",
    "aggregates_table",
    "create_schema",
    "dead_letters_table",
    "inbox_table",
    "metadata",
    "outbox_table",
]


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

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)  # noqa: S101  (the column type guarantees it)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSONB on PostgreSQL (indexable, compact); JSON text elsewhere.
Document = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# SQLite only autoincrements an INTEGER PRIMARY KEY; elsewhere positions need 64 bits.
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

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


def create_schema(engine: sa.Engine) -> None:
    """Create tactical's tables (and indexes) if they do not exist yet. Idempotent.

    For a quick start and tests; in production manage the schema with Alembic using
    :data:`~tactical.sqlalchemy.metadata` as (part of) its ``target_metadata``.

    Args:
        engine: The database to create the tables in; prepared with
            :func:`~tactical.sqlalchemy.configure_engine`.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy :class:`~sqlalchemy.engine.Engine`.

    .. versionadded:: 0.1.0
    """
    from tactical.sqlalchemy._engine import configure_engine

    configure_engine(engine)
    metadata.create_all(engine, checkfirst=True)
