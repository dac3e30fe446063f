"""Engine set-up that makes SQLite behave like a transactional database should."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, overload

from typing_extensions import TypeIs

import sqlalchemy as sa
from sqlalchemy import event

if TYPE_CHECKING:
    # Not at run time: SQLAlchemy 2.1 loads its asyncio layer only with greenlet, which only
    # the extras "async" and "asyncpg" install; "sql" alone must import without it.
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "SQLITE_BUSY_TIMEOUT_MS",
    "async_engine",
    "configure_engine",
    "engine_refusal",
    "is_async_engine",
    "restart_sqlite_for_writing",
    "says_sqlite_locked",
    "sync_engine",
]

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for the write lock before giving up (milliseconds)."""

_SUPPORTED = ("sqlite", "postgresql")

_CONFIGURED = "tactical_configured"
_BEGIN_IMMEDIATE = "tactical_begin_immediate"


def is_async_engine(candidate: object) -> TypeIs[AsyncEngine]:
    """True if ``candidate`` is a SQLAlchemy ``AsyncEngine``; never imports its asyncio layer.

    An ``AsyncEngine`` exists only once ``sqlalchemy.ext.asyncio`` was imported, so where it
    was not (or cannot be, without greenlet) nothing is one.
    """
    asyncio_layer = sys.modules.get("sqlalchemy.ext.asyncio")
    return asyncio_layer is not None and isinstance(candidate, asyncio_layer.AsyncEngine)


@overload
def configure_engine(engine: sa.Engine) -> sa.Engine: ...
@overload
def configure_engine(engine: AsyncEngine) -> AsyncEngine: ...
def configure_engine(engine: sa.Engine | AsyncEngine) -> sa.Engine | AsyncEngine:
    """Prepare ``engine`` for the SQL unit of work; idempotent, returns the engine.

    On SQLite (the embedded default) every connection gets foreign keys on, a busy timeout,
    WAL journaling for file databases (readers do not block the writer), and a real
    ``BEGIN`` when SQLAlchemy begins a transaction (the driver's legacy mode would run
    reads outside any transaction, so two reads in one unit of work could see different
    data). A unit of work's first write finding its read snapshot stale (another one
    committed since it read) or the write lock taken gets SQLITE_BUSY at once; the unit of
    work then ends its read snapshot and writes in a ``BEGIN IMMEDIATE`` transaction, which
    waits for the write lock up to the busy timeout (its writes are version-checked, so
    they do not need the old snapshot). Only a moved version, or a lock held past the busy
    timeout, is a :class:`~tactical.ConcurrencyError`, never a raw "database is locked".

    PostgreSQL is left as it is (it runs at its default READ COMMITTED; optimistic
    concurrency comes from version-checked updates, not from isolation). Other databases
    are refused: tactical's statements are written for SQLite and PostgreSQL only.

    An :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (aiosqlite, psycopg's async mode,
    asyncpg) is prepared the same way, through its ``sync_engine`` (``.. versionadded::
    0.2.0``).

    Args:
        engine: The engine to prepare.

    Returns:
        ``engine`` itself, prepared.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy :class:`~sqlalchemy.engine.Engine` or
            :class:`~sqlalchemy.ext.asyncio.AsyncEngine` (a URL string or a connection, say).
        ValueError: ``engine`` is of a database other than SQLite and PostgreSQL (MySQL or
            MariaDB, say), which tactical's statements are not written for.

    .. versionadded:: 0.1.0

    .. versionchanged:: 0.2.0
       Other databases than SQLite and PostgreSQL are refused here, and so by
       :func:`~tactical.sqlalchemy.create_schema`, the relays, timer workers and projection
       runners, instead of failing at their first statement.
    """
    candidate: object = engine
    if is_async_engine(candidate):
        sync_engine = candidate.sync_engine
    elif isinstance(candidate, sa.Engine):  # pyright: ignore[reportUnnecessaryIsInstance]
        sync_engine = candidate
    else:
        raise TypeError(engine_refusal(candidate, asynchronous=False))
    if sync_engine.dialect.name not in _SUPPORTED:
        raise ValueError(
            f"tactical runs on SQLite and PostgreSQL, not {sync_engine.dialect.name} "
            f"({sync_engine.url!r}): make the engine with a SQLite or PostgreSQL URL "
            "(sqlite:///app.db, postgresql+psycopg://user@host/app)"
        )
    if sync_engine.dialect.name == "sqlite" and not event.contains(
        sync_engine, "begin", _begin_sqlite
    ):
        event.listen(sync_engine, "begin", _begin_sqlite)
    return engine


