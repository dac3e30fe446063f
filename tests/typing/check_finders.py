"""Type-checked, never run: finders (Query, Field, find) and repositories typed by id."""

from __future__ import annotations

from typing import Any, NewType, TypeVar, assert_type
from uuid import UUID, uuid4

from tactical import (
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    AsyncRepository,
    Field,
    InMemoryUnitOfWork,
    Predicate,
    Query,
    Repository,
    UnitOfWork,
)
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork

PolicyId = NewType("PolicyId", UUID)


class Policy(AggregateRoot[UUID]):
    holder_id: UUID
    status: str


class Batch(AggregateRoot[str]):
    sku: str


class Claim(AggregateRoot[PolicyId]):
    amount: int


class SpecialPolicy(Policy):
    pass


A = TypeVar("A", bound=AggregateRoot[Any])


def active_by_holder(holder_id: UUID) -> Query[Policy]:
    return Query(Policy, Field("holder_id") == holder_id, Field("status") == "active")


condition: Predicate = (Field("status") == "active") & ~(Field("holder_id") == uuid4())
assert_type(Field("status").one_of(["a", "b"]) | condition, Predicate)
assert_type(Query(Batch, order_by=("sku",)), Query[Batch])
Query(Policy, "status")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Query(Policy, order_by=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

uow = InMemoryUnitOfWork()
with uow:
    policies = uow.repository(Policy)
    assert_type(policies, Repository[Policy, UUID])
    assert_type(policies.find(active_by_holder(uuid4())), list[Policy])
    assert_type(policies.find_one(active_by_holder(uuid4())), Policy | None)
    policies.find(Query(Batch))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    # The id type comes from AggregateRoot[IdT]: a wrong id is a type error.
    policies.get(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    policies.require("not a uuid")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    assert_type(uow.repository(Batch), Repository[Batch, str])
    uow.repository(Batch).get(uuid4())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    assert_type(uow.repository(SpecialPolicy), Repository[SpecialPolicy, UUID])
    assert_type(uow.repository(Claim), Repository[Claim, PolicyId])
    uow.repository(Claim).get(uuid4())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.repository(Claim).get(PolicyId(uuid4()))
    # Still assignable where code declared Any (or the exact id type) before.
    loose: Repository[Policy, Any] = uow.repository(Policy)
    exact: Repository[Policy, UUID] = uow.repository(Policy)


def generic(uow: InMemoryUnitOfWork, aggregate_type: type[A], aggregate_id: object) -> A | None:
    """A type variable's class: the id type is unknown, so any id is accepted."""
    return uow.repository(aggregate_type).get(aggregate_id)


def through_the_protocol(uow: UnitOfWork) -> None:
    """Code typed against the UnitOfWork protocol keeps Any ids (see the typing how-to)."""
    assert_type(uow.repository(Policy), Repository[Policy, Any])
    assert_type(uow.repository(Policy).find(active_by_holder(uuid4())), list[Policy])


def on_sql(uow: SqlAlchemyUnitOfWork) -> None:
    with uow:
        assert_type(uow.repository(Policy), Repository[Policy, UUID])
        uow.repository(Policy).get(1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def asynchronous(uow: AsyncInMemoryUnitOfWork, sql: AsyncSqlAlchemyUnitOfWork) -> None:
    async with uow:
        policies = uow.repository(Policy)
        assert_type(policies, AsyncRepository[Policy, UUID])
        assert_type(await policies.find(active_by_holder(uuid4())), list[Policy])
        assert_type(await policies.find_one(active_by_holder(uuid4())), Policy | None)
        await policies.get(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        await policies.find(Query(Batch))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    async with sql:
        assert_type(sql.repository(Batch), AsyncRepository[Batch, str])
        await sql.repository(Batch).require(7)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
