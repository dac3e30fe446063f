"""Type-checked, never run: what a downstream user's checker sees of tactical.projections."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import assert_type
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

import sqlalchemy as sa
from tactical import DomainEvent, JsonCodec
from tactical.projections import (
    AsyncProjection,
    AsyncProjectionRunner,
    Projection,
    ProjectionError,
    ProjectionRunner,
    projection_checkpoints_table,
    purge_outbox,
)


class PolicyIssued(DomainEvent):
    policy_id: UUID


class PolicyCancelled(DomainEvent):
    policy_id: UUID


def clear(connection: sa.Connection) -> None:
    connection.execute(sa.text("DELETE FROM policies_view"))


policies = Projection("policies", clear=clear)


@policies.on(PolicyIssued)
def issued(event: PolicyIssued, connection: sa.Connection) -> None:
    assert_type(event.policy_id, UUID)


assert_type(issued, Callable[[PolicyIssued, sa.Connection], None])


@policies.on(PolicyIssued)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def wrong_event(event: PolicyCancelled, connection: sa.Connection) -> None: ...


@policies.on(int)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
def not_an_event(event: int, connection: sa.Connection) -> None: ...


Projection("p", clear=lambda connection: None)
Projection(name=1)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

engine = sa.create_engine("sqlite://")
runner = ProjectionRunner(engine, [policies], codec=JsonCodec(), batch_size=50)
assert_type(runner.catch_up("policies"), int)
assert_type(runner.catch_up(policies, batches=1), int)
assert_type(runner.run_once(), int)
assert_type(runner.rebuild("policies"), None)
assert_type(runner.run(threading.Event(), idle_interval=0.1, max_backoff=5.0), None)
runner.run(asyncio.Event())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
runner.run(threading.Event(), poll_interval=0.1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
assert_type(runner.projections, tuple[Projection, ...])
ProjectionRunner(engine, [AsyncProjection("a")])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
ProjectionRunner(engine, [policies], database_timeout=None)

error = ProjectionError("policies", 3, "PolicyIssued", ValueError("bad"))
assert_type(error.position, int)
assert_type(error.projection, str)
assert_type(error.event_type, str)
assert_type(purge_outbox(engine), int)
assert_type(projection_checkpoints_table, sa.Table)


async def clear_async(connection: AsyncConnection) -> None:
    await connection.execute(sa.text("DELETE FROM policies_view"))


async_policies = AsyncProjection("policies", clear=clear_async)


@async_policies.on(PolicyIssued)
async def issued_async(event: PolicyIssued, connection: AsyncConnection) -> None:
    assert_type(event.policy_id, UUID)


@async_policies.on(PolicyIssued)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
def not_async(event: PolicyIssued, connection: AsyncConnection) -> None: ...


async def main() -> None:
    async_engine = create_async_engine("sqlite+aiosqlite://")
    async_runner = AsyncProjectionRunner(async_engine, [async_policies])
    assert_type(await async_runner.catch_up("policies"), int)
    assert_type(await async_runner.run_once(), int)
    await async_runner.rebuild(async_policies)
    assert_type(await async_runner.run(asyncio.Event(), idle_interval=0.1), None)
    await async_runner.run(threading.Event())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    forgot: None = async_runner.run(asyncio.Event())  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    print(forgot)
    AsyncProjectionRunner(engine, [async_policies])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
