"""Imperative ("classical") mapping of the domain classes themselves, as Architecture Patterns does.

The aggregate and its child entities are mapped with ``registry.map_imperatively``; value
objects become composites (a frozen, slotted class cannot be a mapped class: see
``TestValueObjectsAreNotMappedClasses``). The OrmMapper's translations are then the
identity, and the unit of work's guarantees hold: the contract suite runs over it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy.orm import registry, relationship
from sqlalchemy.orm.exc import DetachedInstanceError
from tests.sqlalchemy.async_engines import ASYNC_DRIVERS, async_url, make_async_engine

import sqlalchemy as sa
from tactical import EventBus, ValueObject
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, OrmMapper, SqlAlchemyUnitOfWork
from tactical.testing import (
    AsyncUnitOfWorkContract,
    AsyncUnitOfWorkFactory,
    Counter,
    Tag,
    Tally,
    UnitOfWorkContract,
    UnitOfWorkFactory,
)


class TagText(sa.TypeDecorator[Tag]):
    """An optional one-column value object as a column type: a NULL column is no Tag.

    A composite would build ``Tag(None)`` from a NULL column, which Tag refuses.
    """

    impl = sa.String(100)
    cache_ok = True

    def process_bind_param(self, value: Tag | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else value.text

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Tag | None:
        return None if value is None else Tag(value)


mapping = registry()
counters = sa.Table(
    "classical_counters",
    mapping.metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("tag", TagText, nullable=True),
)
tallies = sa.Table(
    "classical_tallies",
    mapping.metadata,
    sa.Column(
        "counter_id",
        sa.Uuid,
        sa.ForeignKey("classical_counters.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("marks", sa.Integer, nullable=False),
)


@pytest.fixture
def mapped_classes() -> Iterator[None]:
    """Counter and Tally mapped imperatively for the test, unmapped after it."""
    mapping.map_imperatively(Tally, tallies)
    mapping.map_imperatively(
        Counter,
        counters,
        properties={
            "tallies": relationship(
                Tally, cascade="all, delete-orphan", lazy="selectin", order_by=tallies.c.id
            ),
        },
        version_id_col=counters.c.version,
    )
    yield
    mapping.dispose()


class CounterIdentityMapper(OrmMapper[Counter, UUID, Counter]):
    """The domain class is the model: both translations return what they are given."""

    aggregate_type = Counter
    model = Counter
    # The Tag column's type takes a Tag: the finders compare its text as a string.
    columns = MappingProxyType(
        {
            "name": counters.c.name,
            "count": counters.c.count,
            "tag.text": sa.type_coerce(counters.c.tag, sa.String(100)),
        }
    )

    def to_model(self, aggregate: Counter) -> Counter:
        return aggregate

    def to_domain(self, model: Counter) -> Counter:
        return model


def emptied(engine: sa.Engine) -> sa.Engine:
    mapping.metadata.create_all(engine)
    with engine.begin() as connection:
        for table in reversed(mapping.metadata.sorted_tables):
            connection.execute(table.delete())
    return engine


@pytest.fixture
def imperative_engine(engine: sa.Engine, mapped_classes: None) -> sa.Engine:
    return emptied(engine)


class TestImperativeMappingContract(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self, imperative_engine: sa.Engine) -> UnitOfWorkFactory:
        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> SqlAlchemyUnitOfWork:
            return SqlAlchemyUnitOfWork(
                imperative_engine,
                bus,
                mappers=[CounterIdentityMapper()],
                allow_multiple_aggregates=allow_multiple_aggregates,
            )

        return factory


class TestAsyncImperativeMappingContract(AsyncUnitOfWorkContract):
    @pytest.fixture(params=ASYNC_DRIVERS)
    def unit_of_work_factory(
        self,
        request: pytest.FixtureRequest,
        tmp_path: Path,
        run_on_loop: Callable[[Coroutine[Any, Any, Any]], Any],
        mapped_classes: None,
    ) -> Iterator[AsyncUnitOfWorkFactory]:
        driver: str = request.param
        url = async_url(request, driver, tmp_path)
        emptied(
            request.getfixturevalue("sqlite_engine" if driver == "aiosqlite" else "postgres_engine")
        )
        engine = make_async_engine(driver, url)

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AsyncSqlAlchemyUnitOfWork:
            return AsyncSqlAlchemyUnitOfWork(
                engine,
                bus,
                mappers=[CounterIdentityMapper()],
                allow_multiple_aggregates=allow_multiple_aggregates,
            )

        yield factory
        run_on_loop(engine.dispose())


class Sku(ValueObject):
    """A value object one might map to a table of its own, as the book maps OrderLine."""

    code: str


class TestLimits:
    def test_a_value_object_cannot_be_a_mapped_class(self) -> None:
        """Frozen and slotted, a value object has no room for SQLAlchemy's instance state."""
        own = registry()
        table = sa.Table(
            "classical_skus",
            own.metadata,
            sa.Column("pk", sa.Integer, primary_key=True),
            sa.Column("code", sa.String(20)),
        )
        own.map_imperatively(Sku, table)
        try:
            with pytest.raises(TypeError, match="cannot create weak reference to 'Sku' object"):
                Sku("A-1")
        finally:
            own.dispose()  # (Sku's slots stay replaced: this class is broken for good)

    def test_a_lazy_collection_is_unloaded_once_the_session_has_closed(
        self, engine: sa.Engine
    ) -> None:
        """The session closes before the aggregate is returned: collections must load eagerly."""
        own = registry()
        own.map_imperatively(Tally, tallies)
        own.map_imperatively(
            Counter,
            counters,
            properties={"tallies": relationship(Tally, cascade="all, delete-orphan")},
            version_id_col=counters.c.version,
        )
        try:
            mapping.metadata.create_all(engine)
            counter = Counter(uuid4(), "lazy")
            counter.mark(1)
            with SqlAlchemyUnitOfWork(engine, mappers=[CounterIdentityMapper()]) as uow:
                uow.repository(Counter).add(counter)
                uow.commit()
            with (
                SqlAlchemyUnitOfWork(engine, mappers=[CounterIdentityMapper()]) as uow,
                pytest.raises(DetachedInstanceError, match="lazy load operation of attribute"),
            ):
                uow.repository(Counter).get(counter.id)
        finally:
            own.dispose()
