"""Each thread keeps the connection of its last unit of work for its next one.

Taking a connection from SQLAlchemy's pool and giving it back (checkout, reset, checkin,
their events, a new ``Connection``) cost about as much as a SQLite ``INSERT``: a fifth of
a load. So the sync unit of work on a SQLite file or on PostgreSQL (psycopg) leaves the
connection of a block that ended checked out, outside any transaction, in a slot of its
thread, and the next block of any unit of work on the same engine in that thread takes it
from there.

Outside a transaction a connection holds no lock and no snapshot, so a kept connection
changes nothing another connection sees. A PostgreSQL one waits in the driver's autocommit
mode (setting it on an idle psycopg connection sends nothing), so that a block that only
reads needs no switch at all; the block switches it off before it begins a transaction, and
it is switched off again before it goes back to the pool, as the pool gave it.

What is kept is bounded: one connection a thread (the last engine's; another engine's
displaces it, closed), and only while the pool has room to spare (fewer connections checked
out than its ``pool_size``), and for ``HOLD_SECONDS`` after its checkout: then the deadline
thread (:data:`~tactical.sqlalchemy._watchdog.DEADLINES`) gives it back, also when its
thread runs no other block (idle, or busy with other work), so that code waiting for the
pool meanwhile waits a second at most, and the pool's own care (``pool_recycle``,
``pool_pre_ping`` and the refresh of connections older than a disconnect) applies to it
within a second. A connection is given back to the pool at once instead when it is
invalidated, was given execution options of its own, its driver is still in a transaction
(a failed ``COMMIT`` leaves one) or its engine's pool was replaced (``Engine.dispose()``).
Nothing is kept for an engine whose pool has checkout, checkin or reset
listeners: their code expects every block to check a connection out. The slot's connection
is closed, the ordinary way, when its thread ends; a child process made by ``fork()`` drops
what its parent kept without using or closing it.

A kept PostgreSQL connection may have died while it waited (a server restart, an idle
timeout, ``pg_terminate_backend``) where the pool, with ``pool_pre_ping``, would have
replaced it: the unit of work retries the first round trip of a block on a kept connection
once, on one from the pool, when it fails with a disconnect (nothing of the block can have
reached the database; see ``SqlAlchemyUnitOfWork._perform``).
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from typing import Any

from sqlalchemy.pool import QueuePool

import sqlalchemy as sa
from tactical.sqlalchemy._watchdog import DEADLINES

__all__ = ["HOLD_SECONDS", "give_back", "keep_connection", "keeps_connections", "take_connection"]

HOLD_SECONDS = 1.0
"""How long after its checkout a kept connection goes back to the pool."""

# (connection, its engine's pool when it was kept, monotonic time of its checkout)
_Held = tuple[sa.Connection, object, float]


class _Slot:
    """A thread's kept connection, with the pool it came from."""

    __slots__ = ("__weakref__", "give_back_all", "held")

    def __init__(self) -> None:
        # At most one _Held; a list the finalizer and the deadline thread share.
        self.held: list[_Held] = []
        self.give_back_all = functools.partial(_give_back_all, self.held)


class _Local(threading.local):
    slot: _Slot | None = None


_local = _Local()
# What a forked child inherited: never used or closed there (the parent's), but referenced
# so that SQLAlchemy does not warn about collecting connections not checked in.
_inherited: list[_Held] = []


def keeps_connections(engine: sa.Engine) -> bool:
    """Whether units of work over ``engine`` keep their thread's connection between blocks.

    A ``QueuePool`` on SQLite (SQLAlchemy's pool for a SQLite file: not an in-memory
    database, whose connections are the thread's anyway) or on PostgreSQL over psycopg;
    not a ``NullPool``, whose user asked for no connection to outlive its use, nor a pool
    with checkout, checkin or reset listeners.
    """
    dialect = engine.dialect
    pool = engine.pool
    dispatch: Any = pool.dispatch
    return (
        (dialect.name == "sqlite" or (dialect.name == "postgresql" and dialect.driver == "psycopg"))
        and isinstance(pool, QueuePool)
        and not (dispatch.checkout or dispatch.checkin or dispatch.reset)
    )


