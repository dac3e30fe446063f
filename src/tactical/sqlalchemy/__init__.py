"""SQL persistence for tactical on SQLAlchemy 2 (extra ``sql``; ``postgres`` adds psycopg 3).

SQLite is the embedded default; PostgreSQL is supported and tested.

.. versionadded:: 0.1.0
"""

from tactical._exports import publish as _publish
from tactical._extras import missing_extra

# Only checks that the extra is installed, to say which one when it is not.
try:
    import sqlalchemy as _sqlalchemy  # noqa: F401  # pyright: ignore[reportUnusedImport]
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.sqlalchemy", "sql") from _missing

from tactical.sqlalchemy._async_uow import AsyncSqlAlchemyUnitOfWork
from tactical.sqlalchemy._engine import SQLITE_BUSY_TIMEOUT_MS, configure_engine
from tactical.sqlalchemy._mapper import RelationalMapper
from tactical.sqlalchemy._orm import OrmMapper
from tactical.sqlalchemy._schema import (
    UtcDateTime,
    aggregates_table,
    create_schema,
    dead_letters_table,
    inbox_table,
    metadata,
    outbox_table,
)
from tactical.sqlalchemy._uow import SqlAlchemyUnitOfWork

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "AsyncSqlAlchemyUnitOfWork",
    "OrmMapper",
    "RelationalMapper",
    "SqlAlchemyUnitOfWork",
    "UtcDateTime",
    "aggregates_table",
    "configure_engine",
    "create_schema",
    "dead_letters_table",
    "inbox_table",
    "metadata",
    "outbox_table",
]

_publish(__name__, globals(), __all__)
