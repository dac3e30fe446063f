"""The SQL unit of work passes the unit-of-work contract on SQLite (file) and PostgreSQL."""

from __future__ import annotations

import pytest

import sqlalchemy as sa
from tactical import EventBus
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import UnitOfWorkContract, UnitOfWorkFactory


class TestSqlAlchemyUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self, engine: sa.Engine) -> UnitOfWorkFactory:
        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> SqlAlchemyUnitOfWork:
            return SqlAlchemyUnitOfWork(
                engine, bus, allow_multiple_aggregates=allow_multiple_aggregates
            )

        return factory
