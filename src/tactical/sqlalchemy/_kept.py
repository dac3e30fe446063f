"""SQLite: each thread keeps the connection of its last unit of work for its next one.

Taking a connection from SQLAlchemy's pool and giving it back (checkout, reset, checkin,
their events, a new ``Connection``) cost about as much as a SQLite ``INSERT``: a fifth of
a load. So the sync unit of work on a SQLite file leaves the connection of a block that
ended checked out, outside any transaction, in a slot of its thread, and the next block of
any unit of work on the same engine in that thread takes it from there.

Outside a transaction a SQLite connection holds no lock and no snapshot, so a
kept connection changes nothing another connection sees. What is kept is bounded: one
connection a thread (the last engine's; another engine's displaces it, closed), and only
while the pool has room to spare (fewer connections checked out than its ``pool_size``),
so the threads' kept connections never leave other code waiting for one. A connection is
given back to the pool instead when it is invalidated, was given execution options of its
own, its driver is still in a transaction (a failed ``COMMIT`` leaves one) or its
engine's pool was replaced (``Engine.dispose()``). The slot's connection is
closed, the ordinary way, when its thread ends; a child process made by ``fork()`` drops
what its parent kept without using or closing it.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from sqlalchemy.pool import QueuePool

import sqlalchemy as sa

__all__ = ["keep_connection", "keeps_connections", "take_connection"]


class _Slot:
    """A thread's kept connection, with the pool it came from."""

    __slots__ = ("__weakref__", "held")

    def __init__(self) -> None:
        # (connection, its engine's pool when it was kept); a list the finalizer shares.
        self.held: list[tuple[sa.Connection, object]] = []


class _Local(threading.local):
    slot: _Slot | None = None


_local = _Local()
# What a forked child inherited: never used or closed there (the parent's), but referenced
# so that SQLAlchemy does not warn about collecting connections not checked in.
_inherited: list[tuple[sa.Connection, object]] = []


def keeps_connections(engine: sa.Engine) -> bool:
    """Whether units of work over ``engine`` keep their thread's connection between blocks.

    SQLite with a ``QueuePool`` (SQLAlchemy's pool for a SQLite file): not an in-memory
    database, whose connections are the thread's anyway, nor a ``NullPool``, whose user
    asked for no connection to outlive its use.
    """
    return engine.dialect.name == "sqlite" and isinstance(engine.pool, QueuePool)


def take_connection(engine: sa.Engine) -> sa.Connection:
    """The connection this thread kept for ``engine``, or a new one from its pool."""
    slot = _local.slot
    if slot is not None and slot.held:
        connection, pool = slot.held[0]
        if connection.engine is engine:
            slot.held.clear()
            if pool is engine.pool and not connection.invalidated:
                return connection
            _give_back(connection, pool)
    return engine.connect()


def keep_connection(connection: sa.Connection) -> None:
    """End ``connection``'s transaction and keep it for this thread's next block, or close it.

    A transaction it still has (active, or inactive after a failed ``COMMIT``) is rolled
    back first; if that fails the connection is closed and the error raised.
    """
    try:
        if connection.get_transaction() is not None:
            connection.rollback()
    except BaseException:
        connection.close()
        raise
    engine = connection.engine
    pool = engine.pool
    driver: Any = connection.connection.dbapi_connection  # sqlite3's
    if (
        connection.invalidated
        # The driver's own transaction, which a failed COMMIT leaves open: the pool's
        # reset on return rolls it back.
        or driver.in_transaction
        or connection.get_execution_options() != engine.get_execution_options()
        or not isinstance(pool, QueuePool)
        or pool.checkedout() >= pool.size()
    ):
        connection.close()
        return
    slot = _local.slot
    if slot is None:
        slot = _local.slot = _Slot()
        # Closes what the slot holds when its thread ends (and at exit, for the main one).
        weakref.finalize(slot, _give_back_all, slot.held)
    displaced = slot.held[:]
    slot.held[:] = [(connection, pool)]
    for kept, kept_pool in displaced:
        _give_back(kept, kept_pool)


def _give_back(connection: sa.Connection, pool: object) -> None:
    """Close ``connection``; if its pool was replaced since, close its driver's too."""
    if pool is not connection.engine.pool and not connection.invalidated:
        connection.invalidate()  # the old pool would keep it open, unused, for ever
    connection.close()


def _give_back_all(held: list[tuple[sa.Connection, object]]) -> None:
    while held:
        connection, pool = held.pop()
        _give_back(connection, pool)


def _forget_in_child() -> None:
    slot = _local.slot
    if slot is not None:
        _inherited.extend(slot.held)
        slot.held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
