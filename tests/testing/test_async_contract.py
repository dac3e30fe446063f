"""The unit-of-work contract suite runs against async units of work: the same tests."""

from __future__ import annotations

import pytest

from tactical import AsyncInMemoryUnitOfWork, EventBus, InMemoryStore
from tactical.testing import AsyncUnitOfWorkContract, AsyncUnitOfWorkFactory


class TestAsyncInMemoryUnitOfWork(AsyncUnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self) -> AsyncUnitOfWorkFactory:
        store = InMemoryStore()

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AsyncInMemoryUnitOfWork:
            return AsyncInMemoryUnitOfWork(
                bus, store=store, allow_multiple_aggregates=allow_multiple_aggregates
            )

        return factory
