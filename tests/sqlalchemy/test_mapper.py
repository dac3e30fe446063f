"""A relational mapper (tables of the user's own design) honours the unit-of-work contract."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from tests.sqlalchemy.counter_mapping import CounterMapper, counters, tallies

import sqlalchemy as sa
from tactical import EventBus, Field, Query
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table
from tactical.testing import Counter, Tag, Tally, UnitOfWorkContract, UnitOfWorkFactory


class TestRelationalMapper(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self, mapped_engine: sa.Engine) -> UnitOfWorkFactory:
        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> SqlAlchemyUnitOfWork:
            return SqlAlchemyUnitOfWork(
                mapped_engine,
                bus,
                mappers=[CounterMapper()],
                allow_multiple_aggregates=allow_multiple_aggregates,
            )

        return factory

    def test_rows_land_in_the_mapped_tables(self, mapped_engine: sa.Engine) -> None:
        """A mapped aggregate is stored in its own tables, with its events in the outbox."""
        counter = Counter(UUID(int=7), "mapped", tag=Tag("t"))
        counter.mark(1)
        counter.tick()
        with SqlAlchemyUnitOfWork(mapped_engine, mappers=[CounterMapper()]) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with mapped_engine.connect() as connection:
            root = connection.execute(sa.select(counters)).one()
            children = connection.execute(sa.select(tallies)).all()
            events = connection.execute(
                sa.select(outbox_table.c.aggregate_id).where(
                    outbox_table.c.aggregate_id == str(counter.id)
                )
            ).all()
        assert (root.name, root.count, root.tag_text, root.version) == ("mapped", 1, "t", 1)
        assert [(c.tally_id, c.marks) for c in children] == [(1, 1)]
        assert len(events) == 1

    def test_an_insert_refused_for_a_child_row_raises_the_integrity_error(
        self, mapped_engine: sa.Engine
    ) -> None:
        """Two tallies under one key: no other writer is involved, so no ConcurrencyError."""
        counter = Counter(uuid4(), "twice", tallies=[Tally(1, 1), Tally(1, 2)])
        with SqlAlchemyUnitOfWork(mapped_engine, mappers=[CounterMapper()]) as uow:
            uow.repository(Counter).add(counter)
            with pytest.raises(sa.exc.IntegrityError):
                uow.commit()
        assert counter.version == 0
        with mapped_engine.connect() as connection:
            assert (
                connection.execute(sa.select(sa.func.count()).select_from(counters)).scalar() == 0
            )


class TestMapperFinders:
    def test_a_query_on_a_field_without_a_column_names_it(self, mapped_engine: sa.Engine) -> None:
        """A path the mapper's columns do not list is a ValueError saying where to add it."""
        with (
            SqlAlchemyUnitOfWork(mapped_engine, mappers=[CounterMapper()]) as uow,
            pytest.raises(
                ValueError,
                match=r"CounterMapper maps no column for 'version'.*CounterMapper.columns",
            ),
        ):
            uow.repository(Counter).find(Query(Counter, Field("version") == 1))
