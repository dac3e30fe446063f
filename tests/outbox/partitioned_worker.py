"""A partitioned relay in a process of its own, for the tests that SIGKILL one.

Run as ``python -m tests.outbox.partitioned_worker URL STREAM NAME PARTITIONS LEASE_TTL``:
it relays the outbox at ``URL`` to the Redis stream ``STREAM`` as the relay ``NAME`` until
it receives SIGTERM (a clean stop, which releases its partitions) or is killed.
"""

from __future__ import annotations

import signal
import sys
import threading

import redis

import sqlalchemy as sa
from tactical.outbox import OutboxRelay
from tactical.outbox.redis_streams import RedisStreamPublisher


def main(url: str, stream: str, name: str, partitions: str, lease_ttl: str) -> None:
    """Relay until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = sa.create_engine(url, connect_args={"connect_timeout": 5})
    client = redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5)
    relay = OutboxRelay(
        engine,
        RedisStreamPublisher(client, stream),
        batch_size=20,
        partitions=int(partitions),
        lease_ttl=float(lease_ttl),
        name=name,
    )
    print("ready", flush=True)
    relay.run(stop, idle_interval=0.1, max_backoff=0.5)
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])
