"""Type-checked, never run: what a downstream user's checker sees of AsyncSqlAlchemyUnitOfWork."""

from __future__ import annotations

from typing import assert_type
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

import sqlalchemy as sa
from tactical import AggregateRoot, AsyncRepository, AsyncUnitOfWork, EventBus, JsonCodec
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork, configure_engine


class Policy(AggregateRoot[UUID]):
    holder: str


async def rename_holder(uow: AsyncUnitOfWork, policy_id: UUID, holder: str) -> None:
    async with uow:
        policy = await uow.repository(Policy).require(policy_id)
        policy.holder = holder
        await uow.commit()


async def use(bus: EventBus) -> None:
    engine = create_async_engine("postgresql+asyncpg://app@db/app")
    assert_type(configure_engine(engine), AsyncEngine)
    assert_type(configure_engine(sa.create_engine("sqlite://")), sa.Engine)
    uow = AsyncSqlAlchemyUnitOfWork(
        engine, bus, codec=JsonCodec(), allow_multiple_aggregates=True, database_timeout=None
    )
    assert_type(uow.engine, AsyncEngine)
    async with uow as entered:
        assert_type(entered, AsyncSqlAlchemyUnitOfWork)
        assert_type(uow.connection, AsyncConnection)
        assert_type(uow.repository(Policy), AsyncRepository[Policy, UUID])
        assert_type(await uow.repository(Policy).get(uuid4()), Policy | None)
        assert_type(await uow.repository(Policy).require(uuid4()), Policy)
        uow.repository(Policy).add(Policy(uuid4(), "ada"))
        uow.commit()  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]
        await uow.commit()
    await rename_holder(uow, uuid4(), "ada")
    with uow:  # type: ignore[attr-defined]  # pyright: ignore[reportGeneralTypeIssues]
        pass
    AsyncSqlAlchemyUnitOfWork(sa.create_engine("sqlite://"))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    AsyncSqlAlchemyUnitOfWork("sqlite+aiosqlite://")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    SqlAlchemyUnitOfWork(engine)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    await rename_holder(SqlAlchemyUnitOfWork(sa.create_engine("sqlite://")), uuid4(), "bob")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
