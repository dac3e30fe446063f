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
costs far less than SQLAlchemy's engine events; the events (:func:`watched_engine`) bound
the statements others run on the connection (a relational mapper's, a user's query).

The async drivers are guarded the same way: SQLAlchemy runs the sync engine's events inside
its greenlet for every statement of an ``AsyncConnection``, and the cut is handed to the
connection's event loop (:func:`cut_connection`: psycopg's socket is shut down, asyncpg's
connection terminated), whose pending read then fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

__all__ = [
    "Deadlines",
    "RoundTripDeadline",
    "cut_connection",
    "guard_round_trips",
    "install_guard",
    "remove_guard",
    "watch_connection",
    "watched_engine",
]


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

    def start_afresh(self) -> None:
        """In a child made by ``fork()``: no thread yet (threads do not survive a fork).

        The parent's deadlines are its other threads' (the forking thread is in no round
        trip); its lock may have been held by its thread at the fork.
        """
        self._condition = threading.Condition()
        self._armed.clear()
        self._thread = None
        self._wake_at = 0.0


DEADLINES = Deadlines()
"""The process's deadline thread (started on first use, in a forked child too)."""
os.register_at_fork(after_in_child=DEADLINES.start_afresh)


_GUARD = "tactical_deadline"  # the pooled connection's info key of its current guard


@dataclass(eq=False, slots=True)
class RoundTripDeadline:
    """The deadline of one connection's round trips: arm it before one, disarm it after.

    ``note`` (if given) annotates the error of a statement run through SQLAlchemy that
    failed because this deadline cut it; ``suspended`` makes the engine's listeners leave
    the deadline alone (for round trips their issuer bounds in another way).
    """

    seconds: float
    expire: Callable[[], None]
    note: Callable[[BaseException], None] | None = None
    suspended: bool = False
    expired: bool = False

    def arm(self) -> None:
        """Cut the connection unless :meth:`disarm` is called within ``seconds``."""
        DEADLINES.arm(self, self.seconds, self._expire)

    def _expire(self) -> None:
        self.expired = True
        self.expire()

    def disarm(self) -> None:
        """Forget the deadline (nothing happens if it is not armed)."""
        DEADLINES.disarm(self)


_WATCHED_LOCK = threading.Lock()
_WATCHED: weakref.WeakKeyDictionary[sa.Engine, weakref.ref[sa.Engine]] = (
    weakref.WeakKeyDictionary()
)  # each engine's watched engine, while something holds it


def watched_engine(engine: sa.Engine) -> sa.Engine:
    """``engine``'s pool and settings, with connections whose round trips the guards bound.

    Statements run through SQLAlchemy on its connections are armed by :func:`guard_round_trips`'s
    deadline (those on ``engine``'s own connections are not). It is a derived engine
    (``engine.execution_options()``) holding the listeners, so that ``engine``'s own
    connections do not pay for them (~10 us a statement), and made whole before anyone can
    use it: ``event.listen`` on an engine in use raises "deque mutated during iteration" in
    a thread running the same event's listeners. One per engine while something holds it.
    """
    with _WATCHED_LOCK:
        known = _WATCHED.get(engine)
        watched = None if known is None else known()
        if watched is None:
            watched = engine.execution_options()
            for name, listener in _CONNECTION_LISTENERS:
                event.listen(watched, name, listener)
            _watch_errors(engine.dialect)
            _WATCHED[engine] = weakref.ref(watched)
        return watched


def watch_connection(connection: sa.Connection) -> None:
    """Have the guards bound the round trips run through SQLAlchemy on ``connection`` too.

    For a connection taken before it was known to need them (not from :func:`watched_engine`):
    its listeners are its own (~80 us to add), and so change no list another thread runs.
    """
    with _WATCHED_LOCK:
        _watch_errors(connection.dialect)
    for name, listener in _CONNECTION_LISTENERS:
        event.listen(connection, name, listener)


