"""Partitioned consumer throughput: 2 and 4 consumer processes against 1.

Each round publishes the same batch of events (240 aggregates, 8 partitions) to one
partitioned stream or queue per consumer count, and times how long its consumers (separate
processes started once: one, two or four, each a ``RedisStreamConsumer`` or
``RabbitMQConsumer`` with ``partitions=8``, configured by its arguments) take from the
first publish until every event has its inbox row on PostgreSQL (publishing, from this
process, is several times faster than consuming and overlaps it; the notes give its time).
No event is published, and no drain timed, before the consumers have *settled*: each holds
its fair share of the partitions (asked of every process: the partitions its consumer holds,
RabbitMQ partition locks or Redis leases), 8 for one, 4 and 4 for two, 2 each for four, and
together all of them; so every partition queue exists and has its consumer, and k
consumers really split the work (the notes give the split).
The handler does nothing, so what is measured is the consumer: reading, decoding, and one
inbox transaction per event. The batch holds as many events as one warm consumer handles in
about two seconds (200 to 2,000). Rounds run the three counts in an order shuffled every
round; the ratio is the time per event with k consumers over the time with one in the same
rounds (median of the per-round ratios, below 1: faster), the CPU ratio the same for the CPU
seconds of every measured process (consumers, their PostgreSQL server processes, the
broker). The notes give events per second, those CPU seconds per event, how many cores
they kept busy, and how busy the whole machine was.
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from benchmarks import _processes, _sql
from benchmarks._consumer_worker import Ticked, codec
from benchmarks._harness import Report
from benchmarks.bench_relay import _listening
from tactical.outbox import OutboxMessage
from tactical.sqlalchemy import inbox_table

GROUP = "consumers"
PARTITIONS = 8
# A round's batch: as many events as one consumer handles in about DRAIN_SECONDS (measured
# by the warm-up), from MIN_EVENTS to MAX_EVENTS, of AGGREGATES aggregates. A consumer pays a
# transaction per event, so its rate swings tenfold with the machine's load: a fixed batch
# would take minutes on a busy machine, or be over in a blink on a quiet one.
DRAIN_SECONDS = 2.0
MIN_EVENTS = 200
MAX_EVENTS = 2000
AGGREGATES = 240
WARM_UP_EVENTS = 100
ROUNDS = 4
SETTLE_SECONDS = 60.0
COUNTS = (1, 2, 4)
SCHEMA = f"{_sql.POSTGRES_SCHEMA}_consumers"


def _batch(events: int) -> list[OutboxMessage]:
    made = codec()
    now = datetime.now(UTC)
    messages: list[OutboxMessage] = []
    for n in range(events):
        event = Ticked(f"counter-{n % AGGREGATES}", n // AGGREGATES + 1)
        record = made.event_to_record(event)
        messages.append(
            OutboxMessage(
                position=n + 1,
                event_id=uuid4(),
                event_type=record.type_name,
                event_version=record.schema_version,
                aggregate_type="bench.Counter",
                aggregate_id=event.counter,
                aggregate_version=event.count,
                payload=record.payload,
                occurred_at=now,
            )
        )
    return messages


def _fresh(batch: Sequence[OutboxMessage]) -> list[OutboxMessage]:
    """The batch with new event ids (the inbox would skip the old ones)."""
    return [dataclasses.replace(m, event_id=uuid4()) for m in batch]


def _publisher(broker: str, name: str) -> Any:
    if broker == "rabbitmq":
        from tactical.outbox.rabbitmq import RabbitMQPublisher

        return RabbitMQPublisher(exchange=name, partitions=PARTITIONS)
    import redis

    from tactical.outbox.redis_streams import RedisStreamPublisher

    return RedisStreamPublisher(
        redis.Redis(host="127.0.0.1", socket_timeout=5), name, partitions=PARTITIONS
    )


def _handled(engine: sa.Engine, name: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(inbox_table.c.consumer == name)
        ).scalar_one()


class _Consumers:
    """k consumer processes of one partitioned stream or queue, kept for the run."""

    def __init__(self, broker: str, count: int, engine: sa.Engine) -> None:
        self.count = count
        self.engine = engine
        self.name = f"tactical-bench-{broker}-{count}-{uuid4().hex[:6]}"
        self.application = f"tactical-bench-consumer-{os.getpid()}-{broker}-{count}-"
        self.publisher = _publisher(broker, self.name)
        self.spawned = time.perf_counter()
        self.workers = [
            _processes.spawn(
                "benchmarks._consumer_worker",
                broker,
                self.name,
                str(PARTITIONS),
                _sql.POSTGRES_URL,
                SCHEMA,
                f"{self.application}{i}",
                _sql.POSTGRES_OPTIONS,
            )
            for i in range(count)
        ]
        self.split: list[frozenset[int]] = []  # the partitions each holds, once settled
        self.settled_in = 0.0
        self.moved = 0

    def wait_ready(self) -> None:
        for worker in self.workers:
            if (line := _processes.reply(worker)) != "ready":
                raise RuntimeError(f"consumer worker: expected ready, got {line!r}")

    def held(self) -> list[frozenset[int]]:
        """The partitions each consumer process holds now."""
        _processes.send(self.workers, "held")
        held: list[frozenset[int]] = []
        for worker in self.workers:
            words = _processes.reply(worker).split()
            if not words or words[0] != "held":
                raise RuntimeError(f"consumer worker: expected held, got {words!r}")
            held.append(frozenset(int(p) for p in words[1:]))
        return held

    def settle(self) -> None:
        """Wait until the processes hold a fair split of the partitions (see ``settled``).

        The first split is kept for the notes; a later one that differs counts as moved.

        Raises:
            TimeoutError: Not settled within ``SETTLE_SECONDS``.
        """
        started = time.perf_counter()
        while not settled(held := self.held(), PARTITIONS):
            if time.perf_counter() - started > SETTLE_SECONDS:
                raise TimeoutError(
                    f"{self.name}: the {self.count} consumer(s) did not share the "
                    f"{PARTITIONS} partitions within {SETTLE_SECONDS:.0f}s: they hold {held}"
                )
            time.sleep(0.05)
        if not self.split:
            self.split = held
            self.settled_in = time.perf_counter() - self.spawned
        elif held != self.split:
            self.moved += 1
            self.split = held

    def drain(self, batch: Sequence[OutboxMessage]) -> tuple[_processes.Drain, float]:
        """Publish ``batch``; the time until every event has its inbox row, and the publish's."""
        target = _handled(self.engine, self.name) + len(batch)
        fresh = _fresh(batch)
        groups = {
            "consumers": [w.pid for w in self.workers],
            "their PostgreSQL": _processes.backend_pids(self.engine, self.application),
            "broker": _processes.named_pids("redis-server", "beam.smp"),
        }
        with _processes.Window(groups) as window:
            started = time.perf_counter()
            self.publisher.publish(fresh)
            published = time.perf_counter() - started
            deadline = started + 300
            while (handled := _handled(self.engine, self.name)) < target:
                if time.perf_counter() > deadline:
                    raise TimeoutError(
                        f"{self.name}: the consumers handled {len(batch) - target + handled} "
                        f"of {len(batch)} events in 300s; partitions held: {self.held()}"
                    )
                time.sleep(0.02)
        return _processes.Drain(window.wall, window.used, window.machine_cores), published

    def stop(self) -> None:
        _processes.stop(self.workers)

    def describe_split(self) -> str:
        """How the partitions were split, e.g. ``4/4 (seen settled 2.1s after their start)``.

        An upper bound on the time they took: the first look comes once every group of
        processes has started.
        """
        sizes = "/".join(
            str(len(held)) for held in sorted(self.split, key=lambda h: min(h, default=PARTITIONS))
        )
        moved = f", moved {self.moved} time(s) between drains" if self.moved else ""
        return f"{sizes} (seen settled {self.settled_in:.1f}s after their start{moved})"


