"""Type-checked, never run: what a downstream user's checker sees of tactical.sqlalchemy."""

from __future__ import annotations

from datetime import datetime
from typing import assert_type
from uuid import UUID, uuid4

import sqlalchemy as sa
from tactical import AggregateRoot, DomainEvent, EventBus, JsonCodec, Repository, UnitOfWork
from tactical.sqlalchemy import (
    SQLITE_BUSY_TIMEOUT_MS,
    RelationalMapper,
    SqlAlchemyUnitOfWork,
    UtcDateTime,
    aggregates_table,
    configure_engine,
    create_schema,
    dead_letters_table,
    inbox_table,
    metadata,
    outbox_table,
    projection_checkpoints_table,
    relay_leases_table,
    relays_table,
)


class PolicyIssued(DomainEvent):
    policy_id: UUID


class Policy(AggregateRoot[UUID]):
    holder: str


class Note(AggregateRoot[int]):
    text: str


policies = sa.Table(
    "policies",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=True),
)


class PolicyMapper(RelationalMapper[Policy, UUID]):
    aggregate_type = Policy
    table = policies

    def load(self, connection: sa.Connection, aggregate_id: UUID) -> Policy | None:
        row = connection.execute(
            sa.select(policies.c.version, policies.c.holder).where(policies.c.id == aggregate_id)
        ).one_or_none()
        if row is None:
            return None
        return Policy(aggregate_id, row.holder, version=row.version)

    def insert(self, connection: sa.Connection, aggregate: Policy) -> None:
        connection.execute(
            policies.insert().values(
                id=aggregate.id, version=aggregate.version, holder=aggregate.holder
            )
        )

    def update(self, connection: sa.Connection, aggregate: Policy) -> None:
        connection.execute(
            policies.update().where(policies.c.id == aggregate.id).values(holder=aggregate.holder)
        )

    def delete(self, connection: sa.Connection, aggregate: Policy) -> None:
        connection.execute(policies.delete().where(policies.c.id == aggregate.id))


class PolicyUnitOfWork(SqlAlchemyUnitOfWork):
    @property
    def policies(self) -> Repository[Policy, UUID]:
        return self.repository(Policy)


engine = sa.create_engine("sqlite:///policies.db")
assert_type(configure_engine(engine), sa.Engine)
assert_type(create_schema(engine), None)
assert_type(metadata, sa.MetaData)
assert_type(aggregates_table, sa.Table)
assert_type(outbox_table, sa.Table)
assert_type(relays_table, sa.Table)
assert_type(relay_leases_table, sa.Table)
assert_type(inbox_table, sa.Table)
assert_type(projection_checkpoints_table, sa.Table)
assert_type(dead_letters_table, sa.Table)
busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
assert_type(UtcDateTime().process_bind_param(None, engine.dialect), datetime | None)
assert_type(PolicyMapper().table, sa.Table)
assert_type(PolicyMapper().aggregate_type, type[Policy])
assert_type(PolicyMapper().id_column, str)
assert_type(PolicyMapper().version_column, str)

codec = JsonCodec()
bus = EventBus()
uow = PolicyUnitOfWork(engine, bus, codec=codec, mappers=[PolicyMapper()])
assert_type(uow.engine, sa.Engine)
assert_type(uow.codec, JsonCodec)
assert_type(uow.bus, EventBus)
as_protocol: UnitOfWork = uow
default_uow = SqlAlchemyUnitOfWork(engine)
several_uow = SqlAlchemyUnitOfWork(engine, allow_multiple_aggregates=True)
bounded_uow = SqlAlchemyUnitOfWork(engine, database_timeout=5.0)
unbounded_uow = SqlAlchemyUnitOfWork(engine, database_timeout=None)
assert_type(several_uow.allow_multiple_aggregates, bool)
with uow as entered:
    assert_type(entered, PolicyUnitOfWork)
    assert_type(uow.connection, sa.Connection)
    assert_type(uow.policies.get(uuid4()), Policy | None)
    assert_type(uow.policies.require(uuid4()), Policy)
    assert_type(uow.repository(Note), Repository[Note, int])
    uow.policies.add(Policy(uuid4(), "ada"))
    uow.commit()

# -- misuse both checkers must reject -----------------------------------------------------------


class Incomplete(RelationalMapper[Policy, UUID]):
    aggregate_type = Policy
    table = policies

    def load(self, connection: sa.Connection, aggregate_id: UUID) -> Policy | None:
        return None


class WrongLoad(RelationalMapper[Policy, UUID]):
    aggregate_type = Policy
    table = policies

    def load(self, connection: sa.Connection, aggregate_id: UUID) -> str:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        return ""

    def insert(self, connection: sa.Connection, aggregate: Policy) -> None: ...

    def update(self, connection: sa.Connection, aggregate: Policy) -> None: ...

    def delete(self, connection: sa.Connection, aggregate: Policy) -> None: ...


class WrongType(RelationalMapper[Policy, UUID]):
    aggregate_type = Note  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    table = policies

    def load(self, connection: sa.Connection, aggregate_id: UUID) -> Policy | None: ...

    def insert(self, connection: sa.Connection, aggregate: Policy) -> None: ...

    def update(self, connection: sa.Connection, aggregate: Policy) -> None: ...

    def delete(self, connection: sa.Connection, aggregate: Policy) -> None: ...


Incomplete()  # type: ignore[abstract]  # pyright: ignore[reportAbstractUsage]
RelationalMapper[PolicyIssued, UUID]  # type: ignore[type-var]  # pyright: ignore[reportInvalidTypeArguments]
SqlAlchemyUnitOfWork("sqlite:///policies.db")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
SqlAlchemyUnitOfWork(engine, codec=bus)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
SqlAlchemyUnitOfWork(engine, mappers=[policies])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
SqlAlchemyUnitOfWork(engine, bus, codec)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
create_schema("sqlite://")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
uow.engine = engine  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
with uow:
    uow.policies.add(Note(1, "not a policy"))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.policies.get(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.repository(PolicyIssued)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportCallIssue]
