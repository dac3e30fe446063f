"""A deadline on database round trips: cut the socket of one that never returns.

psycopg 3 has no read timeout: a server (or proxy, or load balancer) that stops answering
while the TCP connection stays up leaves a query blocked in ``recv`` for ever, and
PostgreSQL-side settings (``statement_timeout``, ``idle_in_transaction_session_timeout``)
cannot help when the server never received the query. Kernel settings (``keepalives``,
``tcp_user_timeout``) only help when nothing at all acknowledges the packets. What does
work is to shut the socket down from another thread: the blocked read returns at once and
the driver raises a disconnect error, after which SQLAlchemy discards the connection.

One daemon thread per process serves every guarded connection; arming and disarming a
deadline is a dictionary update under a lock. Code that issues its own round trips (the unit
of work's statements, commit and rollback) arms the deadline itself around each one, which
costs far less than SQLAlchemy's engine events; the events (:func:`watch_round_trips`) bound
the statements others run on the connection (a relational mapper's, a user's query).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = ["Deadlines", "RoundTripDeadline", "guard_round_trips", "watch_round_trips"]


class Deadlines:
    """Calls each armed callback once its deadline passes, unless it was disarmed first.

    The thread wakes at the earliest deadline or after ``_IDLE_WAKE`` seconds, whichever
    comes first, so arming a deadline later than its next wake-up (the usual case: seconds
    ahead) needs no notification: a statement's arm and disarm stay a dictionary update
    under a lock, without waking the thread twice per round trip.
    """

    _IDLE_WAKE = 1.0

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._armed: dict[object, tuple[float, Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None
        self._wake_at = 0.0  # when the thread looks at the deadlines next

    def arm(self, key: object, seconds: float, expire: Callable[[], None]) -> None:
        """Call ``expire()`` in ``seconds`` unless ``key`` is disarmed or re-armed before."""
        deadline = time.monotonic() + seconds
        with self._condition:
            self._armed[key] = (deadline, expire)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="tactical-deadlines", daemon=True
                )
                self._thread.start()
            if deadline < self._wake_at:
                self._condition.notify()

    def disarm(self, key: object) -> None:
        """Forget ``key``'s deadline (nothing happens if it had none)."""
        with self._condition:
            self._armed.pop(key, None)

    def _watch(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                if not self._armed:
                    self._wake_at = now + self._IDLE_WAKE
                    self._condition.wait(self._IDLE_WAKE)
                    continue
                key, (deadline, expire) = min(self._armed.items(), key=lambda item: item[1][0])
                remaining = deadline - now
                if remaining > 0:
                    wait = min(remaining, self._IDLE_WAKE)
                    self._wake_at = now + wait
                    self._condition.wait(wait)
                    continue
                del self._armed[key]
                # Under the lock, so that a disarm racing with the expiry waits for it and
                # the connection is not handed on while its socket is being shut down.
                with contextlib.suppress(Exception):
                    expire()


DEADLINES = Deadlines()
"""The process's deadline thread (started on first use)."""


_GUARD = "tactical_deadline"  # the pooled connection's info key of its current guard


@dataclass(eq=False, slots=True)
class RoundTripDeadline:
    """The deadline of one connection's round trips: arm it before one, disarm it after."""

    seconds: float
    expire: Callable[[], None]

    def arm(self) -> None:
        """Cut the connection unless :meth:`disarm` is called within ``seconds``."""
        DEADLINES.arm(self, self.seconds, self.expire)

    def disarm(self) -> None:
        """Forget the deadline (nothing happens if it is not armed)."""
        DEADLINES.disarm(self)


def watch_round_trips(engine: sa.Engine) -> None:
    """Let :func:`guard_round_trips` bound round trips on ``engine``'s connections; idempotent.

    Installs the engine's listeners once (adding one listener per connection and block cost
    ~80 us; these cost a dictionary lookup per statement when no guard is set). Call it
    before connecting: SQLAlchemy decides when a connection is made whether it runs events.
    """
    if not event.contains(engine, "before_cursor_execute", _arm):
        for name, listener in _LISTENERS:
            event.listen(engine, name, listener)


def _guard_of(connection: sa.Connection) -> RoundTripDeadline | None:
    # An invalidated connection (its socket was cut) has no pooled connection to ask:
    # reading .info would try to reconnect.
    return None if connection.invalidated else connection.info.get(_GUARD)


def _arm(connection: sa.Connection, *_args: object) -> None:
    guard = _guard_of(connection)
    if guard is not None:
        guard.arm()


def _disarm(connection: sa.Connection, *_args: object) -> None:
    guard = _guard_of(connection)
    if guard is not None:
        guard.disarm()


_LISTENERS: tuple[tuple[str, Callable[..., None]], ...] = (
    ("before_cursor_execute", _arm),
    ("after_cursor_execute", _disarm),
    ("commit", _arm),
    ("rollback", _arm),
)


@contextlib.contextmanager
def guard_round_trips(
    connection: sa.Connection, seconds: float, on_expiry: Callable[[], None]
) -> Generator[RoundTripDeadline | None, None, None]:
    """Bound every statement, commit and rollback on ``connection`` to ``seconds``.

    A round trip still running after ``seconds`` has its socket shut down (its driver
    connection must have ``fileno()``, as psycopg's has; others are not guarded: None is
    yielded) and ``on_expiry()`` is called first. Nothing is armed between round trips, so
    work done between statements (publishing a batch) is not limited. Statements run
    through SQLAlchemy are armed by the engine's listeners, if :func:`watch_round_trips`
    installed them; yields the deadline, for code that arms its own round trips instead
    (and to disarm it when a commit has returned: SQLAlchemy has no event after a commit).
    """
    dbapi_connection: Any = connection.connection.dbapi_connection
    fileno: Callable[[], int] | None = getattr(dbapi_connection, "fileno", None)
    if fileno is None:
        yield None
        return

    def expire() -> None:
        on_expiry()
        _shut_down(fileno)

    deadline = RoundTripDeadline(seconds, expire)
    info = connection.info
    info[_GUARD] = deadline
    try:
        yield deadline
    finally:
        deadline.disarm()
        info.pop(_GUARD, None)


def _shut_down(fileno: Callable[[], int]) -> None:
    # shutdown() acts on the socket itself, so a duplicate of its descriptor is enough (and
    # closing the duplicate leaves the driver's descriptor alone).
    duplicate = socket.socket(fileno=os.dup(fileno()))
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    finally:
        duplicate.close()
