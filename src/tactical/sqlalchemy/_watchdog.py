"""A deadline on database round trips: cut the socket of one that never returns.

psycopg 3 has no read timeout: a server (or proxy, or load balancer) that stops answering
while the TCP connection stays up leaves a query blocked in ``recv`` for ever, and
PostgreSQL-side settings (``statement_timeout``, ``idle_in_transaction_session_timeout``)
cannot help when the server never received the query. Kernel settings (``keepalives``,
``tcp_user_timeout``) only help when nothing at all acknowledges the packets. What does
work is to shut the socket down from another thread: the blocked read returns at once and
the driver raises a disconnect error, after which SQLAlchemy discards the connection.

One daemon thread per process serves every guarded connection; arming and disarming a
deadline is a dictionary update under a lock.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["Deadlines", "guard_round_trips"]


class Deadlines:
    """Calls each armed callback once its deadline passes, unless it was disarmed first."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._armed: dict[object, tuple[float, Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None

    def arm(self, key: object, seconds: float, expire: Callable[[], None]) -> None:
        """Call ``expire()`` in ``seconds`` unless ``key`` is disarmed or re-armed before."""
        with self._condition:
            self._armed[key] = (time.monotonic() + seconds, expire)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="tactical-deadlines", daemon=True
                )
                self._thread.start()
            self._condition.notify()

    def disarm(self, key: object) -> None:
        """Forget ``key``'s deadline (nothing happens if it had none)."""
        with self._condition:
            self._armed.pop(key, None)

    def _watch(self) -> None:
        with self._condition:
            while True:
                if not self._armed:
                    self._condition.wait()
                    continue
                key, (deadline, expire) = min(self._armed.items(), key=lambda item: item[1][0])
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._condition.wait(remaining)
                    continue
                del self._armed[key]
                # Under the lock, so that a disarm racing with the expiry waits for it and
                # the connection is not handed on while its socket is being shut down.
                with contextlib.suppress(Exception):
                    expire()


DEADLINES = Deadlines()
"""The process's deadline thread (started on first use)."""


def _nothing() -> None:
    pass


@contextlib.contextmanager
def guard_round_trips(
    connection: sa.Connection, seconds: float, on_expiry: Callable[[], None]
) -> Generator[Callable[[], None], None, None]:
    """Bound every statement, commit and rollback on ``connection`` to ``seconds``.

    A round trip still running after ``seconds`` has its socket shut down (its driver
    connection must have ``fileno()``, as psycopg's has; others are not guarded) and
    ``on_expiry()`` is called first. Nothing is armed between round trips, so work done
    between statements (publishing a batch) is not limited. Yields the function that
    disarms the current deadline: call it when a commit has returned (SQLAlchemy has no
    event after a commit), if more work follows before the block ends.
    """
    dbapi_connection: Any = connection.connection.dbapi_connection
    fileno: Callable[[], int] | None = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        yield _nothing
        return
    key = object()

    def expire() -> None:
        on_expiry()
        _shut_down(fileno)

    def arm(*_args: object) -> None:
        DEADLINES.arm(key, seconds, expire)

    def disarm(*_args: object) -> None:
        DEADLINES.disarm(key)

    listeners: list[tuple[str, Callable[..., None]]] = [
        ("before_cursor_execute", arm),
        ("after_cursor_execute", disarm),
        ("commit", arm),
        ("rollback", arm),
    ]
    for name, listener in listeners:
        event.listen(connection, name, listener)
    try:
        yield disarm
    finally:
        disarm()
        for name, listener in listeners:
            event.remove(connection, name, listener)


def _shut_down(fileno: Callable[[], int]) -> None:
    # shutdown() acts on the socket itself, so a duplicate of its descriptor is enough (and
    # closing the duplicate leaves the driver's descriptor alone).
    duplicate = socket.socket(fileno=os.dup(fileno()))
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    finally:
        duplicate.close()
