"""Adversarial cases of RabbitMQ's partition locks: subscriptions the broker ends, handovers.

A partitioned consumer consumes a partition's queue only while it holds its lock (an
exclusive queue on its connection); these tests make the broker end a subscription or a
connection behind the consumer's back and check that every partition is consumed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import pika
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from tests.outbox.brokers import AMQP_URL, TcpProxy
from tests.outbox.helpers import mirroring, mirrors
from tests.outbox.sides import Side, SyncSide
from tests.outbox.test_partitioned_consumers import (
    PARTITIONS,
    Handling,
    Partitioned,
    made_partitioned,
    ticks_in_rounds,
    wait_for,
)

import sqlalchemy as sa
from tactical.outbox import AsyncInboxConsumer
from tactical.outbox.rabbitmq import AsyncRabbitMQConsumer
from tactical.testing import CounterTicked

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def on_rabbitmq() -> Iterator[Partitioned]:
    """A unique exchange and queue prefix on RabbitMQ; deleted afterwards."""
    with made_partitioned("rabbitmq") as made:
        yield made


def consumer_count(queue: str) -> int:
    """How many consumers ``queue`` has (0 if it does not exist)."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        try:
            declared = channel.queue_declare(queue=queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            return 0
        return int(declared.method.consumer_count)
    finally:
        if connection.is_open:
            connection.close()


def delete(name: str, partition: int, *, declare_again: bool) -> None:
    """Delete a partition's queue (its consumer is cancelled); maybe declare and bind it again."""
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    try:
        channel = connection.channel()
        queue = f"{name}.{partition}"
        channel.queue_delete(queue=queue)
        if declare_again:
            channel.queue_declare(
                queue=queue, durable=True, arguments={"x-single-active-consumer": True}
            )
            channel.queue_bind(queue=queue, exchange=name, routing_key=f"{partition}.#")
    finally:
        connection.close()


class TestSubscriptionEndedByTheBroker:
    @pytest.mark.parametrize("declare_again", [True, False], ids=["declared-again", "deleted"])
    def test_a_partition_whose_consumer_the_broker_cancelled_is_consumed_again(
        self,
        declare_again: bool,
        side: Side,
        sqlite_engine: sa.Engine,
        postgres_engine: sa.Engine,
        on_rabbitmq: Partitioned,
    ) -> None:
        """The broker cancels the subscription (its queue was deleted, or its node went down)
        while the consumer still holds the lock: the partition must not stay unconsumed. A
        queue left deleted is declared and bound again by the consumer that takes it."""
        on_rabbitmq.declare()
        inbox = side.inbox(postgres_engine)
        inbox.subscribe(CounterTicked, side.handler(mirroring))
        consumer: Any = on_rabbitmq.consumer(side, inbox)
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), kwargs={"poll_interval": 0.1})
        thread.start()
        try:
            wait_for(lambda: len(consumer.held_partitions) == PARTITIONS, seconds=30)
            for partition in range(PARTITIONS):
                delete(on_rabbitmq.name, partition, declare_again=declare_again)
            # What is published while a queue is missing is dropped by the exchange: wait
            # until every partition is consumed again (declared, bound, subscribed).
            queues = [f"{on_rabbitmq.name}.{p}" for p in range(PARTITIONS)]
            wait_for(lambda: [consumer_count(q) for q in queues] == [1] * PARTITIONS, seconds=30)
            ids, rounds = ticks_in_rounds(sqlite_engine, counters=8, ticks=2)
            publisher = on_rabbitmq.publisher()
            for messages in rounds:
                publisher.publish(messages)
            expected = {i: [1, 2] for i in ids}
            wait_for(lambda: mirrors(postgres_engine) == expected, seconds=30)
            consumers = [consumer_count(q) for q in queues]
        finally:
            stop.set()
            thread.join(30)
        assert mirrors(postgres_engine) == expected
        assert consumers == [1] * PARTITIONS


def start(consumer: Any) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(
        target=consumer.run,
        args=(stop,),
        kwargs={"poll_interval": 0.1, "initial_backoff": 0.1, "max_backoff": 1.0},
    )
    thread.start()
    return thread, stop


