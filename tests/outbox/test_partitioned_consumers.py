"""Partitioned publishers and competing consumers on the real RabbitMQ and Redis.

Events are split into partitions by aggregate (:func:`tactical.outbox.partition_of`); several
consumers share the partitions, one consumer per partition at a time, so every aggregate's
events are applied in order, once (the inbox), even when a consumer is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pika
import pytest
import redis
from tests.conftest import require_server
from tests.outbox.brokers import AMQP_URL
from tests.outbox.helpers import commit_ticks, mirroring, mirrors, relayed
from tests.outbox.partition_worker import LEASE
from tests.outbox.sides import AsyncSide, Side

import sqlalchemy as sa
from tactical import JsonCodec
from tactical._flow import Flow
from tactical.outbox import (
    InboxConsumer,
    OutboxMessage,
    OutboxRelay,
    PartitionMismatchError,
    PublishError,
    partition_of,
)
from tactical.outbox.rabbitmq import (
    AsyncRabbitMQConsumer,
    AsyncRabbitMQPublisher,
    RabbitMQConsumer,
    RabbitMQPublisher,
)
from tactical.outbox.redis_streams import AsyncRedisStreamPublisher, RedisStreamPublisher
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import Counter, CounterTicked

PARTITIONS = 4
COUNTER = JsonCodec().type_name(Counter)
ROOT = Path(__file__).resolve().parents[2]


def partition_of_counter(counter_id: UUID | str, partitions: int = PARTITIONS) -> int:
    return partition_of(COUNTER, str(counter_id), partitions)


@dataclass
class Partitioned:
    """A unique name on one real broker: the exchange and queue prefix, or the stream."""

    broker: str
    name: str
    redis: redis.Redis
    closers: list[Callable[[], object]] = field(default_factory=list[Callable[[], object]])

    def publisher(self, side: Side | None = None, partitions: int = PARTITIONS) -> Any:
        """A partitioned publisher (the side's, or the sync one), closed after the test."""
        is_async = isinstance(side, AsyncSide)
        if self.broker == "rabbitmq":
            kind = AsyncRabbitMQPublisher if is_async else RabbitMQPublisher
            made = kind(AMQP_URL, exchange=self.name, partitions=partitions, timeout=5)
            if isinstance(side, AsyncSide):
                side.on_close(made.close)
            else:
                self.closers.append(made.close)
            return made
        if isinstance(side, AsyncSide):
            import redis.asyncio as redis_async

            client = redis_async.Redis(host="127.0.0.1", socket_timeout=5)
            side.on_close(client.aclose)
            return AsyncRedisStreamPublisher(client, self.name, partitions=partitions)
        client = redis.Redis(host="127.0.0.1", socket_timeout=5)
        self.closers.append(client.close)
        return RedisStreamPublisher(client, self.name, partitions=partitions)

    def consumer(self, side: Side, inbox: Any, partitions: int = PARTITIONS) -> Any:
        """The side's partitioned consumer feeding ``inbox``."""
        if self.broker == "rabbitmq":
            return side.rabbit_consumer(
                inbox,
                AMQP_URL,
                queue=self.name,
                exchange=self.name,
                partitions=partitions,
                heartbeat=2,
            )
        client = redis.Redis(host="127.0.0.1", socket_timeout=2, socket_connect_timeout=2)
        self.closers.append(client.close)
        return side.redis_consumer(
            inbox, client, stream=self.name, partitions=partitions, lease=LEASE
        )

    def declare(self, partitions: int = PARTITIONS) -> None:
        """On RabbitMQ, the partition queues (as a consumer declares them), so nothing is dropped."""
        if self.broker != "rabbitmq":
            return
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        channel.exchange_declare(exchange=self.name, exchange_type="topic", durable=True)
        for p in range(partitions):
            queue = f"{self.name}.{p}"
            channel.queue_declare(
                queue=queue, durable=True, arguments={"x-single-active-consumer": True}
            )
            channel.queue_bind(queue=queue, exchange=self.name, routing_key=f"{p}.#")
        connection.close()

    def contents(self, partitions: int = PARTITIONS) -> dict[int, list[OutboxMessage]]:
        """What each partition's queue or stream holds now (read without consuming)."""
        held: dict[int, list[OutboxMessage]] = {}
        if self.broker == "redis":
            for p in range(partitions):
                held[p] = [
                    OutboxMessage.from_wire(fields[b"body"], json.loads(fields[b"headers"]))
                    for _, fields in self.redis.xrange(f"{self.name}:{p}")
                ]
            return held
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        for p in range(partitions):
            held[p] = []
            while True:
                method, properties, body = channel.basic_get(f"{self.name}.{p}")
                if method is None:
                    break
                held[p].append(OutboxMessage.from_wire(body, properties.headers))
        connection.close()  # unacknowledged: back in their queues
        return held

    def close(self) -> None:
        for close in self.closers:
            close()
        if self.broker == "redis":
            keys = list(self.redis.scan_iter(match=f"{self.name}*"))
            if keys:
                self.redis.delete(*keys)
            return
        connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
        channel = connection.channel()
        for p in range(8):
            channel.queue_delete(queue=f"{self.name}.{p}")
        channel.queue_delete(queue=f"{self.name}.consumers")
        channel.exchange_delete(exchange=self.name)
        connection.close()


@contextlib.contextmanager
def made_partitioned(broker: str) -> Iterator[Partitioned]:
    require_server(*(("RabbitMQ", 5672) if broker == "rabbitmq" else ("Redis", 6379)))
    client = redis.Redis(host="127.0.0.1", socket_timeout=5)
    made = Partitioned(broker, f"tactical-test-{uuid4().hex[:12]}", client)
    try:
        yield made
    finally:
        made.close()
        client.close()


@pytest.fixture(
    params=[
        pytest.param("rabbitmq", marks=pytest.mark.rabbitmq),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
def partitioned(request: pytest.FixtureRequest) -> Iterator[Partitioned]:
    """A unique exchange and queue prefix on RabbitMQ, or stream on Redis; deleted afterwards."""
    with made_partitioned(request.param) as made:
        yield made


@pytest.fixture
def on_redis() -> Iterator[Partitioned]:
    """A unique partitioned stream on Redis; its keys deleted afterwards."""
    with made_partitioned("redis") as made:
        yield made


def ticks_in_rounds(
    engine: sa.Engine, *, counters: int, ticks: int
) -> tuple[list[UUID], list[list[OutboxMessage]]]:
    """Counters ticked ``ticks`` times, and their events in rounds: every counter's n-th tick."""
    ids = commit_ticks(engine, counters=counters, ticks=ticks)
    messages = relayed(engine)
    rounds = [[m for m in messages if m.payload["count"] == n] for n in range(1, ticks + 1)]
    return ids, rounds


def relay_all(engine: sa.Engine, publisher: Any) -> None:
    relay = OutboxRelay(engine, publisher)
    while relay.relay_once():
        pass


@dataclass
class Handling:
    """When each consumer handled an event of each partition: (partition, consumer, start, end)."""

    spans: list[tuple[int, str, float, float]] = field(
        default_factory=list[tuple[int, str, float, float]]
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self, consumer: str) -> Callable[[CounterTicked, Any], Flow[Any, None]]:
        def handle(event: CounterTicked, uow: Any) -> Flow[Any, None]:
            start = time.monotonic()
            yield from mirroring(event, uow)
            with self.lock:
                self.spans.append(
                    (partition_of_counter(event.counter_id), consumer, start, time.monotonic())
                )

        return handle

    def overlaps(self) -> list[tuple[int, str, str]]:
        """Pairs of spans of one partition, by two consumers, that overlap in time."""
        found: list[tuple[int, str, str]] = []
        by_partition: dict[int, list[tuple[float, float, str]]] = {}
        for partition, consumer, start, end in self.spans:
            by_partition.setdefault(partition, []).append((start, end, consumer))
        for partition, spans in by_partition.items():
            spans.sort()
            for (_, end, first), (start, _, second) in itertools.pairwise(spans):
                if first != second and start < end:
                    found.append((partition, first, second))
        return found


def wait_for(condition: Callable[[], bool], seconds: float = 60.0) -> None:
    """Poll ``condition`` until it holds or ``seconds`` passed (the caller asserts after)."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


class TestPartitionedPublishers:
    def test_each_event_goes_to_its_aggregates_partition_in_order(
        self, side: Side, sqlite_engine: sa.Engine, partitioned: Partitioned
    ) -> None:
        """Every event lands in partition_of(its aggregate), and each aggregate's stay in order."""
        partitioned.declare()
        ids = commit_ticks(sqlite_engine, counters=12, ticks=3)
        side.relay(sqlite_engine, partitioned.publisher(side)).relay_once()
        held = partitioned.contents()
        assert sum(len(messages) for messages in held.values()) == 36
        for p, messages in held.items():
            assert {partition_of_counter(m.aggregate_id) for m in messages} <= {p}
        for counter_id in ids:
            (p,) = {partition_of_counter(counter_id)}
            counts = [m.payload["count"] for m in held[p] if m.aggregate_id == str(counter_id)]
            assert counts == [1, 2, 3]
        assert len([p for p, messages in held.items() if messages]) > 1


class TestSettings:
    @pytest.mark.parametrize("kind", [RabbitMQConsumer, AsyncRabbitMQConsumer])
    @pytest.mark.parametrize("interval", [0, -1.0])
    def test_a_balance_interval_that_is_not_positive_is_refused(
        self, kind: type[Any], interval: float, sqlite_engine: sa.Engine
    ) -> None:
        """A RabbitMQ consumer's balance_interval must be positive; the error names the value."""
        inbox = InboxConsumer(lambda: SqlAlchemyUnitOfWork(sqlite_engine), "mirror")
        with pytest.raises(ValueError, match=f"balance_interval must be positive, got {interval}"):
            kind(inbox, queue="q", partitions=8, balance_interval=interval)


class TestPartitionMismatch:
    @pytest.mark.redis
    def test_a_redis_publisher_with_another_number_of_partitions_is_refused(
        self, on_redis: Partitioned, sqlite_engine: sa.Engine
    ) -> None:
        """The stream's recorded split (4) refuses a publisher of 8, naming both numbers."""
        partitioned = on_redis
        commit_ticks(sqlite_engine, counters=2, ticks=1)
        relay_all(sqlite_engine, partitioned.publisher())
        messages = list(partitioned.contents()[0]) + [
            m for p in range(1, PARTITIONS) for m in partitioned.contents()[p]
        ]
        with pytest.raises(PublishError, match=r"split into 4 partitions.*configured with 8"):
            partitioned.publisher(partitions=8).publish(messages)
        assert partitioned.redis.get(f"{partitioned.name}:partitions") == b"4"

    def test_a_consumer_with_another_number_of_partitions_is_refused(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        partitioned: Partitioned,
    ) -> None:
        """A consumer of 8 partitions refuses what a publisher of 4 sent, and loses none of it."""
        partitioned.declare(8)  # the queues the consumer of 8 declares, so nothing is dropped
        commit_ticks(sqlite_engine, counters=8, ticks=2)
        relay_all(sqlite_engine, partitioned.publisher(partitions=4))
        inbox = side.inbox(consumer_engine)
        inbox.subscribe(CounterTicked, side.handler(mirroring))
        consumer = partitioned.consumer(side, inbox, partitions=8)
        try:
            with pytest.raises(PartitionMismatchError, match=r"4 partitions.* 8|split into 4"):
                consumer.consume_available()
        finally:
            if partitioned.broker == "rabbitmq":
                consumer.close()
        assert mirrors(consumer_engine) == {}
        assert sum(len(m) for m in partitioned.contents(4).values()) == 16


def competing(
    side: Side,
    partitioned: Partitioned,
    engine: sa.Engine,
    handling: Handling,
    names: list[str],
) -> tuple[list[threading.Thread], threading.Event, list[BaseException]]:
    """Consumers named ``names``, each running in a thread until the event is set."""
    stop = threading.Event()
    errors: list[BaseException] = []
    threads: list[threading.Thread] = []
    for name in names:
        inbox = side.inbox(engine)
        inbox.subscribe(CounterTicked, side.handler(handling.handler(name)))
        consumer = partitioned.consumer(side, inbox)

        def consume(consumer: Any = consumer) -> None:
            try:
                consumer.run(stop, poll_interval=0.1, initial_backoff=0.1, max_backoff=1.0)
            except BaseException as error:
                errors.append(error)

        threads.append(threading.Thread(target=consume, name=name))
    for thread in threads:
        thread.start()
    return threads, stop, errors


class TestCompetingConsumers:
    @pytest.mark.postgres
    def test_three_consumers_apply_every_event_once_in_order_one_per_partition_at_a_time(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        postgres_engine: sa.Engine,
        partitioned: Partitioned,
    ) -> None:
        """Three consumers (threads, or tasks) share the partitions while events keep coming."""
        partitioned.declare()
        handling = Handling()
        publisher = partitioned.publisher()
        ids, rounds = ticks_in_rounds(sqlite_engine, counters=12, ticks=10)
        publisher.publish(rounds[0])
        threads, stop, errors = competing(
            side, partitioned, postgres_engine, handling, ["a", "b", "c"]
        )
        try:
            for messages in rounds[1:]:
                publisher.publish(messages)
                time.sleep(0.05)
            expected = {i: list(range(1, 11)) for i in ids}
            wait_for(lambda: mirrors(postgres_engine) == expected)
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert errors == []
        assert mirrors(postgres_engine) == expected
        assert len(handling.spans) == 120
        assert handling.overlaps() == []

    def test_consumers_share_the_partitions_fairly_and_take_over_a_stopped_ones(
        self, side: Side, postgres_engine: sa.Engine, partitioned: Partitioned
    ) -> None:
        """Two consumers hold two partitions each; when one stops, the other holds all four."""
        handling = Handling()
        inboxes = [side.inbox(postgres_engine) for _ in range(2)]
        consumers = [partitioned.consumer(side, inbox) for inbox in inboxes]
        stops = [threading.Event(), threading.Event()]
        threads = [
            threading.Thread(target=consumer.run, args=(stop,), kwargs={"poll_interval": 0.1})
            for consumer, stop in zip(consumers, stops, strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: [len(c.held_partitions) for c in consumers] == [2, 2], seconds=30)
            held = [c.held_partitions for c in consumers]
            stops[0].set()
            threads[0].join(30)
            wait_for(lambda: len(consumers[1].held_partitions) == PARTITIONS, seconds=30)
            after = consumers[1].held_partitions
            stopped = consumers[0].held_partitions
        finally:
            for stop in stops:
                stop.set()
            for thread in threads:
                thread.join(30)
        assert [len(h) for h in held] == [2, 2]
        assert held[0] | held[1] == set(range(PARTITIONS))
        assert after == set(range(PARTITIONS))
        assert stopped == set()
        assert handling.spans == []


class TestLeases:
    @pytest.mark.redis
    def test_a_consumer_whose_lease_was_taken_stops_reading_the_partition_and_says_so(
        self,
        side: Side,
        consumer_engine: sa.Engine,
        on_redis: Partitioned,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Leases held by another (this consumer was paused past them) are dropped, with a warning."""
        consumer = on_redis.consumer(side, side.inbox(consumer_engine))
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), kwargs={"poll_interval": 0.1})
        with caplog.at_level(logging.INFO, logger="tactical.outbox"):
            thread.start()
            try:
                wait_for(lambda: len(consumer.held_partitions) == PARTITIONS, seconds=20)
                held = consumer.held_partitions
                # Another consumer's leases, as if this one's had expired and been taken.
                for p in range(PARTITIONS):
                    on_redis.redis.set(f"{on_redis.name}:{p}:lease:mirror", "intruder", px=60_000)
                wait_for(lambda: not consumer.held_partitions, seconds=20)
                after = consumer.held_partitions
            finally:
                stop.set()
                thread.join(30)
        assert held == set(range(PARTITIONS))
        assert after == set()
        assert caplog.text.count("lost its lease on partition") == PARTITIONS
        leases = [on_redis.redis.get(f"{on_redis.name}:{p}:lease:mirror") for p in range(4)]
        assert leases == [b"intruder"] * PARTITIONS  # stopping released nothing of another's


WORKER_PARTITIONS = 8  # the documented default number, shared by up to four processes


@dataclass
class Worker:
    """A consumer process (tests/outbox/partition_worker.py) and the partitions it said it holds."""

    process: subprocess.Popen[str]
    held: frozenset[int] | None = None  # None until it said, and once its output ended
    reader: threading.Thread | None = None

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            words = line.split()
            if words and words[0] == "held":
                self.held = frozenset(int(word) for word in words[1:])
        self.held = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not end within 15 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.reader is not None:
            self.reader.join(5)


def start_worker(broker: str, api: str, name: str, url: str) -> Worker:
    """A consumer process of ``name``'s partitions, once it consumes."""
    command = [sys.executable, "-m", "tests.outbox.partition_worker"]
    process = subprocess.Popen(
        [*command, broker, api, name, str(WORKER_PARTITIONS), url],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    worker = Worker(process)
    worker.reader = threading.Thread(target=worker.read, daemon=True)
    worker.reader.start()
    return worker


def shared_fairly(workers: list[Worker]) -> bool:
    """Every partition held by one of ``workers``, each holding within 1 of an equal share."""
    held = [worker.held for worker in workers]
    if any(h is None for h in held):
        return False
    sizes = [len(h or ()) for h in held]
    share = WORKER_PARTITIONS / len(workers)
    return (
        all(abs(size - share) < 1 for size in sizes)
        and sum(sizes) == WORKER_PARTITIONS
        and frozenset().union(*(h or () for h in held)) == set(range(WORKER_PARTITIONS))
    )


@pytest.mark.slow
class TestConsumerProcesses:
    @pytest.mark.postgres
    @pytest.mark.parametrize(
        ("broker", "api"),
        [
            pytest.param(broker, api, marks=getattr(pytest.mark, broker), id=f"{broker}-{api}")
            for broker in ("rabbitmq", "redis")
            for api in ("sync", "async")
        ],
    )
    def test_consumers_started_one_by_one_share_the_partitions_and_take_over_a_killed_ones(
        self, broker: str, api: str, sqlite_engine: sa.Engine, postgres_engine: sa.Engine
    ) -> None:
        """1, 2, then 4 processes share 8 partitions fairly; one SIGKILLed and one stopped leave
        theirs to the others; every event is applied once, in its aggregate's order."""
        with made_partitioned(broker) as partitioned:
            self.share_and_take_over(partitioned, api, sqlite_engine, postgres_engine)

    def share_and_take_over(
        self,
        partitioned: Partitioned,
        api: str,
        sqlite_engine: sa.Engine,
        postgres_engine: sa.Engine,
    ) -> None:
        partitioned.declare(WORKER_PARTITIONS)
        url = postgres_engine.url.render_as_string(hide_password=False)
        publisher = partitioned.publisher(partitions=WORKER_PARTITIONS)
        ids, rounds = ticks_in_rounds(sqlite_engine, counters=16, ticks=12)
        pending = iter(rounds)

        def publish(count: int) -> None:
            for messages in itertools.islice(pending, count):
                publisher.publish(messages)
                time.sleep(0.05)

        def start() -> None:
            workers.append(start_worker(partitioned.broker, api, partitioned.name, url))

        shares: dict[str, list[int] | None] = {}

        def settle(step: str, live: list[Worker]) -> None:
            wait_for(lambda: shared_fairly(live), seconds=60)
            fair = shared_fairly(live)
            shares[step] = sorted(len(w.held or ()) for w in live) if fair else None

        workers: list[Worker] = []
        try:
            publish(1)
            start()
            settle("one", workers)
            start()
            settle("two", workers)
            publish(2)
            start()
            start()
            settle("four", workers)
            publish(2)
            workers[0].process.kill()  # mid-stream: some of its messages are unacknowledged
            workers[0].process.wait(10)
            publish(2)
            settle("three after SIGKILL", workers[1:])
            workers[1].stop()
            publish(2)
            settle("two after a stop", workers[2:])
            publish(len(rounds))
            expected = {i: list(range(1, 13)) for i in ids}
            wait_for(lambda: mirrors(postgres_engine) == expected, seconds=90)
        finally:
            for worker in workers:
                worker.stop()
                if worker.process.stdout is not None:
                    worker.process.stdout.close()
        assert shares == {
            "one": [8],
            "two": [4, 4],
            "four": [2, 2, 2, 2],
            "three after SIGKILL": [2, 3, 3],
            "two after a stop": [4, 4],
        }
        assert workers[0].process.returncode == -9
        assert workers[1].process.returncode == 0
        assert mirrors(postgres_engine) == expected
