"""OpenTelemetry against the real brokers: what the spans say of them, who owns which partition.

The publish span (the relay's, sync and async) and the process span (the inbox consumer's,
fed by the sync or async RabbitMQ or Redis consumer) carry the messaging conventions'
``messaging.system``, ``messaging.destination.name`` and the broker's own attributes; a
partitioned consumer reports the partitions it owns as ``tactical.consumer.partition.owned``.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import uuid4

import pytest
import redis
from tests.outbox.brokers import AMQP_URL, Rabbit, rabbit_publisher
from tests.outbox.helpers import RecordingPublisher, commit_ticks, mirroring, side_consumer
from tests.outbox.sides import AsyncSide, Side
from tests.outbox.test_partitioned_consumers import (
    PARTITIONS,
    Partitioned,
    partition_of_counter,
    partitioned,
)
from tests.telemetry import Telemetry, otel

import sqlalchemy as sa
from tactical import EventBus, JsonCodec
from tactical._flow import Flow
from tactical.outbox import EventBusPublisher, MessagingDestination, OutboxMessage, OutboxRelay
from tactical.outbox.redis_streams import AsyncRedisStreamPublisher, RedisStreamPublisher
from tactical.testing import CounterTicked

__all__ = ["otel", "partitioned"]

TICKED = JsonCodec().type_name(CounterTicked)
OWNED = "tactical.consumer.partition.owned"


def attributes_of(otel: Telemetry, name: str) -> list[dict[str, Any]]:
    return [dict(span.attributes or {}) for span in otel.spans(name)]


def assert_processed_in_the_commits_trace(otel: Telemetry) -> None:
    """Each process span's remote parent is the producer's commit: the headers travelled."""
    commit = otel.spans("commit")[0]  # the producer's; the consumer's commits come after
    assert commit.context is not None
    processed = otel.spans(f"process {TICKED}")
    assert processed
    for process in processed:
        assert process.parent is not None
        assert process.parent.is_remote
        assert process.parent.span_id == commit.context.span_id


def redis_publisher(side: Side, stream: str, **options: Any) -> Any:
    """The side's Redis publisher (its client closed with the side)."""
    if isinstance(side, AsyncSide):
        import redis.asyncio as redis_async

        async_client = redis_async.Redis(host="127.0.0.1", socket_timeout=5)
        side.on_close(async_client.aclose)
        return AsyncRedisStreamPublisher(async_client, stream, **options)
    client = redis.Redis(host="127.0.0.1", socket_timeout=5)
    side.on_close(client.close)
    return RedisStreamPublisher(client, stream, **options)


class TestPublishSpans:
    def test_a_publisher_without_a_destination_leaves_the_broker_out(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """A user's publisher with only publish(): the span has no messaging.system."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        assert OutboxRelay(sqlite_engine, RecordingPublisher()).relay_once() == 1
        (publish,) = attributes_of(otel, "publish")
        assert not {"messaging.system", "messaging.destination.name"} & set(publish)

    def test_the_span_keeps_what_every_message_of_the_batch_shares(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """Two destinations in one batch: the system is kept, the destination name is not."""
        commit_ticks(sqlite_engine, counters=2, ticks=1)

        class Described(RecordingPublisher):
            def messaging_destination(self, message: OutboxMessage, /) -> MessagingDestination:
                return MessagingDestination("kafka", f"topic-{message.position}")

        assert OutboxRelay(sqlite_engine, Described()).relay_once() == 2
        (publish,) = attributes_of(otel, "publish")
        assert publish["messaging.system"] == "kafka"
        assert "messaging.destination.name" not in publish

    def test_a_failing_destination_method_is_logged_and_publishing_goes_on(
        self, otel: Telemetry, sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A bug in a publisher's messaging_destination costs the span its attributes only."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)

        class Broken(RecordingPublisher):
            def messaging_destination(self, message: OutboxMessage, /) -> MessagingDestination:
                raise LookupError(f"no destination for {message.event_type}")

        publisher = Broken()
        with caplog.at_level(logging.WARNING, logger="tactical.outbox"):
            assert OutboxRelay(sqlite_engine, publisher).relay_once() == 1
        assert len(publisher.published) == 1
        assert "messaging_destination failed" in caplog.text
        (publish,) = attributes_of(otel, "publish")
        assert "messaging.system" not in publish

    def test_the_event_bus_publisher_names_a_system_of_its_own(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """In process there is no broker: tactical_event_bus, and no destination."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        codec = JsonCodec()
        codec.register(CounterTicked)
        assert OutboxRelay(sqlite_engine, EventBusPublisher(EventBus(), codec)).relay_once() == 1
        (publish,) = attributes_of(otel, "publish")
        assert publish["messaging.system"] == "tactical_event_bus"
        assert "messaging.destination.name" not in publish


@pytest.mark.rabbitmq
class TestRabbitMQ:
    def test_spans_name_rabbitmq_the_exchange_routing_key_and_queue(
        self,
        otel: Telemetry,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        rabbit: Rabbit,
    ) -> None:
        """Sync and async: publish names exchange:key; process names exchange:key:queue.

        And the process spans continue the commit's trace: the publisher sent its context.
        """
        commit_ticks(sqlite_engine, counters=1, ticks=2)
        publisher = rabbit_publisher(side, rabbit.exchange)
        assert side.relay(sqlite_engine, publisher).relay_once() == 2
        (publish,) = attributes_of(otel, "publish")
        expected = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": f"{rabbit.exchange}:{TICKED}",
            "messaging.rabbitmq.destination.routing_key": TICKED,
            "messaging.operation.type": "send",
            "server.address": "127.0.0.1",
            "server.port": 5672,
        }
        assert {k: publish.get(k) for k in expected} == expected
        consumer = side.rabbit_consumer(
            side_consumer(side, consumer_engine),
            AMQP_URL,
            queue=rabbit.queue,
            exchange=rabbit.exchange,
        )
        try:
            assert consumer.consume_available(idle_timeout=0.5) == 2
        finally:
            consumer.close()
        assert_processed_in_the_commits_trace(otel)
        processed = attributes_of(otel, f"process {TICKED}")
        assert len(processed) == 2
        for process in processed:
            assert process["messaging.system"] == "rabbitmq"
            assert process["messaging.destination.name"] == (
                f"{rabbit.exchange}:{TICKED}:{rabbit.queue}"
            )
            assert process["messaging.rabbitmq.destination.routing_key"] == TICKED
            assert process["messaging.consumer.group.name"] == "mirror"
            assert (process["server.address"], process["server.port"]) == ("127.0.0.1", 5672)
            assert "messaging.destination.partition.id" not in process
        tags = [process["messaging.rabbitmq.message.delivery_tag"] for process in processed]
        assert all(isinstance(tag, int) for tag in tags)
        assert len(set(tags)) == 2


