"""The contract's sample Counter stored through ORM models, with an OrmMapper."""

from __future__ import annotations

from types import MappingProxyType
from uuid import UUID

from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

import sqlalchemy as sa
from tactical.sqlalchemy import OrmMapper
from tactical.testing import Counter, Tag, Tally


class Base(DeclarativeBase):
    pass


class CounterModel(Base):
    __tablename__ = "orm_counters"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column()
    name: Mapped[str] = mapped_column(sa.String(100))
    count: Mapped[int]
    tag_text: Mapped[str | None] = mapped_column(sa.String(100))
    tallies: Mapped[list[TallyModel]] = relationship(
        cascade="all, delete-orphan", order_by="TallyModel.position"
    )

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class TallyModel(Base):
    __tablename__ = "orm_tallies"

    counter_id: Mapped[UUID] = mapped_column(
        sa.ForeignKey("orm_counters.id", ondelete="CASCADE"), primary_key=True
    )
    tally_id: Mapped[int] = mapped_column(primary_key=True)
    position: Mapped[int]
    marks: Mapped[int]


class CounterOrmMapper(OrmMapper[Counter, UUID, CounterModel]):
    """Counter <-> CounterModel + TallyModel, the design document's PolicyModel way."""

    aggregate_type = Counter
    model = CounterModel
    columns = MappingProxyType(
        {"name": CounterModel.name, "count": CounterModel.count, "tag.text": CounterModel.tag_text}
    )

    def to_model(self, aggregate: Counter) -> CounterModel:
        return CounterModel(
            id=aggregate.id,
            name=aggregate.name,
            count=aggregate.count,
            tag_text=None if aggregate.tag is None else aggregate.tag.text,
            tallies=[
                TallyModel(counter_id=aggregate.id, tally_id=t.id, position=i, marks=t.marks)
                for i, t in enumerate(aggregate.tallies)
            ],
        )

    def to_domain(self, model: CounterModel) -> Counter:
        return Counter(
            model.id,
            model.name,
            model.count,
            None if model.tag_text is None else Tag(model.tag_text),
            [Tally(t.tally_id, t.marks) for t in model.tallies],
        )


orm_tables = Base.metadata