class TestUnevenShares:
    @pytest.mark.parametrize(("count", "ceiling"), [(3, 3), (5, 2)])
    def test_consumers_settle_on_ceil_shares_covering_every_partition_and_stay(
        self, count: int, ceiling: int, postgres_engine: sa.Engine, on_rabbitmq: Partitioned
    ) -> None:
        """3 or 5 consumers on 8 partitions: every partition held, none above the ceiling,
        and the holdings then stay put over several balance intervals (no thrash)."""
        side = SyncSide()
        consumers = [
            on_rabbitmq.consumer(side, side.inbox(postgres_engine), partitions=8)
            for _ in range(count)
        ]
        running = [start(consumer) for consumer in consumers]

        def held() -> list[frozenset[int]]:
            return [c.held_partitions for c in consumers]

        def settled() -> bool:
            now = held()
            return max(map(len, now)) <= ceiling and frozenset().union(*now) == set(range(8))

        try:
            wait_for(settled, seconds=60)
            first = held()
            later = []
            for _ in range(6):  # about six balance intervals
                threading.Event().wait(1.0)
                later.append(held())
        finally:
            for _, stop in running:
                stop.set()
            for thread, _ in running:
                thread.join(30)
        assert max(map(len, first)) <= ceiling
        assert sum(map(len, first)) == 8  # each partition held once
        assert frozenset().union(*first) == set(range(8))
        assert later == [first] * 6


class TestConnectionLostWhileHoldingPartitions:
    def test_a_silenced_consumers_partitions_are_taken_over_in_order_and_shared_again(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        postgres_engine: sa.Engine,
        on_rabbitmq: Partitioned,
        rabbit_proxy: TcpProxy,
    ) -> None:
        """One of two consumers loses its network (its connection silenced in both ways) while
        holding its partitions and events keep coming: every event is applied once and in
        order, and once it reconnected the two share the partitions again."""
        on_rabbitmq.declare()
        handling = Handling()
        consumers: list[Any] = []
        for name, url in (
            ("a", f"amqp://guest:guest@127.0.0.1:{rabbit_proxy.port}/%2F"),
            ("b", AMQP_URL),
        ):
            inbox = side.inbox(postgres_engine)
            inbox.subscribe(CounterTicked, side.handler(handling.handler(name)))
            consumers.append(
                side.rabbit_consumer(
                    inbox,
                    url,
                    queue=on_rabbitmq.name,
                    exchange=on_rabbitmq.name,
                    partitions=PARTITIONS,
                    heartbeat=1,
                    timeout=1.0,
                )
            )
        running = [start(consumer) for consumer in consumers]
        publisher = on_rabbitmq.publisher()
        ids, rounds = ticks_in_rounds(sqlite_engine, counters=12, ticks=10)
        try:
            wait_for(lambda: [len(c.held_partitions) for c in consumers] == [2, 2], seconds=30)
            for messages in rounds[:5]:
                publisher.publish(messages)
            silenced = rabbit_proxy.silence()
            for messages in rounds[5:]:
                publisher.publish(messages)
                threading.Event().wait(0.2)
            expected = {i: list(range(1, 11)) for i in ids}
            wait_for(lambda: mirrors(postgres_engine) == expected, seconds=60)
            wait_for(lambda: [len(c.held_partitions) for c in consumers] == [2, 2], seconds=60)
            shares = [c.held_partitions for c in consumers]
        finally:
            for _, stop in running:
                stop.set()
            for thread, _ in running:
                thread.join(30)
        assert silenced == 1
        assert mirrors(postgres_engine) == expected
        assert [len(s) for s in shares] == [2, 2]
        assert shares[0] | shares[1] == set(range(PARTITIONS))


class TestCancelledAsyncConsumer:
    def test_cancelling_run_gives_the_partitions_up_and_closes_the_connection(
        self, on_rabbitmq: Partitioned, rabbit_proxy: TcpProxy
    ) -> None:
        """The task running an async consumer is cancelled: its partitions are free at once
        and its connection is closed, not left open (heartbeating, holding nothing)."""
        url = f"amqp://guest:guest@127.0.0.1:{rabbit_proxy.port}/%2F"

        async def scenario() -> tuple[frozenset[int], int, int]:
            engine = create_async_engine("sqlite+aiosqlite:///:memory:")
            consumer = AsyncRabbitMQConsumer(
                AsyncInboxConsumer(engine, "mirror"),
                url,
                queue=on_rabbitmq.name,
                exchange=on_rabbitmq.name,
                partitions=PARTITIONS,
            )
            task = asyncio.create_task(consumer.run(asyncio.Event(), poll_interval=0.1))
            try:
                for _ in range(300):
                    if len(consumer.held_partitions) == PARTITIONS:
                        break
                    await asyncio.sleep(0.1)
                held = consumer.held_partitions
                opened = rabbit_proxy.open_connections()
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                for _ in range(100):
                    if rabbit_proxy.open_connections() == 0:
                        break
                    await asyncio.sleep(0.1)
                return held, opened, rabbit_proxy.open_connections()
            finally:
                await consumer.close()
                await engine.dispose()

        held, opened, after = asyncio.run(scenario())
        queues = [f"{on_rabbitmq.name}.{p}" for p in range(PARTITIONS)]
        assert held == set(range(PARTITIONS))
        assert opened == 1
        assert after == 0
        assert [consumer_count(q) for q in queues] == [0] * PARTITIONS
        assert consumer_count(f"{on_rabbitmq.name}.consumers") == 0
