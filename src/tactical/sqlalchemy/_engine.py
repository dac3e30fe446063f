"""Engine set-up that makes SQLite behave like a transactional database should."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["SQLITE_BUSY_TIMEOUT_MS", "configure_engine"]

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for the write lock before giving up (milliseconds)."""

_CONFIGURED = "tactical_configured"


def configure_engine(engine: sa.Engine) -> sa.Engine:
    """Prepare ``engine`` for the SQL unit of work; idempotent, returns the engine.

    On SQLite (the embedded default) every connection gets foreign keys on, a busy timeout,
    WAL journaling for file databases (readers do not block the writer), and a real
    ``BEGIN`` when SQLAlchemy begins a transaction (the driver's legacy mode would run
    reads outside any transaction, so two reads in one unit of work could see different
    data). A writer whose snapshot went stale because another committed first gets
    SQLITE_BUSY at once; the unit of work reports that as a
    :class:`~tactical.ConcurrencyError`, never as a raw "database is locked".

    Other databases are left as they are (PostgreSQL runs at its default READ COMMITTED;
    optimistic concurrency comes from version-checked updates, not from isolation).

    Args:
        engine: The engine to prepare.

    Returns:
        ``engine`` itself, prepared.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy :class:`~sqlalchemy.engine.Engine` (a URL
            string or a connection, say).

    .. versionadded:: 0.1.0
    """
    candidate: object = engine
    if not isinstance(candidate, sa.Engine):  # pyright: ignore[reportUnnecessaryIsInstance]
        hint = (
            f": make one with sqlalchemy.create_engine({candidate!r})"
            if isinstance(candidate, str)
            else ""
        )
        raise TypeError(f"expected a SQLAlchemy Engine, got {candidate!r}{hint}")
    if engine.dialect.name == "sqlite" and not event.contains(engine, "begin", _begin_sqlite):
        event.listen(engine, "begin", _begin_sqlite)
    return engine


def _begin_sqlite(connection: sa.Connection) -> None:
    # Set up each pooled connection once, on its first transaction: this also covers
    # connections the pool made before the engine was configured.
    pooled = connection.connection
    if not pooled.info.get(_CONFIGURED):
        _configure_sqlite_connection(pooled.dbapi_connection)
        pooled.info[_CONFIGURED] = True
    # Straight to the driver, as the PRAGMAs: a statement through SQLAlchemy's execution
    # machinery cost as much as the BEGIN itself, on every transaction.
    _execute_on_driver(pooled.dbapi_connection, "BEGIN")


def _execute_on_driver(dbapi_connection: Any, sql: str) -> None:
    dbapi_connection.execute(sql)  # sqlite3.Connection.execute: a cursor of its own


def _configure_sqlite_connection(dbapi_connection: Any) -> None:
    # The driver must not open transactions itself: the "begin" listener does it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
        cursor.execute("PRAGMA journal_mode")
        if cursor.fetchone()[0] != "memory":
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()
