"""SQLAlchemy's bridge from sync code to an async driver, on greenlets kept for reuse.

SQLAlchemy runs a sync ``Connection`` on an async driver in a greenlet: where the driver
must await, ``await_`` switches to the greenlet of the event loop's task with the
awaitable, which awaits it and switches back with its result. ``AsyncConnection.run_sync``
(``greenlet_spawn``) starts a new greenlet for every call, and starting one costs far
more than switching into one that runs: on Python 3.11 and later each new greenlet sets up
a frame stack of its own (about 20 us on the benchmark machine, against 1 us for a switch
there and back). The async unit of work enters one for every await of a block (connecting,
each load, the commit, the release), so it runs them on :func:`run_in_greenlet` instead:
each thread keeps its idle worker greenlets, and a call takes one, runs in it, and gives
it back. What runs in it is exactly what ``run_sync`` would run, the same way: SQLAlchemy's
``await_`` accepts the worker (it is marked as SQLAlchemy marks its own), a cancellation
of the awaiting task is thrown into the call at the driver's await, and the call sees the
task's context variables.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

__all__ = ["run_in_greenlet"]

T = TypeVar("T")

# Idle workers kept per thread, at most: past it a worker is dropped when its call ends
# (greenlet ends a dropped idle one by raising GreenletExit in it).
_KEPT = 64


class _Outcome:
    """How a worker's call ended: its value, or the exception it raised."""

    __slots__ = ("error", "value")

    def __init__(self, value: object, error: BaseException | None) -> None:
        self.value = value
        self.error = error


def _worker_type() -> tuple[Callable[[], Any], Callable[[], Any]]:
    """The worker greenlet class and greenlet's ``getcurrent``, made on first use.

    greenlet comes with SQLAlchemy's asyncio extra, which every async driver of tactical's
    needs; ``import tactical.sqlalchemy`` must work without it (the extra "sql" alone).
    """
    from greenlet import getcurrent, greenlet  # see the docstring

    class Worker(greenlet):  # type: ignore[misc]  # mypy finds no stubs: greenlet is Any to it
        """A greenlet that runs one call after another, each switched in by its caller."""

        # SQLAlchemy's await_ only switches out of greenlets marked so (its own are).
        __sqlalchemy_greenlet_provider__ = True

        def __init__(self) -> None:
            super().__init__(self._serve)

        def _serve(self, call: tuple[Callable[..., object], tuple[object, ...]]) -> None:
            while True:
                function, arguments = call
                try:
                    outcome = _Outcome(function(*arguments), None)
                except BaseException as error:  # the caller raises it, in its task
                    outcome = _Outcome(None, error)
                caller: Any = self.parent  # set by run_in_greenlet before each call
                call = caller.switch(outcome)

    return Worker, getcurrent


class _Idle(threading.local):
    workers: list[Any]

    def __init__(self) -> None:
        self.workers = []


_idle = _Idle()
_greenlet: list[tuple[Callable[[], Any], Callable[[], Any]]] = []  # _worker_type(), once


async def run_in_greenlet(function: Callable[..., T], *arguments: object) -> T:
    """``function(*arguments)`` in a greenlet where SQLAlchemy may await the async driver.

    As ``AsyncConnection.run_sync`` runs it, on a worker greenlet of this thread's instead
    of a new one.

    Raises:
        BaseException: What the call raised (a cancellation of the awaiting task included,
            thrown into the call at the await it reached).
    """
    if not _greenlet:
        _greenlet.append(_worker_type())
    worker_type, getcurrent = _greenlet[0]
    idle = _idle.workers
    worker = idle.pop() if idle else worker_type()
    current = getcurrent()
    worker.parent = current  # where await_ switches to: this task's greenlet
    worker.gr_context = current.gr_context  # the task's context variables
    result: Any = worker.switch((function, arguments))
    while not isinstance(result, _Outcome):
        try:
            value = await cast("Awaitable[object]", result)
        except BaseException as error:  # into the call, at the await it reached
            result = worker.throw(error)
        else:
            result = worker.switch(value)
    worker.gr_context = None  # holds no context of this task's while idle
    if len(idle) < _KEPT:
        idle.append(worker)
    if result.error is not None:
        raise result.error
    return cast("T", result.value)
