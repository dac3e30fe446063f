"""Type-checked, never run: what a downstream user's checker sees of OrmMapper."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, assert_type
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy as sa
from tactical import AggregateRoot, DomainEvent
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, OrmMapper, SqlAlchemyUnitOfWork


class Policy(AggregateRoot[UUID]):
    holder: str


class Note(AggregateRoot[int]):
    text: str


class PolicyIssued(DomainEvent):
    policy_id: UUID


class Base(DeclarativeBase):
    pass


class PolicyModel(Base):
    __tablename__ = "policies"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    version: Mapped[int] = mapped_column()
    holder: Mapped[str]

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class PolicyMapper(OrmMapper[Policy, UUID, PolicyModel]):
    aggregate_type = Policy
    model = PolicyModel
    columns = MappingProxyType({"holder": PolicyModel.holder})

    def primary_key(self, aggregate_id: UUID) -> object:
        return str(aggregate_id)

    def to_model(self, aggregate: Policy) -> PolicyModel:
        return PolicyModel(id=str(aggregate.id), holder=aggregate.holder)

    def to_domain(self, model: PolicyModel) -> Policy:
        return Policy(UUID(model.id), model.holder)


mapper = PolicyMapper()
assert_type(mapper.aggregate_type, type[Policy])
assert_type(mapper.model, type[PolicyModel])
engine = sa.create_engine("sqlite:///policies.db")
with engine.connect() as connection:
    assert_type(mapper.load(connection, uuid4()), Policy | None)
    assert_type(
        mapper.load_all(connection, sa.select(PolicyModel).where(PolicyModel.holder == "ada")),
        list[Policy],
    )
assert_type(mapper.column_for("holder"), sa.ColumnElement[Any])
uow = SqlAlchemyUnitOfWork(engine, mappers=[mapper])
async_uow = AsyncSqlAlchemyUnitOfWork(
    create_async_engine("sqlite+aiosqlite:///policies.db"), mappers=[mapper]
)

# -- misuse both checkers must reject -----------------------------------------------------------


class Incomplete(OrmMapper[Policy, UUID, PolicyModel]):
    aggregate_type = Policy
    model = PolicyModel

    def to_model(self, aggregate: Policy) -> PolicyModel:
        return PolicyModel(id=str(aggregate.id), holder=aggregate.holder)


class WrongDomain(OrmMapper[Policy, UUID, PolicyModel]):
    aggregate_type = Policy
    model = PolicyModel

    def to_model(self, aggregate: Policy) -> PolicyModel:
        return PolicyModel(id=str(aggregate.id), holder=aggregate.holder)

    def to_domain(self, model: PolicyModel) -> Note:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        return Note(1, model.holder)


class WrongColumns(OrmMapper[Policy, UUID, PolicyModel]):
    aggregate_type = Policy
    model = PolicyModel
    columns = MappingProxyType({"holder": "holder"})  # type: ignore[dict-item]  # pyright: ignore[reportAssignmentType]

    def to_model(self, aggregate: Policy) -> PolicyModel:
        return PolicyModel(id=str(aggregate.id), holder=aggregate.holder)

    def to_domain(self, model: PolicyModel) -> Policy:
        return Policy(UUID(model.id), model.holder)


class WrongModel(OrmMapper[Policy, UUID, PolicyModel]):
    aggregate_type = Policy
    model = Base  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]

    def to_model(self, aggregate: Policy) -> PolicyModel:
        return PolicyModel(id=str(aggregate.id), holder=aggregate.holder)

    def to_domain(self, model: PolicyModel) -> Policy:
        return Policy(UUID(model.id), model.holder)


Incomplete()  # type: ignore[abstract]  # pyright: ignore[reportAbstractUsage]
OrmMapper[PolicyIssued, UUID, PolicyModel]  # type: ignore[type-var]  # pyright: ignore[reportInvalidTypeArguments]
with engine.connect() as connection:
    mapper.load(connection, 1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
