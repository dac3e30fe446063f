"""A partitioned relay in a process of its own, for the tests that SIGKILL one.

Run as ``python -m tests.outbox.partitioned_worker URL STREAM NAME PARTITIONS LEASE_TTL
[BROKER BROKER_PARTITIONS [API]]``: it relays the outbox at ``URL`` as the relay ``NAME`` until
it receives SIGTERM (a clean stop, which releases its partitions) or is killed. Without
``BROKER`` it publishes to the one Redis stream ``STREAM``; with ``redis`` or ``rabbitmq``, to
``BROKER_PARTITIONS`` partition streams ``STREAM:N``, or partition queues of the exchange
``STREAM`` (as :mod:`tests.outbox.partition_worker`'s consumers read them); ``stream`` names
the one stream explicitly. ``API`` is ``sync`` (the default: :class:`OutboxRelay`, pika,
redis-py) or ``async`` (:class:`AsyncOutboxRelay` on psycopg's async mode, aio-pika,
``redis.asyncio``).
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

import sqlalchemy as sa
from tactical.outbox import AsyncOutboxRelay, OutboxRelay
from tactical.outbox.rabbitmq import AsyncRabbitMQPublisher, RabbitMQPublisher
from tactical.outbox.redis_streams import AsyncRedisStreamPublisher, RedisStreamPublisher

BATCH_SIZE = 20


def publisher_for(api: str, broker: str, stream: str, partitions: int, client: Any) -> Any:
    """The ``api`` publisher (sync or async class, the same arguments) to ``broker``."""
    index = 0 if api == "sync" else 1
    if broker == "rabbitmq":
        amqp = (RabbitMQPublisher, AsyncRabbitMQPublisher)[index]
        return amqp(AMQP_URL, exchange=stream, partitions=partitions, timeout=5)
    streams = (RedisStreamPublisher, AsyncRedisStreamPublisher)[index]
    if broker == "redis":
        return streams(client, stream, partitions=partitions)
    return streams(client, stream)


def main(
    url: str,
    stream: str,
    name: str,
    partitions: str,
    lease_ttl: str,
    broker: str = "stream",
    broker_partitions: str = "1",
    api: str = "sync",
) -> None:
    """Relay until SIGTERM."""
    options: dict[str, Any] = {
        "batch_size": BATCH_SIZE,
        "partitions": int(partitions),
        "lease_ttl": float(lease_ttl),
        "name": name,
    }
    publishing = (broker, stream, int(broker_partitions))
    if api == "async":
        asyncio.run(_async(url, publishing, options))
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    publisher = publisher_for("sync", *publishing, client)
    relay = OutboxRelay(engine, publisher, **options)
    print("ready", flush=True)
    relay.run(stop, idle_interval=0.1, max_backoff=0.5)
    if broker == "rabbitmq":
        publisher.close()
    client.close()
    engine.dispose()


async def _async(url: str, publishing: tuple[str, str, int], options: dict[str, Any]) -> None:
    """The same relay on asyncio: AsyncOutboxRelay and the async publishers."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async_url = sa.make_url(url).set(drivername="postgresql+psycopg")
    engine = create_async_engine(async_url, connect_args={"connect_timeout": 5})
    client = redis_async.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    publisher = publisher_for("async", *publishing, client)
    relay = AsyncOutboxRelay(engine, publisher, **options)
    print("ready", flush=True)
    await relay.run(stop, idle_interval=0.1, max_backoff=0.5)
    if publishing[0] == "rabbitmq":
        await publisher.close()
    await client.aclose()
    await engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])
