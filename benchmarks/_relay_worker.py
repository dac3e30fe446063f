"""One partitioned relay process of the ``relay`` benchmark (not a benchmark itself).

``python -m benchmarks._relay_worker CONFIG`` builds an ``OutboxRelay`` with
``partitions``, ``lease_ttl`` and ``name`` from ``CONFIG`` (a JSON object: PostgreSQL
``url``, ``schema``, ``options`` and ``application`` name of its connection,
``partitions``, ``lease_ttl``, ``relay`` name, ``batch_size``, and ``target``, the Redis
stream and RabbitMQ exchange to publish to), prints ``ready``, then obeys lines on stdin:

- ``settle``: one batch (on an empty outbox: its heartbeat, and its leases claimed or given
  up towards its fair share); prints ``settled``;
- ``go DESTINATION`` (``nowhere``, ``redis`` or ``rabbitmq``): batches published there
  until one publishes nothing (its partitions are drained); prints
  ``done PUBLISHED CPU_SECONDS``.

It exits at the end of stdin.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from tactical.outbox import OutboxRelay, Publisher


class DropPublisher:
    """A publisher to nowhere: what is left is reading and marking the rows."""

    def publish(self, messages: Sequence[Any], /) -> None:
        """Drop ``messages``."""


def publisher(destination: str, target: str) -> Publisher:
    """The publisher of ``destination``, to the stream or exchange ``target``."""
    if destination == "rabbitmq":
        from tactical.outbox.rabbitmq import RabbitMQPublisher

        return RabbitMQPublisher(exchange=target)
    if destination == "redis":
        import redis

        from tactical.outbox.redis_streams import RedisStreamPublisher

        return RedisStreamPublisher(redis.Redis(host="127.0.0.1", socket_timeout=5), target)
    return DropPublisher()


class _Switch:
    """The publisher of the destination of the current drain (each made on first use)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.destination = "nowhere"
        self.made: dict[str, Publisher] = {}

    def publish(self, messages: Sequence[Any], /) -> None:
        if self.destination not in self.made:
            self.made[self.destination] = publisher(self.destination, self.target)
        self.made[self.destination].publish(messages)

    def close(self) -> None:
        for made in self.made.values():
            close = getattr(made, "close", None)
            if close is not None:
                close()


def main(argv: list[str]) -> None:
    """Relay as the module's docstring says."""
    config: dict[str, Any] = json.loads(argv[0])
    engine = sa.create_engine(
        config["url"],
        pool_size=1,
        connect_args={
            "connect_timeout": 3,
            "application_name": config["application"],
            "options": f"-csearch_path={config['schema']} {config['options']}",
        },
    )
    switch = _Switch(config["target"])
    relay = OutboxRelay(
        engine,
        switch,
        batch_size=config["batch_size"],
        partitions=config["partitions"],
        lease_ttl=config["lease_ttl"],
        name=config["relay"],
    )
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "settle":
            relay.relay_once()
            print("settled", flush=True)
        elif line.startswith("go "):
            switch.destination = line.split()[1]
            cpu = time.process_time()
            published = 0
            while count := relay.relay_once():
                published += count
            print(f"done {published} {time.process_time() - cpu:.4f}", flush=True)
    switch.close()
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