def take_connection(engine: sa.Engine) -> tuple[sa.Connection, float, bool]:
    """The connection this thread kept for ``engine``, or a new one from its pool.

    Returns it with the time of its checkout (``time.monotonic()``; give it to
    :func:`keep_connection`) and whether it was kept (a kept PostgreSQL connection is in
    the driver's autocommit mode).
    """
    slot = _local.slot
    if slot is not None and slot.held:
        # Its give-back at HOLD_SECONDS runs under the deadlines' lock: once disarmed, what
        # the slot still holds is this thread's alone.
        DEADLINES.disarm(slot.give_back_all)
        if slot.held:
            connection, pool, since = slot.held[0]
            if connection.engine is not engine:
                _hold(slot, since)  # another engine's, for that engine's next block
            else:
                slot.held.clear()
                if (
                    pool is engine.pool
                    and not connection.invalidated
                    and time.monotonic() - since < HOLD_SECONDS
                ):
                    return connection, since, True
                give_back(connection, pool)
    return engine.connect(), time.monotonic(), False


def keep_connection(connection: sa.Connection, since: float) -> None:
    """End ``connection``'s transaction and keep it for this thread's next block, or close it.

    ``since`` is when it was taken from the pool (:func:`take_connection` says). A
    transaction it still has (active, or inactive after a failed ``COMMIT``) is rolled back
    first; if that fails the connection is closed and the error raised.
    """
    engine = connection.engine
    pool = engine.pool
    try:
        if connection.get_transaction() is not None:
            connection.rollback()
    except BaseException:
        give_back(connection, pool)
        raise
    driver: Any = connection.connection.dbapi_connection
    sqlite = connection.dialect.name == "sqlite"
    if (
        connection.invalidated
        # The driver's own transaction, which a failed COMMIT leaves open: the pool's
        # reset on return rolls it back.
        or (driver.in_transaction if sqlite else driver.pgconn.transaction_status)
        or connection.get_execution_options() != engine.get_execution_options()
        or not isinstance(pool, QueuePool)
        or pool.checkedout() >= pool.size()
        or time.monotonic() - since >= HOLD_SECONDS
    ):
        give_back(connection, pool)
        return
    if not (sqlite or driver.autocommit):
        try:
            driver.autocommit = True  # idle: psycopg sends nothing
        except BaseException:
            give_back(connection, pool)
            raise
    slot = _local.slot
    if slot is None:
        slot = _local.slot = _Slot()
        # Closes what the slot holds when its thread ends (and at exit, for the main one).
        weakref.finalize(slot, _give_back_all, slot.held)
    else:
        DEADLINES.disarm(slot.give_back_all)  # what it holds is this thread's (take_connection)
    displaced = slot.held[:]
    slot.held[:] = [(connection, pool, since)]
    _hold(slot, since)
    for kept, kept_pool, _ in displaced:
        give_back(kept, kept_pool)


def give_back(connection: sa.Connection, pool: object) -> None:
    """Close ``connection``, giving it back to its pool as the pool gave it.

    A PostgreSQL connection leaves the driver's autocommit mode first (invalidated, and
    the error raised, if it cannot); if ``pool`` (its engine's when it was kept) was replaced since, the driver's
    connection is closed too: the old pool would keep it open, unused, for ever.
    """
    if not connection.invalidated:
        if pool is not connection.engine.pool:
            connection.invalidate()
        elif connection.dialect.name == "postgresql":
            driver: Any = connection.connection.dbapi_connection
            try:
                if driver.autocommit:
                    driver.autocommit = False
            except BaseException:
                connection.invalidate()  # the pool must not get it back in autocommit mode
                connection.close()
                raise
    connection.close()


def _hold(slot: _Slot, since: float) -> None:
    """Give back what ``slot`` holds HOLD_SECONDS after ``since``, from the deadline thread.

    Also when its thread runs no other block (idle, or busy elsewhere): others may be
    waiting for the pool meanwhile.
    """
    # Keyed by the callback, not the slot: the slot is collected when its thread ends.
    release = slot.give_back_all
    DEADLINES.arm(release, since + HOLD_SECONDS - time.monotonic(), release)


def _give_back_all(held: list[_Held]) -> None:
    # The deadline thread and the finalizer of a thread that ended may both be at it.
    while True:
        try:
            connection, pool, _ = held.pop()
        except IndexError:
            return
        give_back(connection, pool)


def _forget_in_child() -> None:
    slot = _local.slot
    if slot is not None:
        _inherited.extend(slot.held)
        slot.held.clear()


os.register_at_fork(after_in_child=_forget_in_child)
