"""Type-checked, never run: what a downstream user's checker sees of tactical.outbox."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import assert_type
from uuid import UUID

import redis
import redis.asyncio as redis_async
from sqlalchemy.ext.asyncio import create_async_engine

import sqlalchemy as sa
from tactical import AggregateRoot, DomainEvent, EventBus, JsonCodec
from tactical.outbox import (
    DEFAULT_DATABASE_TIMEOUT,
    DEFAULT_INBOX_RETENTION,
    DEFAULT_LEASE_TTL,
    DEFAULT_PARTITIONS,
    HEADER_NAMES,
    RELAY_LOCK_KEY,
    AsyncInboxConsumer,
    AsyncOutboxRelay,
    AsyncPublisher,
    EventBusPublisher,
    InboxConsumer,
    MessagingDestination,
    OutboxMessage,
    OutboxRelay,
    Outcome,
    ParkedRow,
    Publisher,
    PublishError,
    Trace,
    UndeliverableError,
    current_trace,
    dead_letters_table,
    inbox_table,
    partition_key,
    partition_of,
    purge_inbox,
)
from tactical.outbox.rabbitmq import (
    DEFAULT_HEARTBEAT,
    AsyncRabbitMQConsumer,
    AsyncRabbitMQPublisher,
    RabbitMQConsumer,
    RabbitMQPublisher,
)
from tactical.outbox.redis_streams import (
    AsyncRedisStreamConsumer,
    AsyncRedisStreamPublisher,
    RedisStreamConsumer,
    RedisStreamPublisher,
)
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork


class PolicyIssued(DomainEvent):
    policy_id: UUID


class Account(AggregateRoot[UUID]):
    holder: str


class BillingUnitOfWork(SqlAlchemyUnitOfWork):
    pass


class ListPublisher:
    def __init__(self) -> None:
        self.sent: list[OutboxMessage] = []

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        self.sent.extend(messages)


engine = sa.create_engine("sqlite://")
codec = JsonCodec()

publisher: Publisher = ListPublisher()  # any class with a matching publish() is a Publisher
relay = OutboxRelay(engine, publisher, batch_size=50)
assert_type(relay.relay_once(), int)
assert_type(relay.run(threading.Event(), idle_interval=1.0, max_backoff=10.0), None)
# run() is written once for several workers: each keeps its own stop event and keywords.
relay.run(asyncio.Event())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
relay.run(threading.Event(), poll_interval=1.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
relay.run(threading.Event(), 1.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
assert_type(RELAY_LOCK_KEY, int)
assert_type(DEFAULT_DATABASE_TIMEOUT, float)
OutboxRelay(engine, publisher, database_timeout=None)
OutboxRelay(engine, publisher, database_timeout=2.5)
OutboxRelay(engine, publisher, database_timeout="2")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
OutboxRelay(engine, EventBusPublisher(EventBus(), codec))
# Partitioned relays (0.2): several share the outbox's partitions on PostgreSQL.
partitioned = OutboxRelay(
    engine, publisher, partitions=DEFAULT_PARTITIONS, lease_ttl=DEFAULT_LEASE_TTL, name="r-1"
)
assert_type(partitioned.partitions, int | None)
assert_type(partitioned.name, str | None)
assert_type(partitioned.owned_partitions, frozenset[int])
assert_type(DEFAULT_PARTITIONS, int)
assert_type(DEFAULT_LEASE_TTL, float)
assert_type(partition_key("billing.Account", "a-1"), int)
assert_type(partition_of("billing.Account", "a-1", DEFAULT_PARTITIONS), int)
partition_of("billing.Account", "a-1", "16")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
OutboxRelay(engine, publisher, partitions="16")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
partitioned.owned_partitions = frozenset()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
OutboxRelay(engine, RabbitMQPublisher("amqp://guest:guest@localhost/%2F", exchange="billing"))
OutboxRelay(engine, RedisStreamPublisher(redis.Redis(), "billing:events"))
OutboxRelay(engine, object())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# A publisher may say where each message goes, for the relay's OpenTelemetry spans (0.2).
class KafkaPublisher(ListPublisher):
    def messaging_destination(self, message: OutboxMessage, /) -> MessagingDestination:
        return MessagingDestination("kafka", message.event_type, partition=0)


described: Publisher = KafkaPublisher()  # still a Publisher: the method is optional
destination = MessagingDestination("rabbitmq", "billing:x", routing_key="x", server_port=5672)
assert_type(destination.system, str)
assert_type(destination.name, str | None)
assert_type(destination.routing_key, str | None)
assert_type(destination.partition, int | None)
assert_type(destination.server_address, str | None)
assert_type(destination.server_port, int | None)
destination.name = "other"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
MessagingDestination("kafka", partition="0")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

message = OutboxMessage.from_wire(b"{}", {"type": "x"})
assert_type(message.body, bytes)
assert_type(message.headers, dict[str, str])
assert_type(message.position, int)
assert_type(message.event_id, UUID)
assert_type(message.correlation_id, UUID | None)
assert_type(message.traceparent, str | None)
assert_type(message.tracestate, str | None)
assert_type(HEADER_NAMES, tuple[str, ...])
message.position = 2  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
assert_type(PublishError("x"), PublishError)
rabbit_publisher = RabbitMQPublisher("amqp://guest:guest@localhost/%2F", exchange="billing")
assert_type(rabbit_publisher.messaging_destination(message), MessagingDestination)
assert_type(
    RedisStreamPublisher(redis.Redis(), "b").messaging_destination(message), MessagingDestination
)
assert_type(
    EventBusPublisher(EventBus(), codec).messaging_destination(message), MessagingDestination
)

undeliverable = UndeliverableError({7: "routing key over 255 bytes"})
assert_type(undeliverable.reasons, dict[int, str])
refused: PublishError = undeliverable  # what the relay parks is still a PublishError
UndeliverableError([7])  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
assert_type(relay.parked(), list[ParkedRow])
assert_type(relay.parked(aggregate=("billing.Account", "a-1")), list[ParkedRow])
assert_type(relay.retry_parked(), int)
assert_type(relay.retry_parked(position=7), int)
assert_type(relay.retry_parked(aggregate=("billing.Account", "a-1")), int)
relay.retry_parked(7)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
(parked_row,) = relay.parked()
assert_type(parked_row.position, int)
assert_type(parked_row.event_id, UUID)
assert_type(parked_row.parked_at, datetime)
assert_type(parked_row.error, str)
parked_row.error = ""  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]


def open_account(event: PolicyIssued, uow: BillingUnitOfWork) -> None:
    uow.repository(Account).add(Account(event.policy_id, "holder"))


def wrong_handler(event: PolicyIssued, uow: int) -> None: ...


consumer = InboxConsumer(lambda: BillingUnitOfWork(engine), "billing", codec=codec)
assert_type(consumer, InboxConsumer[BillingUnitOfWork])
consumer.subscribe(PolicyIssued, open_account)
consumer.subscribe(PolicyIssued, wrong_handler)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
assert_type(consumer.handle(message), Outcome)
assert_type(consumer.parked(), list[tuple[OutboxMessage, str]])
assert_type(consumer.retry_parked(), dict[Outcome, int])
assert_type(consumer.purge_inbox(timedelta(days=1)), int)
assert_type(purge_inbox(engine, DEFAULT_INBOX_RETENTION, consumer="billing"), int)
assert_type(inbox_table, sa.Table)
assert_type(dead_letters_table, sa.Table)

rabbit = RabbitMQConsumer(consumer, queue="billing", routing_keys=["policy.#"])
assert_type(rabbit.consume_available(idle_timeout=0.5), int)
assert_type(rabbit.run(threading.Event()), None)
rabbit.run(asyncio.Event())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
rabbit.run(threading.Event(), idle_interval=1.0)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
assert_type(DEFAULT_HEARTBEAT, int)
RabbitMQConsumer(consumer, queue="billing", timeout=2.0, heartbeat=5)
RabbitMQConsumer(consumer, queue="billing", heartbeat=None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
stream = RedisStreamConsumer(consumer, redis.Redis(), stream="billing:events")
assert_type(stream.consume_available(), int)

assert_type(current_trace(), Trace | None)
trace = Trace(UUID(int=1), None)
assert_type(trace.correlation_id, UUID)
assert_type(trace.causation_id, UUID | None)

# Transient refusals have their own bounds (0.2).
patient = InboxConsumer(
    lambda: BillingUnitOfWork(engine),
    "billing",
    conflict_attempts=20,
    conflict_delay=0.01,
    conflict_max_delay=0.5,
)
InboxConsumer(lambda: BillingUnitOfWork(engine), "billing", conflict_attempts="20")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

# Async (0.2): the relay over an AsyncEngine, to an AsyncPublisher.


class AsyncListPublisher:
    def __init__(self) -> None:
        self.sent: list[OutboxMessage] = []

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        self.sent.extend(messages)


async_engine = create_async_engine("sqlite+aiosqlite://")
async_publisher: AsyncPublisher = AsyncListPublisher()  # any class with async publish()
not_async: AsyncPublisher = ListPublisher()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
not_sync: Publisher = AsyncListPublisher()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]


async def relay_asynchronously() -> None:
    async_relay = AsyncOutboxRelay(async_engine, async_publisher, batch_size=50)
    assert_type(await async_relay.relay_once(), int)
    assert_type(await async_relay.parked(), list[ParkedRow])
    assert_type(await async_relay.parked(aggregate=("billing.Account", "a-1")), list[ParkedRow])
    assert_type(await async_relay.retry_parked(position=7), int)
    assert_type(await async_relay.run(asyncio.Event(), idle_interval=1.0, max_backoff=10.0), None)
    assert_type(async_relay.batch_size, int)
    async_partitioned = AsyncOutboxRelay(async_engine, async_publisher, partitions=8, name="a")
    assert_type(async_partitioned.owned_partitions, frozenset[int])
    forgot_await: int = async_relay.relay_once()  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    await async_relay.run(threading.Event())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    AsyncOutboxRelay(async_engine, async_publisher, database_timeout=None)
    AsyncOutboxRelay(engine, async_publisher)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    AsyncOutboxRelay(async_engine, publisher)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    OutboxRelay(engine, async_publisher)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    rabbit_publisher = AsyncRabbitMQPublisher(exchange="billing", timeout=2.0)
    AsyncOutboxRelay(async_engine, rabbit_publisher)
    async with AsyncRabbitMQPublisher(exchange="billing") as opened:
        assert_type(opened, AsyncRabbitMQPublisher)
        assert_type(await opened.publish([message]), None)
    assert_type(await rabbit_publisher.close(), None)
    assert_type(rabbit_publisher.exchange, str)

    stream_publisher = AsyncRedisStreamPublisher(redis_async.Redis(), "billing:events")
    AsyncOutboxRelay(async_engine, stream_publisher)
    assert_type(stream_publisher.stream, str)
    AsyncRedisStreamPublisher(redis.Redis(), "billing:events")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    RedisStreamPublisher(redis_async.Redis(), "billing:events")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    print(forgot_await, not_async, not_sync)


# Async consumers (0.2): the inbox over an AsyncSqlAlchemyUnitOfWork, fed by aio-pika or redis.asyncio.
class AsyncBillingUnitOfWork(AsyncSqlAlchemyUnitOfWork):
    pass


async def open_account_async(event: PolicyIssued, uow: AsyncBillingUnitOfWork) -> None:
    account = await uow.repository(Account).get(event.policy_id)
    assert_type(account, Account | None)


async def consume_asynchronously() -> None:
    inbox = AsyncInboxConsumer(lambda: AsyncBillingUnitOfWork(async_engine), "billing")
    assert_type(inbox, AsyncInboxConsumer[AsyncBillingUnitOfWork])
    inbox.subscribe(PolicyIssued, open_account_async)
    inbox.subscribe(PolicyIssued, lambda event, uow: None)  # a plain handler is called as it is
    inbox.subscribe(PolicyIssued, open_account)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    assert_type(await inbox.handle(message), Outcome)
    assert_type(await inbox.parked(), list[tuple[OutboxMessage, str]])
    assert_type(await inbox.retry_parked(), dict[Outcome, int])
    assert_type(await inbox.purge_inbox(timedelta(days=1)), int)
    assert_type(inbox.name, str)
    forgot: Outcome = inbox.handle(message)  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    AsyncInboxConsumer(lambda: BillingUnitOfWork(engine), "billing")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
    InboxConsumer(lambda: AsyncBillingUnitOfWork(async_engine), "billing")  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]

    rabbit_consumer = AsyncRabbitMQConsumer(inbox, queue="billing", prefetch=20, heartbeat=5)
    assert_type(await rabbit_consumer.consume_available(idle_timeout=0.5), int)
    assert_type(await rabbit_consumer.run(asyncio.Event(), poll_interval=0.2), None)
    assert_type(await rabbit_consumer.close(), None)
    assert_type(rabbit_consumer.queue, str)
    await rabbit_consumer.run(threading.Event())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    AsyncRabbitMQConsumer(consumer, queue="billing")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    RabbitMQConsumer(inbox, queue="billing")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    stream_consumer = AsyncRedisStreamConsumer(inbox, redis_async.Redis(), stream="billing:events")
    assert_type(await stream_consumer.consume_available(), int)
    assert_type(await stream_consumer.run(asyncio.Event()), None)
    assert_type(stream_consumer.group, str)
    AsyncRedisStreamConsumer(inbox, redis.Redis())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    RedisStreamConsumer(consumer, redis_async.Redis())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    print(forgot)


def partitions() -> None:
    """The stable partition of an aggregate: an int, from a type name, an id and a count."""
    assert_type(partition_key("shipping.Shipment", "S-1"), int)
    assert_type(partition_of("shipping.Shipment", "S-1", 8), int)
    partition_of("shipping.Shipment", "S-1", "8")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
