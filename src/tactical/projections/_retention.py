"""purge_outbox: delete the outbox rows that the relay and every projection are done with."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc
from tactical.sqlalchemy._engine import configure_engine, sync_engine
from tactical.sqlalchemy._schema import (
    outbox_table,
    projection_checkpoints_table,
    with_schema_hint,
)

__all__ = ["purge_outbox"]


def purge_outbox(engine: sa.Engine) -> int:
    """Delete the outbox rows no one needs any more; return how many were deleted.

    A row is deleted only if the relay has published it (``published_at`` is set: parked
    and unpublished rows stay) and every projection registered in
    ``tactical_projection_checkpoints`` has applied it (it is at or before the lowest
    checkpoint, in the order projections read). The most recent row always stays: on SQLite
    a new row's position is one past the highest row present, so deleting the highest would
    hand its position out again, behind a projection's checkpoint.

    A projection is registered from its first batch on. A projection registered later, and
    a :meth:`~tactical.projections.ProjectionRunner.rebuild`, replay only what the outbox
    still holds: purge only if your read models can be rebuilt without the purged events
    (or keep the events elsewhere). With no projection registered, every published row but
    the last is deleted.

    Args:
        engine: The database of the outbox.

    Returns:
        How many rows were deleted.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``Engine``.
        ValueError: ``engine`` is of a database other than SQLite and PostgreSQL.

    .. versionadded:: 0.2.0
    """
    configure_engine(sync_engine(engine))
    try:
        return _purge(engine)
    except exc.DBAPIError as error:
        with_schema_hint(error)
        raise


def _purge(engine: sa.Engine) -> int:
    t, c = outbox_table, projection_checkpoints_table
    with engine.begin() as connection:
        lowest = connection.execute(
            # FOR SHARE: a checkpoint moved back (a rebuild) waits for this purge to end.
            sa.select(c.c.transaction_order, c.c.position)
            .order_by(c.c.transaction_order, c.c.position)
            .limit(1)
            .with_for_update(read=True)
        ).first()
        last = connection.execute(sa.select(sa.func.max(t.c.position))).scalar_one()
        if last is None:
            return 0
        deletion = t.delete().where(t.c.published_at.is_not(None), t.c.position < last)
        if lowest is not None:
            deletion = deletion.where(
                sa.tuple_(t.c.transaction_order, t.c.position) <= sa.tuple_(*lowest)
                if engine.dialect.name == "postgresql"
                else t.c.position <= lowest.position
            )
        return connection.execute(deletion).rowcount