def engine_refusal(candidate: object, *, asynchronous: bool) -> str:
    """The message refusing ``candidate`` where an engine (async or not) was expected."""
    kind = "AsyncEngine" if asynchronous else "Engine"
    make = (
        "sqlalchemy.ext.asyncio.create_async_engine" if asynchronous else "sqlalchemy.create_engine"
    )
    if isinstance(candidate, str):
        hint = f": make one with {make}({candidate!r})"
    elif isinstance(candidate, sa.Engine) or is_async_engine(candidate):
        other = "SqlAlchemyUnitOfWork" if asynchronous else "AsyncSqlAlchemyUnitOfWork"
        hint = f": use {other} for it, or make an {kind} with {make}"
    else:
        hint = ""
    return f"expected a SQLAlchemy {kind}, got {candidate!r}{hint}"


def async_engine(candidate: object, sync_taker: str | None = None) -> AsyncEngine:
    """``candidate``, refused with a TypeError unless it is an ``AsyncEngine``.

    Args:
        candidate: What was given as the engine.
        sync_taker: What takes a sync ``Engine`` instead (``an OutboxRelay``), for the
            message; None for :func:`engine_refusal`'s message.
    """
    if is_async_engine(candidate):
        return candidate
    if sync_taker is None:
        raise TypeError(engine_refusal(candidate, asynchronous=True))
    raise TypeError(
        f"expected a SQLAlchemy AsyncEngine, got {candidate!r}: make one with "
        f"sqlalchemy.ext.asyncio.create_async_engine ({sync_taker} takes an Engine)"
    )


def sync_engine(candidate: object, instead: str | None = None) -> sa.Engine:
    """``candidate``, refused with a TypeError unless it is a sync ``Engine``.

    Args:
        candidate: What was given as the engine.
        instead: What else to do with an ``AsyncEngine`` (``use AsyncOutboxRelay for it``),
            for the message; None if nothing takes one.
    """
    if isinstance(candidate, sa.Engine):
        return candidate
    if is_async_engine(candidate):
        other = f"{instead}, or " if instead else ""
        raise TypeError(
            f"expected a SQLAlchemy Engine, got an AsyncEngine ({candidate.url!r}): "
            f"{other}make an Engine with sqlalchemy.create_engine"
        )
    raise TypeError(engine_refusal(candidate, asynchronous=False))


def _begin_sqlite(connection: sa.Connection) -> None:
    # Set up each pooled connection once, on its first transaction: this also covers
    # connections the pool made before the engine was configured.
    pooled = connection.connection
    if not pooled.info.get(_CONFIGURED):
        _configure_sqlite_connection(pooled.dbapi_connection)
        pooled.info[_CONFIGURED] = True
    # Straight to the driver, as the PRAGMAs: a statement through SQLAlchemy's execution
    # machinery cost as much as the BEGIN itself, on every transaction.
    immediate = pooled.info.pop(_BEGIN_IMMEDIATE, False)
    _execute_on_driver(pooled.dbapi_connection, "BEGIN IMMEDIATE" if immediate else "BEGIN")


def restart_sqlite_for_writing(connection: sa.Connection) -> None:
    """End ``connection``'s read-only SQLite transaction and begin one holding the write lock.

    A deferred transaction that has read cannot wait for SQLite's write lock (its busy
    handler is not called, to avoid deadlock) and cannot write at all once its snapshot is
    stale; ``BEGIN IMMEDIATE`` from no transaction waits up to the busy timeout. Call it
    only when the transaction has written nothing: what it read is discarded.

    Raises:
        sqlite3.OperationalError: The write lock stayed taken past the busy timeout
            ("database is locked"); the connection is then in no transaction.
    """
    connection.rollback()
    connection.connection.info[_BEGIN_IMMEDIATE] = True
    try:
        connection.begin()
    finally:
        connection.connection.info.pop(_BEGIN_IMMEDIATE, None)


def begin_for_writing(connection: sa.Connection) -> None:
    """Begin ``connection``'s SQLite transaction holding the write lock (``BEGIN IMMEDIATE``).

    For a transaction that reads and then writes what it read (a timer worker's round):
    begun deferred, its write would fail at once if another writer committed since its
    read; begun immediate, it waits up to the busy timeout for the lock, then reads.
    """
    connection.connection.info[_BEGIN_IMMEDIATE] = True
    try:
        connection.begin()
    finally:
        connection.connection.info.pop(_BEGIN_IMMEDIATE, None)


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


_SQLITE_LOCKED = ("database is locked", "database is busy")


def says_sqlite_locked(message: str) -> bool:
    """Whether a driver's error message is SQLite's lock wait (SQLITE_BUSY or SQLITE_LOCKED).

    The message is all there is to go by: the error has no code before Python 3.11.
    """
    return any(text in message for text in _SQLITE_LOCKED)
