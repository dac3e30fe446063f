"""Type-checked, never run: what a downstream user's checker sees of durable timers."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import assert_type
from uuid import UUID, uuid4

from sqlalchemy.ext.asyncio import create_async_engine

import sqlalchemy as sa
from tactical import (
    AsyncInMemoryUnitOfWork,
    AsyncSchedulingUnitOfWork,
    Clock,
    DomainEvent,
    InMemoryStore,
    InMemoryUnitOfWork,
    ScheduledMessage,
    SchedulingUnitOfWork,
    SystemClock,
)
from tactical.outbox import (
    TIMER_AGGREGATE_TYPE,
    AsyncTimerWorker,
    ParkedTimer,
    TimerWorker,
)
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork, scheduled_table
from tactical.testing import MovableClock


class PolicyCoverageEnded(DomainEvent):
    policy_id: UUID


NOW = datetime(2030, 1, 1, tzinfo=UTC)
engine = sa.create_engine("sqlite://")


def expire_later(uow: SchedulingUnitOfWork, policy_id: UUID) -> str:
    with uow:
        key = uow.schedule(PolicyCoverageEnded(policy_id), at=NOW, key=f"expiry:{policy_id}")
        uow.cancel("other")
        uow.commit()
    return key


async def expire_later_async(uow: AsyncSchedulingUnitOfWork, policy_id: UUID) -> None:
    async with uow:
        assert_type(uow.schedule(PolicyCoverageEnded(policy_id), at=NOW), str)
        assert_type(uow.cancel("k"), None)
        await uow.commit()


# Every tactical unit of work schedules.
assert_type(expire_later(InMemoryUnitOfWork(), uuid4()), str)
expire_later(SqlAlchemyUnitOfWork(engine), uuid4())
asyncio.run(expire_later_async(AsyncInMemoryUnitOfWork(), uuid4()))
async_engine = create_async_engine("sqlite+aiosqlite://")
asyncio.run(expire_later_async(AsyncSqlAlchemyUnitOfWork(async_engine), uuid4()))

# The in-memory worker and what it hands out.
store = InMemoryStore()
assert_type(store.scheduled(), tuple[ScheduledMessage, ...])
due = store.take_due(NOW)
assert_type(due, list[ScheduledMessage])
assert_type(due[0].message, DomainEvent)
assert_type(due[0].due_at, datetime)
assert_type(due[0].key, str)

# Clocks.
clocks: list[Clock] = [SystemClock(), MovableClock(NOW)]
moved = MovableClock()
assert_type(moved.advance(timedelta(days=1)), datetime)
assert_type(moved.now(), datetime)

# The workers.
worker = TimerWorker(engine, clock=moved, batch_size=10)
assert_type(worker.fire_due(), int)
assert_type(worker.parked(), list[ParkedTimer])
assert_type(worker.retry_parked(key="k"), int)
assert_type(worker.clock, Clock)
worker.run(threading.Event(), poll_interval=0.5)
worker.run(threading.Event(), idle_interval=0.5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
async_worker = AsyncTimerWorker(async_engine, clock=moved)


async def fire() -> None:
    assert_type(await async_worker.fire_due(), int)
    assert_type(await async_worker.parked(), list[ParkedTimer])
    assert_type(await async_worker.run(asyncio.Event()), None)
    await async_worker.run(threading.Event())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


assert_type(TIMER_AGGREGATE_TYPE, str)
assert_type(scheduled_table, sa.Table)

# Misuse.
with InMemoryUnitOfWork() as uow:
    uow.schedule(PolicyCoverageEnded(uuid4()), NOW)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    uow.schedule("expire", at=NOW)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.schedule(PolicyCoverageEnded(uuid4()), at="tomorrow")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.cancel(42)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
moved.advance(3600)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
TimerWorker(async_engine)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
AsyncTimerWorker(engine)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
TimerWorker(engine, clock=datetime.now)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
