"""Partitioned consumer throughput: 2 and 4 consumer processes against 1.

Each round publishes the same batch of events (many aggregates, 8 partitions) to one
partitioned stream or queue per consumer count, and times how long its consumers (separate
processes: one, two or four, each a ``RedisStreamConsumer`` or ``RabbitMQConsumer`` with
``partitions=8``) take until every event has its inbox row on PostgreSQL. The handler does
nothing, so what is measured is the consumer: reading, decoding, and one inbox transaction
per event. The ratio is the time per event with k consumers over the time with one (below
1: faster); events per second are printed under each row.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import sqlalchemy as sa
from benchmarks import _sql
from benchmarks._consumer_worker import Ticked, codec
from benchmarks._harness import Comparison, Report
from benchmarks.bench_relay import _listening
from tactical.outbox import OutboxMessage
from tactical.sqlalchemy import inbox_table

GROUP = "consumers"
PARTITIONS = 8
EVENTS = 400  # a round's batch: 80 aggregates, 5 events each
ROUNDS = 3
COUNTS = (1, 2, 4)
SCHEMA = "tactical_bench_consumers"


def _batch() -> list[OutboxMessage]:
    made = codec()
    now = datetime.now(UTC)
    messages: list[OutboxMessage] = []
    for n in range(EVENTS):
        event = Ticked(f"counter-{n % 80}", n // 80 + 1)
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


def _drain_seconds(
    engine: sa.Engine, name: str, publisher: Any, batch: Sequence[OutboxMessage]
) -> float:
    target = _handled(engine, name) + len(batch)
    started = time.perf_counter()
    publisher.publish(_fresh(batch))
    deadline = started + 300
    while _handled(engine, name) < target:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name}: the consumers did not drain {len(batch)} events")
        time.sleep(0.01)
    return time.perf_counter() - started


def _measure(broker: str, report: Report, engine: sa.Engine) -> None:
    url = _sql.POSTGRES_URL
    names = {k: f"tactical-bench-{broker}-{k}-{uuid4().hex[:6]}" for k in COUNTS}
    command = [sys.executable, "-m", "benchmarks._consumer_worker", broker]
    workers = [
        # sys.executable with fixed arguments, not user input.
        subprocess.Popen(  # noqa: S603
            [*command, names[k], str(PARTITIONS), url, SCHEMA], stdout=subprocess.PIPE, text=True
        )
        for k in COUNTS
        for _ in range(k)
    ]
    publishers = {k: _publisher(broker, names[k]) for k in COUNTS}
    try:
        for worker in workers:
            assert worker.stdout is not None
            worker.stdout.readline()
        batch = _batch()
        for k in COUNTS:  # warm up (and let the Redis consumers share their partitions)
            _drain_seconds(engine, names[k], publishers[k], batch)
        times: dict[int, list[float]] = {k: [] for k in COUNTS}
        order = random.Random(f"{GROUP}/{broker}")
        for _ in range(ROUNDS):
            for k in order.sample(COUNTS, len(COUNTS)):
                times[k].append(_drain_seconds(engine, names[k], publishers[k], batch))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
            if worker.stdout is not None:
                worker.stdout.close()
        _cleanup(broker, names.values(), publishers.values())
    baseline = times[1]
    for k in COUNTS[1:]:
        ratios = sorted(c / b for c, b in zip(times[k], baseline, strict=True))
        comparison = Comparison(
            GROUP,
            f"{EVENTS} events, {broker}, {k} consumer processes",
            "PostgreSQL",
            "1 consumer process",
            candidate_ns=statistics.median(times[k]) / EVENTS * 1e9,
            baseline_ns=statistics.median(baseline) / EVENTS * 1e9,
            ratio=statistics.median(ratios),
            ratio_q1=ratios[0],
            ratio_q3=ratios[-1],
            rounds=ROUNDS,
            calls_per_round=EVENTS,
        )
        report.add(comparison)
        for label, ns in (
            ("candidate", comparison.candidate_ns),
            ("1 consumer", comparison.baseline_ns),
        ):
            report.note(f"{comparison.name}: {label} {1e9 / ns:,.0f} events/s")


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
        channel.exchange_delete(exchange=name)
    connection.close()


def run(report: Report) -> None:
    """Run the consumer benchmarks into ``report``."""
    rows = [
        f"{EVENTS} events, {b}, {k} consumer processes"
        for b in ("redis", "rabbitmq")
        for k in COUNTS[1:]
    ]
    problem = _sql.postgres_reachable()
    if problem is not None:
        report.skip(GROUP, rows, "PostgreSQL", problem, against="1 consumer process")
        return
    with _sql.postgres_schema(SCHEMA):
        engine = sa.create_engine(
            _sql.POSTGRES_URL, connect_args={"options": f"-csearch_path={SCHEMA}"}
        )
        from tactical.sqlalchemy import create_schema

        create_schema(engine)
        try:
            for broker, port in (("redis", 6379), ("rabbitmq", 5672)):
                if not _listening(port):
                    names = [r for r in rows if f", {broker}," in r]
                    reason = f"{broker} not reachable on 127.0.0.1:{port}"
                    report.skip(GROUP, names, "PostgreSQL", reason, against="1 consumer process")
                    continue
                _measure(broker, report, engine)
        finally:
            engine.dispose()
    report.note(
        "consumers: on 2 cores, each event costs one PostgreSQL transaction (the inbox row) and "
        "Python work in the consumer; more processes than cores only add switching"
    )
