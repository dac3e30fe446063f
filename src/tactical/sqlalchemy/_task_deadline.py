"""database_timeout for asyncio: a deadline on a task's awaits, without a timer per await.

``asyncio.timeout`` schedules a timer when it is entered and cancels it when it exits: on
the async unit of work's path (an await to connect, one per storage flow, one to release)
that cost ~10% of a load + command + commit. Here each event loop has one sweeper instead:
arming a deadline is a dictionary update, and one timer runs at the earliest deadline that
may be due. Deadlines are seconds ahead and re-armed at every round trip, so the timer
fires about once per ``database_timeout`` while work goes on, finds the deadlines moved on
and waits for the earliest again.

An expired deadline cancels its task; the await it bounds then raises ``TimeoutError``
instead of the ``CancelledError``, exactly when ``asyncio.timeout`` would (:meth:`end`
follows ``Timeout.__aexit__``): a cancellation of the task by anyone else stays one.
"""

from __future__ import annotations

import asyncio
import math
import weakref

__all__ = ["TaskDeadline"]

# A timer may fire up to the clock's resolution early: a deadline this close is due.
_EARLY = 0.001


class _Sweeper:
    """The deadlines armed on one event loop, and the one timer that expires them."""

    __slots__ = ("_armed", "_at", "_timer")

    def __init__(self) -> None:
        self._armed: dict[TaskDeadline, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf  # when the timer fires

    def arm(self, deadline: TaskDeadline, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._armed[deadline] = when
        if when < self._at:
            self._schedule(loop, when)

    def disarm(self, deadline: TaskDeadline) -> None:
        self._armed.pop(deadline, None)

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at = when
        self._timer = loop.call_at(when, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._at = None, math.inf
        due = loop.time() + _EARLY
        for deadline in [d for d, when in self._armed.items() if when <= due]:
            del self._armed[deadline]
            deadline.expire()
        if self._armed:
            self._schedule(loop, min(self._armed.values()))


_sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = (
    weakref.WeakKeyDictionary()
)


class TaskDeadline:
    """A deadline ``seconds`` ahead on the awaits of one task at a time.

    Use: :meth:`arm` in the task before the await, :meth:`rearm` to give it ``seconds``
    from now again (between round trips of one await), and :meth:`end` once the await is
    over, whatever it raised; raise ``TimeoutError`` from the error when :meth:`end` says
    so. One object per unit of work: a unit of work serves one task at a time.
    """

    __slots__ = ("_cancelling", "_loop", "_sweeper", "_task", "expired", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: _Sweeper | None = None

    def arm(self) -> None:
        """Cancel the current task in ``seconds`` unless :meth:`end` comes first.

        Raises:
            RuntimeError: Not called from a task on a running event loop.
        """
        loop = asyncio.get_running_loop()
        sweeper = self._sweeper
        if loop is not self._loop or sweeper is None:
            sweeper = _sweepers.get(loop)
            if sweeper is None:
                sweeper = _sweepers[loop] = _Sweeper()
            self._loop, self._sweeper = loop, sweeper
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a database deadline bounds the awaits of a task, not a callback")
        self._task, self._cancelling, self.expired = task, task.cancelling(), False
        sweeper.arm(self, loop, loop.time() + self.seconds)

    def rearm(self) -> None:
        """Give the await ``seconds`` from now (nothing once expired: the cut is on its way)."""
        loop, sweeper = self._loop, self._sweeper
        if self.expired or self._task is None or loop is None or sweeper is None:
            return
        sweeper.arm(self, loop, loop.time() + self.seconds)

    def expire(self) -> None:
        """Cancel the task now (the sweeper calls it when the deadline has passed)."""
        task = self._task
        if task is not None and not self.expired:
            self.expired = True
            task.cancel()

    def end(self, error: BaseException | None) -> bool:
        """Disarm after the await, which raised ``error`` (None: it returned).

        Returns:
            Whether ``error`` is this deadline's cancellation, to be raised as
            ``TimeoutError``: it expired, and the task has no other cancellation pending.
        """
        task, self._task = self._task, None
        if self._sweeper is not None:
            self._sweeper.disarm(self)
        if not self.expired or task is None:
            return False
        return task.uncancel() <= self._cancelling and isinstance(error, asyncio.CancelledError)
