"""retry_on_conflict: bounded re-runs of a transaction refused by optimistic concurrency."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Coroutine
from typing import Any

import pytest

from tactical import ConcurrencyError, InvalidStateError
from tactical._retry import retry_on_conflict


class Flaky:
    """An operation that conflicts a given number of times, then returns its call count."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.conflicts:
            raise ConcurrencyError(f"conflict {self.calls}")
        return self.calls


class TestRetryOnConflict:
    def test_returns_the_first_successful_result(self) -> None:
        """Two conflicts then success: the third run's result comes back."""
        pauses: list[float] = []
        assert retry_on_conflict(Flaky(2), attempts=3, sleep=pauses.append) == 3
        assert len(pauses) == 2

    def test_pauses_grow_but_stay_bounded(self) -> None:
        """Each pause is at most base_delay doubled per retry, capped at max_delay."""
        pauses: list[float] = []
        retry_on_conflict(
            Flaky(6), attempts=7, base_delay=0.01, max_delay=0.05, sleep=pauses.append
        )
        bounds = [0.01, 0.02, 0.04, 0.05, 0.05, 0.05]
        assert all(0 <= p <= b for p, b in zip(pauses, bounds, strict=True))

    def test_gives_up_after_the_last_attempt_with_a_note(self) -> None:
        """When every attempt conflicts, the last ConcurrencyError propagates, saying so."""
        operation = Flaky(10)
        with pytest.raises(ConcurrencyError, match="conflict 4") as raised:
            retry_on_conflict(operation, attempts=4, sleep=lambda _: None)
        assert operation.calls == 4
        assert "gave up after 4 attempts" in "".join(raised.value.__notes__)

    def test_each_pause_is_the_jitter_fraction_of_a_doubling_capped_bound(self) -> None:
        """With the jitter fixed at 0.5, the pauses are half of 10, 20, 40 ms, then of the 50 ms cap."""
        pauses: list[float] = []
        retry_on_conflict(
            Flaky(5),
            attempts=6,
            base_delay=0.01,
            max_delay=0.05,
            sleep=pauses.append,
            random=lambda: 0.5,
        )
        assert pauses == pytest.approx([0.005, 0.01, 0.02, 0.025, 0.025])

    def test_the_default_backoff_doubles_from_20_ms_to_1_s_over_10_attempts(self) -> None:
        """Defaults: 10 attempts; pause bounds 20, 40, ... ms capped at 1 s (jitter near 1 shows them)."""
        pauses: list[float] = []
        operation = Flaky(100)
        with pytest.raises(ConcurrencyError, match="conflict 10"):
            retry_on_conflict(operation, sleep=pauses.append, random=lambda: 1.0)
        assert operation.calls == 10
        assert pauses == pytest.approx([0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0, 1.0])

    def test_a_zero_jitter_retries_without_pausing(self) -> None:
        """The pause is a fraction of the bound: a jitter of 0 gives no pause at all."""
        pauses: list[float] = []
        assert retry_on_conflict(Flaky(3), sleep=pauses.append, random=lambda: 0.0) == 4
        assert pauses == [0.0, 0.0, 0.0]

    @pytest.mark.parametrize(
        "error",
        [RuntimeError("database is down"), LookupError("no such claim"), OSError("reset")],
    )
    def test_only_concurrency_errors_are_retried(self, error: Exception) -> None:
        """Any other exception propagates on the first run, without a pause."""
        calls: list[int] = []
        pauses: list[float] = []

        def fail() -> None:
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            retry_on_conflict(fail, sleep=pauses.append)
        assert (calls, pauses) == ([1], [])

    def test_domain_errors_are_not_retried(self) -> None:
        """A business-rule refusal propagates on the first run."""
        calls: list[int] = []

        def refuse() -> None:
            calls.append(1)
            raise InvalidStateError("Policy is cancelled")

        with pytest.raises(InvalidStateError):
            retry_on_conflict(refuse, sleep=lambda _: None)
        assert calls == [1]

    @pytest.mark.parametrize(
        ("attempts", "base_delay", "max_delay", "message"),
        [(0, 0.1, 0.1, "attempts must be at least 1, got 0"), (1, -1.0, 0.1, "negative")],
    )
    def test_bad_arguments_are_refused(
        self, attempts: int, base_delay: float, max_delay: float, message: str
    ) -> None:
        """Nonsensical bounds are refused before anything runs."""
        operation = Flaky(0)
        with pytest.raises(ValueError, match=message):
            retry_on_conflict(
                operation, attempts=attempts, base_delay=base_delay, max_delay=max_delay
            )
        assert operation.calls == 0


class AsyncFlaky:
    """An async transaction that conflicts a given number of times, then returns its input."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.calls = 0
        self.conflicted = asyncio.Event()

    async def __call__(self, amount: int, *, note: str = "") -> str:
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls <= self.conflicts:
            self.conflicted.set()
            raise ConcurrencyError(f"conflict {self.calls}")
        return f"{amount}{note} after {self.calls} runs"


class Pauses:
    """An async sleep that records the pauses instead of waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


