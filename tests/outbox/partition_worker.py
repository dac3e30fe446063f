"""A partitioned consumer in a process of its own, for the tests that SIGKILL one.

``python -m tests.outbox.partition_worker BROKER API NAME PARTITIONS DATABASE_URL`` consumes
the partitions of ``NAME`` (the exchange and queue prefix on RabbitMQ, the stream on Redis)
with the mirroring handler, into the database, until SIGTERM (or SIGKILL). It prints
``ready`` once it consumes, then ``held`` and the partitions it holds each time they change
(``held 0 3 5``; ``held`` alone for none).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Any

import redis
import redis.asyncio as redis_async
from sqlalchemy.ext.asyncio import create_async_engine
from tests.outbox.brokers import AMQP_URL
from tests.outbox.helpers import mirror_tick, mirroring

import sqlalchemy as sa
from tactical._flow import run_async
from tactical.outbox import AsyncInboxConsumer, InboxConsumer
from tactical.outbox.rabbitmq import AsyncRabbitMQConsumer, RabbitMQConsumer
from tactical.outbox.redis_streams import AsyncRedisStreamConsumer, RedisStreamConsumer
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork
from tactical.testing import CounterTicked

LEASE = 1.0
"""The Redis consumers' lease in these tests (seconds)."""

_LOOK = 0.05  # seconds between two looks at the partitions held


def _report(held: frozenset[int], reported: frozenset[int] | None) -> frozenset[int]:
    """Print ``held`` if it is news."""
    if held != reported:
        print("held", *sorted(held), flush=True)
    return held


def _reporting(consumer: Any, stop: threading.Event) -> None:
    reported = None
    while not stop.wait(_LOOK):
        reported = _report(consumer.held_partitions, reported)


def _sync(broker: str, name: str, partitions: int, url: str) -> None:
    engine = sa.create_engine(url)
    inbox = InboxConsumer(lambda: SqlAlchemyUnitOfWork(engine), "mirror")
    inbox.subscribe(CounterTicked, mirror_tick)
    consumer: Any
    if broker == "rabbitmq":
        consumer = RabbitMQConsumer(
            inbox, AMQP_URL, queue=name, exchange=name, partitions=partitions, heartbeat=2
        )
    else:
        client = redis.Redis(host="127.0.0.1", socket_timeout=2, socket_connect_timeout=2)
        consumer = RedisStreamConsumer(
            inbox, client, stream=name, partitions=partitions, lease=LEASE
        )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    threading.Thread(target=_reporting, args=(consumer, stop), daemon=True).start()
    consumer.run(stop, poll_interval=0.1, initial_backoff=0.1, max_backoff=1.0)


async def _async(broker: str, name: str, partitions: int, url: str) -> None:
    async_url = sa.make_url(url).set(drivername="postgresql+psycopg")
    engine = create_async_engine(async_url)
    inbox = AsyncInboxConsumer(lambda: AsyncSqlAlchemyUnitOfWork(engine), "mirror")

    async def mirror(event: CounterTicked, uow: AsyncSqlAlchemyUnitOfWork) -> None:
        await run_async(mirroring(event, uow), _awaited)

    inbox.subscribe(CounterTicked, mirror)
    consumer: Any
    if broker == "rabbitmq":
        consumer = AsyncRabbitMQConsumer(
            inbox, AMQP_URL, queue=name, exchange=name, partitions=partitions, heartbeat=2
        )
    else:
        client = redis_async.Redis(host="127.0.0.1", socket_timeout=2, socket_connect_timeout=2)
        consumer = AsyncRedisStreamConsumer(
            inbox, client, stream=name, partitions=partitions, lease=LEASE
        )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)

    async def reporting() -> None:
        reported = None
        while not stop.is_set():
            reported = _report(consumer.held_partitions, reported)
            await asyncio.sleep(_LOOK)

    watch = asyncio.create_task(reporting())
    await consumer.run(stop, poll_interval=0.1, initial_backoff=0.1, max_backoff=1.0)
    await watch


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def main(argv: list[str]) -> None:
    """Consume as the module's docstring says."""
    broker, api, name, partitions, url = argv
    if api == "sync":
        _sync(broker, name, int(partitions), url)
    else:
        asyncio.run(_async(broker, name, int(partitions), url))


if __name__ == "__main__":
    main(sys.argv[1:])
