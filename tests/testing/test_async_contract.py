"""The unit-of-work contract suite runs against async units of work: the same tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from tactical import AsyncInMemoryUnitOfWork, EventBus, InMemoryStore
from tactical.testing import AsyncUnitOfWorkContract, AsyncUnitOfWorkFactory, UnitOfWorkFactory


class LoopNoting(AsyncInMemoryUnitOfWork):
    """Notes the event loop each transaction begins on."""

    loops: list[asyncio.AbstractEventLoop]

    async def _begin(self) -> None:
        self.loops.append(asyncio.get_running_loop())
        await super()._begin()


class TestAsyncInMemoryUnitOfWork(AsyncUnitOfWorkContract):
    @pytest.fixture
    def loops(self) -> list[asyncio.AbstractEventLoop]:
        return []

    @pytest.fixture
    def unit_of_work_factory(
        self,
        loops: list[asyncio.AbstractEventLoop],
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
    ) -> Iterator[AsyncUnitOfWorkFactory]:
        store = InMemoryStore()

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AsyncInMemoryUnitOfWork:
            uow = LoopNoting(bus, store=store, allow_multiple_aggregates=allow_multiple_aggregates)
            uow.loops = loops
            return uow

        yield factory
        # Clean-up on the suite's loop works after the test (an engine's dispose(), say).
        assert run_on_loop(asyncio.sleep(0, "disposed")) == "disposed"

    def test_set_up_and_units_of_work_share_one_loop(
        self,
        new: UnitOfWorkFactory,
        loops: list[asyncio.AbstractEventLoop],
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
    ) -> None:
        """run_on_loop runs on the event loop the suite's units of work run on."""

        async def current_loop() -> asyncio.AbstractEventLoop:
            return asyncio.get_running_loop()

        self.saved_counter(new)
        assert loops == [run_on_loop(current_loop())]