def settled(held: Sequence[frozenset[int]], partitions: int) -> bool:
    """Whether consumers holding ``held`` have settled on ``partitions``: what they converge to.

    Each holds at most its fair share, ``ceil(partitions / consumers)`` (the rule of the
    RabbitMQ partition locks and of the Redis leases), no partition is held twice, and every
    one is held: 4 and 4 of 8 for two, 2 each for four.
    """
    share = -(-partitions // max(1, len(held)))
    every = frozenset[int]().union(*held)
    return (
        all(len(h) <= share for h in held)
        and sum(len(h) for h in held) == len(every)
        and every == frozenset(range(partitions))
    )


def _row_name(broker: str, count: int) -> str:
    return f"{PARTITIONS} partitions, {broker}, {count} consumer processes"


def _measure(broker: str, report: Report, engine: sa.Engine) -> None:
    consumers = {k: _Consumers(broker, k, engine) for k in COUNTS}
    drains: dict[int, list[_processes.Drain]] = {k: [] for k in COUNTS}
    publishing: list[float] = []
    try:
        for group in consumers.values():
            group.wait_ready()
        for group in consumers.values():
            group.settle()
        warm_up = _batch(WARM_UP_EVENTS)
        for k in COUNTS[1:]:
            consumers[k].drain(warm_up)
        consumers[1].drain(warm_up)
        rate = WARM_UP_EVENTS / consumers[1].drain(warm_up)[0].seconds  # one consumer's, warm
        events = min(MAX_EVENTS, max(MIN_EVENTS, round(rate * DRAIN_SECONDS / 100) * 100))
        batch = _batch(events)
        order = random.Random(f"{GROUP}/{broker}")
        for _ in range(ROUNDS):
            for k in order.sample(COUNTS, len(COUNTS)):
                consumers[k].settle()  # outside the time measured; at once if still settled
                drain, published = consumers[k].drain(batch)
                drains[k].append(drain)
                publishing.append(published)
    finally:
        for group in consumers.values():
            group.stop()
        _cleanup(
            broker, [c.name for c in consumers.values()], [c.publisher for c in consumers.values()]
        )
    label = {"redis": "Redis Streams", "rabbitmq": "RabbitMQ"}[broker]
    for k in COUNTS:
        report.note(_processes.describe(k, f"consumer process(es) of {label}", drains[k], events))
    report.note(
        f"consumer processes of {label}, partitions held: "
        + "; ".join(f"{k}: {consumers[k].describe_split()}" for k in COUNTS)
    )
    report.note(_processes.limit(f"consumer processes of {label}", drains))
    for k in COUNTS[1:]:
        name = _row_name(broker, k)
        against = "1 consumer process"
        report.add(_processes.scaling_row(GROUP, name, against, drains[k], drains[1], events))
    report.note(
        f"consumers of {label}: {events} events per drain; publishing them took "
        f"{statistics.median(publishing):.2f}s (median), inside the time measured"
    )


def _cleanup(broker: str, names: Any, publishers: Any) -> None:
    for publisher in publishers:
        close: Callable[[], object] | None = getattr(publisher, "close", None)
        if close is not None:
            close()
    if broker == "redis":
        import redis

        client = redis.Redis(host="127.0.0.1", socket_timeout=5)
        for name in names:
            keys = list(client.scan_iter(match=f"{name}*"))
            if keys:
                client.delete(*keys)
        client.close()
        return
    import pika

    connection = pika.BlockingConnection(
        pika.URLParameters("amqp://guest:guest@127.0.0.1:5672/%2F")
    )
    channel = connection.channel()
    for name in names:
        for p in range(PARTITIONS):
            channel.queue_delete(queue=f"{name}.{p}")
        channel.queue_delete(queue=f"{name}.consumers")  # the members queue
        channel.exchange_delete(exchange=name)
    connection.close()


def run(report: Report) -> None:
    """Run the consumer benchmarks into ``report``."""
    rows = [_row_name(b, k) for b in ("redis", "rabbitmq") for k in COUNTS[1:]]
    problem = _sql.postgres_reachable()
    if problem is not None:
        report.skip(GROUP, rows, "PostgreSQL", problem, against="1 consumer process")
        return
    load = os.getloadavg()
    with _sql.postgres_schema(SCHEMA):
        engine = sa.create_engine(
            _sql.POSTGRES_URL, connect_args={"options": f"-csearch_path={SCHEMA}"}
        )
        from tactical.sqlalchemy import create_schema

        create_schema(engine)
        try:
            for broker, port in (("redis", 6379), ("rabbitmq", 5672)):
                if not _listening(port):
                    names = [_row_name(broker, k) for k in COUNTS[1:]]
                    reason = f"{broker} not reachable on 127.0.0.1:{port}"
                    report.skip(GROUP, names, "PostgreSQL", reason, against="1 consumer process")
                    continue
                _measure(broker, report, engine)
        finally:
            engine.dispose()
    report.note(
        f"consumers: load average {load[0]:.1f} before these rows, {os.getloadavg()[0]:.1f} "
        f"after, on {_processes.CORES} cores"
    )
