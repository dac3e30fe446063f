"""TaskDeadline: database_timeout's deadline on a task's awaits, as asyncio.timeout behaves.

No database: plain awaits stand for round trips. The deadlines that must expire are short
and the awaits they cut would last far longer, so a deadline that failed to fire fails the
test (by its result, never by a timing assertion).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from tactical.sqlalchemy._task_deadline import TaskDeadline

T = TypeVar("T")

NEVER = 30.0  # an await this long is one the deadline must cut


async def bounded(deadline: TaskDeadline, awaitable: Awaitable[T]) -> T:
    """Await as the async unit of work does: arm, await, end (TimeoutError when it says so)."""
    deadline.arm()
    try:
        result = await awaitable
    except BaseException as error:
        if deadline.end(error):
            raise TimeoutError from error
        raise
    deadline.end(None)
    return result


class TestTaskDeadline:
    async def test_an_await_past_its_deadline_raises_timeout_error(self) -> None:
        """The await is cancelled at the deadline and TimeoutError replaces the CancelledError."""
        deadline = TaskDeadline(0.05)
        with pytest.raises(TimeoutError) as raised:
            await bounded(deadline, asyncio.sleep(NEVER))
        assert isinstance(raised.value.__cause__, asyncio.CancelledError)
        assert deadline.expired
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0

    async def test_an_await_within_its_deadline_returns_and_leaves_nothing_armed(self) -> None:
        """Ended in time, the deadline never cancels the task afterwards."""
        deadline = TaskDeadline(0.05)
        assert await bounded(deadline, asyncio.sleep(0, "answer")) == "answer"
        await asyncio.sleep(0.3)  # well past the deadline: nothing may cancel this
        assert not deadline.expired

    async def test_another_cancellation_stays_a_cancellation(self) -> None:
        """task.cancel() by someone else is not turned into a TimeoutError."""
        deadline = TaskDeadline(NEVER)
        task = asyncio.create_task(bounded(deadline, asyncio.sleep(NEVER)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not deadline.expired

    async def test_rearming_gives_each_round_trip_the_whole_deadline(self) -> None:
        """Round trips that together outlast the deadline pass when it is re-armed before each."""
        deadline = TaskDeadline(1.0)

        async def round_trips() -> int:
            for _ in range(5):  # 1.5 s in all, 0.3 s each
                deadline.rearm()
                await asyncio.sleep(0.3)
            return 5

        assert await bounded(deadline, round_trips()) == 5
        assert not deadline.expired

    async def test_rearming_after_expiry_does_not_revive_the_deadline(self) -> None:
        """Once expired the deadline stays expired: the cut it made is reported as a timeout."""
        deadline = TaskDeadline(0.05)

        async def cut_then_clean_up() -> None:
            try:
                await asyncio.sleep(NEVER)
            finally:
                deadline.rearm()  # the clean-up's round trip, after the cut
                assert deadline.expired

        with pytest.raises(TimeoutError):
            await bounded(deadline, cut_then_clean_up())

    async def test_each_task_has_its_own_deadline_on_one_loop(self) -> None:
        """A short deadline expiring cuts its own task only; a long one armed after it still holds."""
        short, long = TaskDeadline(0.05), TaskDeadline(NEVER)

        async def slow_with_long_deadline() -> str:
            return await bounded(long, asyncio.sleep(0.3, "done"))

        other = asyncio.create_task(slow_with_long_deadline())
        with pytest.raises(TimeoutError):
            await bounded(short, asyncio.sleep(NEVER))
        assert await other == "done"
        assert (short.expired, long.expired) == (True, False)

    def test_one_deadline_serves_successive_event_loops(self) -> None:
        """A unit of work's deadline works on each loop it is used on (asyncio.run after asyncio.run)."""
        deadline = TaskDeadline(0.05)
        for _ in range(2):
            with pytest.raises(TimeoutError):
                asyncio.run(bounded(deadline, asyncio.sleep(NEVER)))

    def test_arming_outside_a_task_is_refused(self) -> None:
        """A loop callback has no task to cancel: arming there is an error, not a silent no-op."""
        loop = asyncio.new_event_loop()
        try:
            future: asyncio.Future[BaseException | None] = loop.create_future()

            def arm_in_a_callback() -> None:
                try:
                    TaskDeadline(1.0).arm()
                except RuntimeError as error:
                    future.set_result(error)
                else:
                    future.set_result(None)

            loop.call_soon(arm_in_a_callback)
            error = loop.run_until_complete(future)
        finally:
            loop.close()
        assert isinstance(error, RuntimeError)
        assert "task" in str(error)
