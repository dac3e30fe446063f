"""SQLAlchemy's bridge from sync code to an async driver, imported on first use.

SQLAlchemy runs a sync ``Connection`` on an async driver in a greenlet: where the driver
must await, its ``await_`` switches to the greenlet of the event loop's task with the
awaitable, which awaits it and switches back with its result. ``greenlet_spawn`` (what
``AsyncConnection.run_sync`` calls) starts such a greenlet for a call. Its module needs
greenlet, which comes with SQLAlchemy's asyncio extra (every async driver of tactical's
needs it), while ``import tactical.sqlalchemy`` must work with the extra "sql" alone: so it
is imported at the first call.

Running the calls on greenlets kept for reuse instead (starting one costs about twenty
times a switch into a running one on Python 3.11 and later) took about 0.9x of the time of
an async transaction in a measurement, and was not kept: SQLAlchemy's ``await_`` accepts
only greenlets carrying a private marker of its own, which a future SQLAlchemy could
rename, breaking every async unit of work at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["run_in_greenlet"]

T = TypeVar("T")

_spawn: list[Callable[..., Awaitable[Any]]] = []  # sqlalchemy.util.greenlet_spawn, once


def run_in_greenlet(function: Callable[..., T], *arguments: object) -> Awaitable[T]:
    """``function(*arguments)`` in a greenlet where SQLAlchemy may await the async driver.

    The awaitable of SQLAlchemy's ``greenlet_spawn`` (what ``AsyncConnection.run_sync``
    runs), returned as it is: awaiting it runs the call, a cancellation of the awaiting
    task thrown into the call at the driver's await.
    """
    if not _spawn:
        from sqlalchemy.util import greenlet_spawn  # see the module's docstring

        _spawn.append(greenlet_spawn)
    return _spawn[0](function, *arguments)
