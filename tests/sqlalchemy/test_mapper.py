"""A relational mapper (tables of the user's own design) honours the unit-of-work contract."""

from __future__ import annotations

from uuid import UUID

import pytest

import sqlalchemy as sa
from tactical import EventBus
from tactical.sqlalchemy import RelationalMapper, SqlAlchemyUnitOfWork, outbox_table
from tactical.testing import Counter, Tag, Tally, UnitOfWorkContract, UnitOfWorkFactory

mapped = sa.MetaData()
counters = sa.Table(
    "contract_counters",
    mapped,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("tag_text", sa.String(100), nullable=True),
)
tallies = sa.Table(
    "contract_tallies",
    mapped,
    sa.Column(
        "counter_id",
        sa.Uuid,
        sa.ForeignKey("contract_counters.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("tally_id", sa.Integer, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("marks", sa.Integer, nullable=False),
)


class CounterMapper(RelationalMapper[Counter, UUID]):
    """Counter <-> contract_counters + contract_tallies, the PolicyModel way."""

    aggregate_type = Counter
    table = counters

    def load(self, connection: sa.Connection, aggregate_id: UUID) -> Counter | None:
        row = connection.execute(
            sa.select(counters).where(counters.c.id == aggregate_id)
        ).one_or_none()
        if row is None:
            return None
        children = connection.execute(
            sa.select(tallies)
            .where(tallies.c.counter_id == aggregate_id)
            .order_by(tallies.c.position)
        ).all()
        return Counter(
            row.id,
            row.name,
            row.count,
            None if row.tag_text is None else Tag(row.tag_text),
            [Tally(c.tally_id, c.marks) for c in children],
            version=row.version,
        )

    def insert(self, connection: sa.Connection, aggregate: Counter) -> None:
        connection.execute(
            counters.insert().values(
                id=aggregate.id,
                version=aggregate.version,
                name=aggregate.name,
                count=aggregate.count,
                tag_text=None if aggregate.tag is None else aggregate.tag.text,
            )
        )
        self._insert_tallies(connection, aggregate)

    def update(self, connection: sa.Connection, aggregate: Counter) -> None:
        connection.execute(
            counters.update()
            .where(counters.c.id == aggregate.id)
            .values(
                name=aggregate.name,
                count=aggregate.count,
                tag_text=None if aggregate.tag is None else aggregate.tag.text,
            )
        )
        connection.execute(tallies.delete().where(tallies.c.counter_id == aggregate.id))
        self._insert_tallies(connection, aggregate)

    def delete(self, connection: sa.Connection, aggregate: Counter) -> None:
        connection.execute(tallies.delete().where(tallies.c.counter_id == aggregate.id))
        connection.execute(counters.delete().where(counters.c.id == aggregate.id))

    @staticmethod
    def _insert_tallies(connection: sa.Connection, aggregate: Counter) -> None:
        if aggregate.tallies:
            connection.execute(
                tallies.insert(),
                [
                    {"counter_id": aggregate.id, "tally_id": t.id, "position": i, "marks": t.marks}
                    for i, t in enumerate(aggregate.tallies)
                ],
            )


@pytest.fixture
def mapped_engine(engine: sa.Engine) -> sa.Engine:
    mapped.create_all(engine)
    with engine.begin() as connection:
        for table in reversed(mapped.sorted_tables):
            connection.execute(table.delete())
    return engine


class TestRelationalMapper(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self, mapped_engine: sa.Engine) -> UnitOfWorkFactory:
        def factory(bus: EventBus | None = None) -> SqlAlchemyUnitOfWork:
            return SqlAlchemyUnitOfWork(mapped_engine, bus, mappers=[CounterMapper()])

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
