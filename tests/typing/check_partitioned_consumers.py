"""Type-checked, never run: partitioned publishers and consumers (0.2) as a user writes them."""

from __future__ import annotations

import asyncio
import threading
from typing import assert_type

import redis
import redis.asyncio as redis_async
from sqlalchemy.ext.asyncio import create_async_engine

import sqlalchemy as sa
from tactical.outbox import (
    DEFAULT_BROKER_PARTITIONS,
    AsyncInboxConsumer,
    InboxConsumer,
    PartitionMismatchError,
)
from tactical.outbox.rabbitmq import (
    DEFAULT_BALANCE_INTERVAL,
    AsyncRabbitMQConsumer,
    AsyncRabbitMQPublisher,
    RabbitMQConsumer,
    RabbitMQPublisher,
)
from tactical.outbox.redis_streams import (
    DEFAULT_LEASE,
    AsyncRedisStreamConsumer,
    AsyncRedisStreamPublisher,
    RedisStreamConsumer,
    RedisStreamPublisher,
)
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork

assert_type(DEFAULT_BROKER_PARTITIONS, int)
assert_type(DEFAULT_LEASE, float)
assert_type(DEFAULT_BALANCE_INTERVAL, float)
mismatch: ValueError = PartitionMismatchError("4 partitions, not 8")

engine = sa.create_engine("sqlite://")
inbox = InboxConsumer(lambda: SqlAlchemyUnitOfWork(engine), "billing")

rabbit_publisher = RabbitMQPublisher(partitions=DEFAULT_BROKER_PARTITIONS)
assert_type(rabbit_publisher.partitions, int | None)
assert_type(AsyncRabbitMQPublisher(partitions=8).partitions, int | None)
RabbitMQPublisher(partitions="8")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

rabbit_consumer = RabbitMQConsumer(inbox, queue="billing", partitions=8, balance_interval=2.0)
assert_type(rabbit_consumer.partitions, int | None)
assert_type(rabbit_consumer.queues, tuple[str, ...])
assert_type(rabbit_consumer.held_partitions, frozenset[int])
RabbitMQConsumer(inbox, queue="billing", partitions=8, balance_interval="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
assert_type(rabbit_consumer.run(threading.Event()), None)
RabbitMQConsumer(inbox, queue="billing", partitions=8.0)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

client = redis.Redis(socket_timeout=5)
stream_publisher = RedisStreamPublisher(client, "billing:events", partitions=8)
assert_type(stream_publisher.partitions, int | None)
stream_consumer = RedisStreamConsumer(
    inbox, client, stream="billing:events", consumer="worker-1", partitions=8, lease=5.0
)
assert_type(stream_consumer.partitions, int | None)
assert_type(stream_consumer.held_partitions, frozenset[int])
RedisStreamConsumer(inbox, client, partitions=8, lease="5")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


async def consume_partitions() -> None:
    async_engine = create_async_engine("sqlite+aiosqlite://")
    async_inbox = AsyncInboxConsumer(lambda: AsyncSqlAlchemyUnitOfWork(async_engine), "billing")
    consumer = AsyncRabbitMQConsumer(async_inbox, queue="billing", partitions=8)
    assert_type(consumer.queues, tuple[str, ...])
    assert_type(consumer.held_partitions, frozenset[int])
    assert_type(await consumer.run(asyncio.Event()), None)
    async_client = redis_async.Redis(socket_timeout=5)
    assert_type(AsyncRedisStreamPublisher(async_client, partitions=8).partitions, int | None)
    reader = AsyncRedisStreamConsumer(async_inbox, async_client, partitions=8, lease=5.0)
    assert_type(reader.held_partitions, frozenset[int])
    assert_type(await reader.run(asyncio.Event()), None)
