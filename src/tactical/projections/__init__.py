"""Projections: read models kept up to date from the outbox, with checkpoints (extra ``sql``).

A :class:`Projection` names a read model (tables of yours) and handles the events that
change it; a :class:`ProjectionRunner` reads the committed events from ``tactical_outbox``
in the order their aggregates committed them, applies each batch and stores the
projection's checkpoint in ``tactical_projection_checkpoints`` in the same transaction.
Nothing is skipped on PostgreSQL either, where outbox positions become visible out of
order (see :doc:`/explanation/projections`). :class:`AsyncProjection` and
:class:`AsyncProjectionRunner` do the same on asyncio. :func:`purge_outbox` deletes the
outbox rows that the relay and every projection are done with.

.. versionadded:: 0.2.0
"""

from tactical._exports import publish as _publish
from tactical._extras import missing_extra

# Only checks that SQLAlchemy is installed, to say which extra is missing when it is not.
try:
    import sqlalchemy as _sqlalchemy  # noqa: F401  # pyright: ignore[reportUnusedImport]
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.projections", "sql") from _missing

from tactical.projections._async_runner import AsyncProjectionRunner
from tactical.projections._projection import AsyncProjection, Projection, ProjectionError
from tactical.projections._retention import purge_outbox
from tactical.projections._runner import ProjectionRunner
from tactical.sqlalchemy._schema import projection_checkpoints_table

__all__ = [
    "AsyncProjection",
    "AsyncProjectionRunner",
    "Projection",
    "ProjectionError",
    "ProjectionRunner",
    "projection_checkpoints_table",
    "purge_outbox",
]

_publish(__name__, globals(), __all__)