class TestRetryOnConflictAsync:
    async def test_an_async_function_is_decorated_and_retried(self) -> None:
        """Two conflicts then success: the decorated function returns the third run's result."""
        pauses = Pauses()
        approve = retry_on_conflict(AsyncFlaky(2), attempts=3, sleep=pauses)
        assert await approve(10, note="!") == "10! after 3 runs"
        assert len(pauses.seconds) == 2

    async def test_gives_up_after_the_last_attempt_with_a_note(self) -> None:
        """When every attempt conflicts, the last ConcurrencyError propagates, saying so."""
        operation = AsyncFlaky(10)
        with pytest.raises(ConcurrencyError, match="conflict 4") as raised:
            await retry_on_conflict(operation, attempts=4, sleep=Pauses())(1)
        assert operation.calls == 4
        assert "gave up after 4 attempts" in "".join(raised.value.__notes__)

    async def test_pauses_and_logging_are_those_of_the_sync_path(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The same policy decides both paths: equal pauses for equal jitter, the same log."""
        sync_pauses: list[float] = []
        retry_on_conflict(Flaky(5), attempts=6, sleep=sync_pauses.append, random=lambda: 0.5)
        async_pauses = Pauses()
        with caplog.at_level(logging.DEBUG, logger="tactical.retry"):
            await retry_on_conflict(
                AsyncFlaky(5), attempts=6, sleep=async_pauses, random=lambda: 0.5
            )(1)
        assert async_pauses.seconds == pytest.approx(sync_pauses)
        assert async_pauses.seconds == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.16])
        assert [r.getMessage() for r in caplog.records] == [
            f"attempt {n} of 6 conflicted (conflict {n}); retrying" for n in range(1, 6)
        ]

    async def test_only_concurrency_errors_are_retried(self) -> None:
        """Another exception from an async function propagates on the first run."""
        calls: list[int] = []

        async def refuse() -> None:
            calls.append(1)
            raise InvalidStateError("Policy is cancelled")

        with pytest.raises(InvalidStateError):
            await retry_on_conflict(refuse, sleep=Pauses())()
        assert calls == [1]

    async def test_cancellation_during_the_backoff_pause_propagates_at_once(self) -> None:
        """Cancelled while pausing (a minute) before a retry: the task ends now, with no retry."""
        operation, pausing = AsyncFlaky(100), asyncio.Event()

        async def pause(seconds: float) -> None:
            pausing.set()
            await asyncio.sleep(seconds)

        approve = retry_on_conflict(
            operation, base_delay=60.0, max_delay=60.0, sleep=pause, random=lambda: 1.0
        )
        task = asyncio.create_task(approve(1))
        await pausing.wait()
        task.cancel()
        async with asyncio.timeout(5):  # a bound on a hang, not a speed assertion
            with pytest.raises(asyncio.CancelledError):
                await task
        assert operation.calls == 1

    async def test_the_default_pause_is_asyncio_sleep(self) -> None:
        """Without a sleep given, the pauses are awaited on the event loop (zero jitter here)."""
        operation = AsyncFlaky(2)
        assert await retry_on_conflict(operation, random=lambda: 0.0)(5) == "5 after 3 runs"

    async def test_the_decorated_function_keeps_its_name_and_is_async(self) -> None:
        """What wraps an async def is itself an async def, named after it (the bus sees it)."""

        async def approve_claim(claim: int) -> int:
            return claim

        wrapped = retry_on_conflict(approve_claim)
        assert inspect.iscoroutinefunction(wrapped)
        assert wrapped.__name__ == "approve_claim"
        assert await wrapped(7) == 7

    def test_bad_arguments_are_refused_when_decorating(self) -> None:
        """Nonsensical bounds fail at decoration, before the function is ever called."""
        operation = AsyncFlaky(0)
        with pytest.raises(ValueError, match="attempts must be at least 1, got 0"):
            retry_on_conflict(operation, attempts=0)
        assert operation.calls == 0

    def test_a_sync_callable_returning_a_coroutine_is_refused_and_it_is_closed(self) -> None:
        """retry_on_conflict(lambda: coroutine) cannot retry: a clear error, no un-awaited warning."""
        made: list[Coroutine[Any, Any, str]] = []

        def start() -> Coroutine[Any, Any, str]:
            made.append(AsyncFlaky(0)(1))
            return made[-1]

        with pytest.raises(TypeError, match="pass the async def function itself"):
            retry_on_conflict(start)
        assert inspect.getcoroutinestate(made[0]) == inspect.CORO_CLOSED

    def test_an_async_sleep_for_a_sync_operation_is_refused(self) -> None:
        """A sync retry cannot await its pause: a clear error instead of no pause at all."""
        operation = Flaky(1)
        with pytest.raises(TypeError, match="given sleep, which returned an awaitable"):
            retry_on_conflict(operation, sleep=Pauses())
        assert operation.calls == 1