def _watch_errors(dialect: sa.Dialect) -> None:
    # SQLAlchemy sends handle_error to the dialect's listeners only (shared by an engine and
    # those derived from it): added once, under the lock, it is the only list ever changed
    # while others may run it, and only while an error is being handled.
    if not event.contains(dialect, "handle_error", _failed):
        event.listen(dialect, "handle_error", _failed)


def _guard_of(connection: sa.Connection) -> RoundTripDeadline | None:
    # An invalidated connection (its socket was cut) has no pooled connection to ask:
    # reading .info would try to reconnect.
    return None if connection.invalidated else connection.info.get(_GUARD)


def _arm(connection: sa.Connection, *_args: object) -> None:
    guard = _guard_of(connection)
    if guard is not None and not guard.suspended:
        guard.arm()


def _disarm(connection: sa.Connection, *_args: object) -> None:
    guard = _guard_of(connection)
    if guard is not None:
        guard.disarm()


def _failed(context: sa.engine.ExceptionContext) -> None:
    # A failed statement gets no after_cursor_execute: disarm here, or the deadline would
    # cut the connection later, in the middle of whatever the block does next.
    connection = context.connection
    guard = None if connection is None else _guard_of(connection)
    if guard is None or guard.suspended:
        return
    guard.disarm()
    if guard.expired and guard.note is not None and context.sqlalchemy_exception is not None:
        guard.note(context.sqlalchemy_exception)


_CONNECTION_LISTENERS: tuple[tuple[str, Callable[..., None]], ...] = (
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
    through SQLAlchemy are armed by the listeners of a connection of :func:`watched_engine`
    (or one given to :func:`watch_connection`); yields the deadline, for code that arms its own round trips instead
    (and to disarm it when a commit has returned: SQLAlchemy has no event after a commit).
    """
    guard = install_guard(connection, seconds, on_expiry)
    if guard is None:
        yield None
        return
    try:
        yield guard[0]
    finally:
        remove_guard(guard)


def install_guard(
    connection: sa.Connection,
    seconds: float,
    on_expiry: Callable[[], None],
    note: Callable[[BaseException], None] | None = None,
) -> tuple[RoundTripDeadline, dict[Any, Any]] | None:
    """Set ``connection``'s round-trip deadline (see :func:`guard_round_trips`).

    On an async driver's connection (taken in its event loop) the cut is sent to that loop;
    ``note`` annotates the error of a statement the deadline cut. Returns what
    :func:`remove_guard` takes, or None for a driver that cannot be cut (no socket).
    """
    driver: Any = connection.connection.driver_connection
    if connection.dialect.is_async:
        loop = asyncio.get_running_loop()

        def expire() -> None:
            on_expiry()
            loop.call_soon_threadsafe(cut_connection, driver)

    else:
        if getattr(driver, "fileno", None) is None:
            return None

        def expire() -> None:
            on_expiry()
            cut_connection(driver)

    deadline = RoundTripDeadline(seconds, expire, note)
    info = connection.info
    info[_GUARD] = deadline
    return deadline, info


def remove_guard(guard: tuple[RoundTripDeadline, dict[Any, Any]]) -> None:
    """Disarm and forget a deadline :func:`install_guard` set (before the connection is pooled)."""
    deadline, info = guard
    deadline.disarm()
    info.pop(_GUARD, None)


def cut_connection(driver: Any) -> None:
    """Make a round trip blocked on ``driver``'s connection fail now, whatever the peer does.

    psycopg's connections (sync and async) have ``fileno()``: shutting the socket down
    (through a duplicate of the descriptor, leaving the driver's own alone: shutdown()
    acts on the socket itself) ends the pending read at once. asyncpg's connection has
    ``terminate()``, which aborts its transport (call it in the connection's event loop).
    Either way the driver raises a disconnect error and SQLAlchemy discards the connection.
    """
    fileno: Callable[[], int] | None = getattr(driver, "fileno", None)
    if fileno is None:
        driver.terminate()
        return
    duplicate = socket.socket(fileno=os.dup(fileno()))
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the round trip ends all the same
    finally:
        duplicate.close()