@pytest.mark.redis
class TestRedis:
    def test_spans_name_redis_the_stream_and_the_consumer_group(
        self,
        otel: Telemetry,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        redis_client: redis.Redis,
        stream_name: str,
    ) -> None:
        """Sync and async: both spans name the stream; process names the group read with.

        And the process spans continue the commit's trace: the publisher sent its context.
        """
        commit_ticks(sqlite_engine, counters=1, ticks=2)
        assert side.relay(sqlite_engine, redis_publisher(side, stream_name)).relay_once() == 2
        (publish,) = attributes_of(otel, "publish")
        assert publish["messaging.system"] == "redis"
        assert publish["messaging.destination.name"] == stream_name
        assert (publish["server.address"], publish["server.port"]) == ("127.0.0.1", 6379)
        assert "messaging.rabbitmq.destination.routing_key" not in publish
        group = f"group-{uuid4().hex[:8]}"
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), redis_client, stream=stream_name, group=group
        )
        assert consumer.consume_available() == 2
        assert_processed_in_the_commits_trace(otel)
        processed = attributes_of(otel, f"process {TICKED}")
        assert len(processed) == 2
        for process in processed:
            assert process["messaging.system"] == "redis"
            assert process["messaging.destination.name"] == stream_name
            assert process["messaging.consumer.group.name"] == group
            assert process["tactical.consumer"] == "mirror"
            assert "messaging.destination.partition.id" not in process


def owned_points(otel: Telemetry, consumer: str) -> dict[int, int]:
    """The ownership gauge of inbox consumer ``consumer`` now: partition -> 0 or 1."""
    points = otel.metrics().get(OWNED, [])
    return {
        dict(p.attributes)["tactical.partition"]: p.value
        for p in points
        if dict(p.attributes)["tactical.consumer"] == consumer
    }


class TestPartitions:
    def test_spans_name_the_partition_and_the_consumer_reports_what_it_owns(
        self,
        otel: Telemetry,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        partitioned: Partitioned,
    ) -> None:
        """Sync and async, RabbitMQ and Redis: the partition's queue or stream, and its gauge.

        While handling, the consumer owns every partition it holds the lock (RabbitMQ) or
        the lease (Redis) of: all four for a lone consumer; once it stopped consuming, it
        owns none.
        """
        partitioned.declare()
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        partition = partition_of_counter(counter_id)
        publisher = partitioned.publisher(side)
        assert side.relay(sqlite_engine, publisher).relay_once() == 1
        (publish,) = attributes_of(otel, "publish")
        assert publish["messaging.destination.partition.id"] == str(partition)
        if partitioned.broker == "rabbitmq":
            key = f"{partition}.{TICKED}"
            assert publish["messaging.rabbitmq.destination.routing_key"] == key
            assert publish["messaging.destination.name"] == f"{partitioned.name}:{key}"
            read_from = f"{partitioned.name}:{key}:{partitioned.name}.{partition}"
        else:
            assert publish["messaging.destination.name"] == f"{partitioned.name}:{partition}"
            read_from = f"{partitioned.name}:{partition}"

        seen: list[dict[int, int]] = []

        def noting(event: CounterTicked, uow: Any) -> Flow[Any, None]:
            seen.append(owned_points(otel, "mirror"))
            yield from mirroring(event, uow)

        inbox = side.inbox(consumer_engine)
        inbox.subscribe(CounterTicked, side.handler(noting))
        consumer = partitioned.consumer(side, inbox)
        try:
            options = {"idle_timeout": 0.5} if partitioned.broker == "rabbitmq" else {}
            assert consumer.consume_available(**options) == 1
        finally:
            if partitioned.broker == "rabbitmq":
                consumer.close()
        (process,) = attributes_of(otel, f"process {TICKED}")
        assert process["messaging.destination.name"] == read_from
        assert process["messaging.destination.partition.id"] == str(partition)
        (while_handling,) = seen
        assert set(while_handling) == set(range(PARTITIONS))
        owned = {p for p, value in while_handling.items() if value == 1}
        assert owned == set(range(PARTITIONS))
        assert set(owned_points(otel, "mirror").values()) == {0}
