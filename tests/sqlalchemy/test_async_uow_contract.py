"""The async SQL unit of work passes the unit-of-work contract on aiosqlite, psycopg async, asyncpg."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.sqlalchemy.async_engines import ASYNC_DRIVERS, async_url, make_async_engine

from tactical import EventBus
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork
from tactical.testing import AsyncUnitOfWorkContract, AsyncUnitOfWorkFactory


class TestAsyncSqlAlchemyUnitOfWork(AsyncUnitOfWorkContract):
    @pytest.fixture(params=ASYNC_DRIVERS)
    def unit_of_work_factory(
        self,
        request: pytest.FixtureRequest,
        tmp_path: Path,
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
    ) -> Iterator[AsyncUnitOfWorkFactory]:
        driver: str = request.param
        engine = make_async_engine(driver, async_url(request, driver, tmp_path))

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AsyncSqlAlchemyUnitOfWork:
            return AsyncSqlAlchemyUnitOfWork(
                engine, bus, allow_multiple_aggregates=allow_multiple_aggregates
            )

        yield factory
        run_on_loop(engine.dispose())
