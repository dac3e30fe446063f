"""The SQL unit of work at its edges: damaged rows, and commits that fail half-way."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from tests.sqlalchemy.test_mapper import CounterMapper, counters, mapped, tallies

import sqlalchemy as sa
from tactical import DeserializationError, DomainEvent, EventBus
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table, outbox_table
from tactical.testing._contract import Counter, Tag


class Sabotaged(Exception):
    """Raised by the sabotaged mapper after it wrote part of an aggregate."""


class HalfwayMapper(CounterMapper):
    """Writes the root row, then fails before the child rows while ``broken`` is set."""

    broken = True

    def insert(self, connection: sa.Connection, aggregate: Counter) -> None:
        super().insert(connection, aggregate)
        if self.broken:
            raise Sabotaged("after the root row")

    def update(self, connection: sa.Connection, aggregate: Counter) -> None:
        connection.execute(tallies.delete().where(tallies.c.counter_id == aggregate.id))
        if self.broken:
            raise Sabotaged("after deleting the children")
        super().update(connection, aggregate)

    def delete(self, connection: sa.Connection, aggregate: Counter) -> None:
        connection.execute(tallies.delete().where(tallies.c.counter_id == aggregate.id))
        if self.broken:
            raise Sabotaged("before deleting the root row")
        super().delete(connection, aggregate)


@pytest.fixture
def mapped_engine(engine: sa.Engine) -> sa.Engine:
    mapped.create_all(engine)
    with engine.begin() as connection:
        for table in reversed(mapped.sorted_tables):
            connection.execute(table.delete())
    return engine


def rows(engine: sa.Engine) -> dict[str, list[tuple[object, ...]]]:
    """Everything stored: mapped tables, documents and the outbox."""
    with engine.connect() as connection:
        return {
            table.name: [tuple(row) for row in connection.execute(sa.select(table)).all()]
            for table in (counters, tallies, aggregates_table, outbox_table)
        }


class TestMidCommitFailure:
    @pytest.mark.parametrize("kind", ["insert", "update", "delete"])
    def test_a_mapper_failing_half_way_leaves_nothing_and_publishes_nothing(
        self, mapped_engine: sa.Engine, kind: str
    ) -> None:
        """A mapper raising after part of its writes: no row, no outbox, versions as before."""
        mapper = HalfwayMapper()
        mapper.broken = False
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        uow = SqlAlchemyUnitOfWork(mapped_engine, bus, mappers=[mapper])
        mapped_counter = Counter(UUID(int=1), "mapped", tag=Tag("t"))
        mapped_counter.mark(1)
        if kind != "insert":
            with uow:
                uow.repository(Counter).add(mapped_counter)
                uow.commit()
        seen.clear()
        before = rows(mapped_engine)
        mapper.broken = True
        document = _DocumentCounter(uuid4(), "document")
        document.tick()
        with uow:
            repository = uow.repository(Counter)
            target = mapped_counter if kind == "insert" else repository.require(mapped_counter.id)
            target.tick()
            uow.repository(_DocumentCounter).add(document)
            if kind == "insert":
                repository.add(target)
            elif kind == "delete":
                repository.remove(target)
            version = target.version
            with pytest.raises(Sabotaged):
                uow.commit()
        assert rows(mapped_engine) == before
        assert seen == []
        assert (target.version, document.version) == (version, 0)
        mapper.broken = False
        with uow:
            repository = uow.repository(Counter)
            if kind == "insert":
                repository.add(target)
            else:
                retried = repository.require(mapped_counter.id)
                retried.tick()
                if kind == "delete":
                    repository.remove(retried)
            uow.repository(_DocumentCounter).add(document)
            uow.commit()
        assert len(seen) == 2
        after = rows(mapped_engine)
        assert len(after[outbox_table.name]) == len(before[outbox_table.name]) + 2
        assert len(after[aggregates_table.name]) == 1


class _DocumentCounter(Counter):
    """A Counter subclass stored as a JSON document (no mapper), beside the mapped one."""


class TestDamagedRows:
    def test_state_that_is_not_json_names_the_row(self, sqlite_engine: sa.Engine) -> None:
        """Text that is not JSON in the state column is a DeserializationError, not a bare one."""
        counter = Counter(uuid4(), "damaged")
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with sqlite_engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE tactical_aggregates SET state = :state"), {"state": "{not json"}
            )
        with (
            SqlAlchemyUnitOfWork(sqlite_engine) as uow,
            pytest.raises(
                DeserializationError,
                match=rf"Counter state is not valid JSON \(row tactical_aggregates\("
                rf"aggregate_type=.*Counter', aggregate_id='{counter.id}'\)\)",
            ),
        ):
            uow.repository(Counter).get(counter.id)

    def test_a_version_that_is_not_an_integer_names_the_row(self, sqlite_engine: sa.Engine) -> None:
        """SQLite keeps text in an INTEGER column; reading it names the row and the field."""
        counter = Counter(uuid4(), "damaged")
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with sqlite_engine.begin() as connection:
            connection.execute(sa.text("UPDATE tactical_aggregates SET version = 'one'"))
        with (
            SqlAlchemyUnitOfWork(sqlite_engine) as uow,
            pytest.raises(
                DeserializationError,
                match=rf"aggregate_id='{counter.id}'\).*version: expected an integer, got 'one'",
            ),
        ):
            uow.repository(Counter).get(counter.id)


class TestConnections:
    def test_rollback_inside_a_block_closes_the_connection_it_replaces(
        self, engine: sa.Engine
    ) -> None:
        """rollback() starts over on a fresh connection and gives the old one back at once."""
        with SqlAlchemyUnitOfWork(engine) as uow:
            first = uow.connection
            uow.rollback()
            uow.rollback()
            assert first.closed
            assert not uow.connection.closed
            uow.repository(Counter).add(Counter(uuid4(), "after rollbacks"))
            uow.commit()
        with engine.connect() as connection:
            assert (
                connection.execute(
                    sa.select(sa.func.count()).select_from(aggregates_table)
                ).scalar_one()
                == 1
            )
