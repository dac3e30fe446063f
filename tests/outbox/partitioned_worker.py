"""A partitioned relay in a process of its own, for the tests that SIGKILL one.

Run as ``python -m tests.outbox.partitioned_worker URL STREAM NAME PARTITIONS LEASE_TTL
[BROKER BROKER_PARTITIONS]``: it relays the outbox at ``URL`` as the relay ``NAME`` until it
receives SIGTERM (a clean stop, which releases its partitions) or is killed. Without
``BROKER`` it publishes to the one Redis stream ``STREAM``; with ``redis`` or ``rabbitmq``, to
``BROKER_PARTITIONS`` partition streams ``STREAM:N``, or partition queues of the exchange
``STREAM`` (as :mod:`tests.outbox.partition_worker`'s consumers read them).
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

import redis
from tests.outbox.brokers import AMQP_URL

import sqlalchemy as sa
from tactical.outbox import OutboxRelay
from tactical.outbox.rabbitmq import RabbitMQPublisher
from tactical.outbox.redis_streams import RedisStreamPublisher


def main(
    url: str,
    stream: str,
    name: str,
    partitions: str,
    lease_ttl: str,
    broker: str = "stream",
    broker_partitions: str = "1",
) -> None:
    """Relay until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    publisher: Any
    if broker == "rabbitmq":
        publisher = RabbitMQPublisher(
            AMQP_URL, exchange=stream, partitions=int(broker_partitions), timeout=5
        )
    elif broker == "redis":
        publisher = RedisStreamPublisher(client, stream, partitions=int(broker_partitions))
    else:
        publisher = RedisStreamPublisher(client, stream)
    relay = OutboxRelay(
        engine,
        publisher,
        batch_size=20,
        partitions=int(partitions),
        lease_ttl=float(lease_ttl),
        name=name,
    )
    print("ready", flush=True)
    relay.run(stop, idle_interval=0.1, max_backoff=0.5)
    if broker == "rabbitmq":
        publisher.close()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])
