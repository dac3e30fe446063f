"""Flows: one generator of decisions, driven the same by the sync and the async runner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tactical._flow import Flow, run, run_async


class Refused(Exception):
    """An operation's failure."""


def _transfer(log: list[str]) -> Flow[str, str]:
    """Reads, writes, and on a refused write rolls back (an operation of its own)."""
    balance = yield "read"
    try:
        yield f"write {balance - 10}"
    except Refused:
        yield "rollback"
        log.append("rolled back")
        raise
    finally:
        log.append("done")
    return f"moved 10 of {balance}"


def _nested() -> Flow[str, int]:
    first = yield from _one("a")
    second = yield from _one("b")
    return first + second


def _one(name: str) -> Flow[str, int]:
    value: int = yield name
    return value


def _empty() -> Flow[str, str]:
    return "nothing to do"
    yield  # makes this a generator


def _sync(answers: dict[str, Any], seen: list[str]) -> Callable[[str], object]:
    def perform(op: str) -> object:
        seen.append(op)
        answer = answers.get(op.split()[0])
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return perform


def _async(answers: dict[str, Any], seen: list[str]) -> Callable[[str], Awaitable[object]]:
    perform_now = _sync(answers, seen)

    async def perform(op: str) -> object:
        await asyncio.sleep(0)
        return perform_now(op)

    return perform


def _drive(mode: str, flow: Flow[str, Any], answers: dict[str, Any], seen: list[str]) -> Any:
    if mode == "sync":
        return run(flow, _sync(answers, seen))
    return asyncio.run(run_async(flow, _async(answers, seen)))


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Each test runs under both drivers."""
    return str(request.param)


class TestFlow:
    def test_operations_are_performed_in_order_and_answered(self, mode: str) -> None:
        """Each yielded operation is performed once, in order, and its result sent back."""
        seen: list[str] = []
        log: list[str] = []
        result = _drive(mode, _transfer(log), {"read": 100}, seen)
        assert result == "moved 10 of 100"
        assert seen == ["read", "write 90"]
        assert log == ["done"]

    def test_a_failed_operation_is_thrown_into_the_flow(self, mode: str) -> None:
        """The flow's own except clause sees the failure, yields its clean-up, and re-raises."""
        seen: list[str] = []
        log: list[str] = []
        with pytest.raises(Refused):
            _drive(mode, _transfer(log), {"read": 5, "write": Refused("no")}, seen)
        assert seen == ["read", "write -5", "rollback"]
        assert log == ["rolled back", "done"]

    def test_nested_flows_yield_through(self, mode: str) -> None:
        """A flow calls another with yield from; its operations reach the driver."""
        seen: list[str] = []
        assert _drive(mode, _nested(), {"a": 2, "b": 3}, seen) == 5
        assert seen == ["a", "b"]

    def test_a_flow_without_operations_returns_at_once(self, mode: str) -> None:
        """No operation, no call to perform."""
        seen: list[str] = []
        assert _drive(mode, _empty(), {}, seen) == "nothing to do"
        assert seen == []


class TestCancellation:
    def test_cancelling_the_awaited_operation_runs_the_flows_clean_up(self) -> None:
        """CancelledError is thrown in at the yield: the flow's clean-up operations still run."""
        seen: list[str] = []
        log: list[str] = []
        started = asyncio.Event()

        async def perform(op: str) -> object:
            seen.append(op)
            if op == "read":
                return 7
            if op.startswith("write"):
                started.set()
                await asyncio.sleep(60)
            return None

        async def main() -> None:
            task = asyncio.create_task(run_async(_cancellable(log), perform))
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert seen == ["read", "write -3", "rollback"]
        assert log == ["rolled back after cancel"]


def _cancellable(log: list[str]) -> Flow[str, None]:
    balance = yield "read"
    try:
        yield f"write {balance - 10}"
    except BaseException:
        yield "rollback"
        log.append("rolled back after cancel")
        raise
