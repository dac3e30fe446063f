"""The contract's sample Counter stored in tables of its own, through a RelationalMapper."""

from __future__ import annotations

from types import MappingProxyType
from uuid import UUID

import sqlalchemy as sa
from tactical.sqlalchemy import RelationalMapper
from tactical.testing import Counter, Tag, Tally

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
    columns = MappingProxyType(
        {"name": counters.c.name, "count": counters.c.count, "tag.text": counters.c.tag_text}
    )

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
