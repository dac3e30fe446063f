"""A relational mapper honours the contract under the async SQL unit of work too (finders included)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.sqlalchemy.async_engines import ASYNC_DRIVERS, async_url, make_async_engine
from tests.sqlalchemy.counter_mapping import CounterMapper, mapped

import sqlalchemy as sa
from tactical import EventBus
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork
from tactical.testing import AsyncUnitOfWorkContract, AsyncUnitOfWorkFactory


class TestAsyncRelationalMapper(AsyncUnitOfWorkContract):
    @pytest.fixture(params=ASYNC_DRIVERS)
    def unit_of_work_factory(
        self,
        request: pytest.FixtureRequest,
        tmp_path: Path,
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
    ) -> Iterator[AsyncUnitOfWorkFactory]:
        driver: str = request.param
        url = async_url(request, driver, tmp_path)
        sync = sa.create_engine(
            url.set(drivername="sqlite" if driver == "aiosqlite" else "postgresql+psycopg")
        )
        mapped.create_all(sync)
        with sync.begin() as connection:
            for table in reversed(mapped.sorted_tables):
                connection.execute(table.delete())
        sync.dispose()
        engine = make_async_engine(driver, url)

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AsyncSqlAlchemyUnitOfWork:
            return AsyncSqlAlchemyUnitOfWork(
                engine,
                bus,
                mappers=[CounterMapper()],
                allow_multiple_aggregates=allow_multiple_aggregates,
            )

        yield factory
        run_on_loop(engine.dispose())
