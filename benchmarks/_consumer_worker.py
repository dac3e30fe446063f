"""One partitioned consumer process of the ``consumers`` benchmark (not a benchmark itself).

``python -m benchmarks._consumer_worker BROKER NAME PARTITIONS URL SCHEMA APPLICATION
OPTIONS`` consumes the partitions of ``NAME`` (RabbitMQ queue prefix and exchange, or Redis
stream) into an inbox named ``NAME`` on PostgreSQL (``URL``, tables in ``SCHEMA``, the
connection named ``APPLICATION``, which is also its consumer's name in the Redis group,
with the server ``OPTIONS`` of the benchmark's connections). It consumes on a thread of its
own, prints ``ready`` once that started, then obeys lines on stdin:

- ``held``: prints ``held`` and the partitions its consumer holds now
  (``held_partitions``: the RabbitMQ partition locks or the Redis leases), space-separated.

It stops consuming and exits at the end of stdin (giving its partitions up).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import sqlalchemy as sa
from tactical import DomainEvent, JsonCodec
from tactical.outbox import InboxConsumer
from tactical.sqlalchemy import SqlAlchemyUnitOfWork


class Ticked(DomainEvent):
    """The benchmark's event: a counter ticked."""

    counter: str
    count: int


def codec() -> JsonCodec:
    """The codec both sides use (the event under a stable name)."""
    made = JsonCodec()
    made.register(Ticked, name="bench.Ticked")
    return made


def _noted(event: Ticked, uow: SqlAlchemyUnitOfWork) -> None:
    """The handler: nothing but the inbox row, so the consumer's own cost is measured."""


def main(argv: list[str]) -> None:
    """Consume as the module's docstring says."""
    broker, name, partitions, url, schema, application, options = argv
    engine = sa.create_engine(
        url,
        connect_args={
            "connect_timeout": 3,
            "application_name": application,
            "options": f"-csearch_path={schema} {options}",
        },
    )
    # One codec for the process, as an application has: a codec generates its encoders and
    # decoders per class on first use, milliseconds that a codec per message pays each time.
    shared = codec()
    inbox = InboxConsumer(lambda: SqlAlchemyUnitOfWork(engine, codec=shared), name)
    inbox.subscribe(Ticked, _noted)
    consumer: Any
    if broker == "rabbitmq":
        from tactical.outbox.rabbitmq import RabbitMQConsumer

        consumer = RabbitMQConsumer(
            inbox, queue=name, exchange=name, partitions=int(partitions), prefetch=50
        )
    else:
        import redis

        from tactical.outbox.redis_streams import RedisStreamConsumer

        client = redis.Redis(host="127.0.0.1", socket_timeout=5)
        consumer = RedisStreamConsumer(
            inbox, client, stream=name, consumer=application, partitions=int(partitions), lease=3.0
        )
    stop = threading.Event()
    # The consumer's connection is used on this thread only; the main thread only reads
    # which partitions it holds.
    consuming = threading.Thread(
        target=consumer.run, args=(stop,), kwargs={"poll_interval": 0.05}, name="consumer"
    )
    consuming.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "held":
            print(" ".join(["held", *map(str, sorted(consumer.held_partitions))]), flush=True)
    stop.set()
    consuming.join()
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
