"""Transactional outbox relay and idempotent consumers (extra ``sql``; brokers are extras).

:class:`OutboxRelay` moves the events the SQL unit of work wrote to ``tactical_outbox`` to
a :class:`Publisher`: the in-process :class:`EventBusPublisher` here, RabbitMQ in
:mod:`tactical.outbox.rabbitmq` (extra ``rabbitmq``) and Redis Streams in
:mod:`tactical.outbox.redis_streams` (extra ``redis``).

.. versionadded:: 0.1.0
"""

from tactical.outbox._bus_publisher import EventBusPublisher
from tactical.outbox._message import HEADER_NAMES, OutboxMessage, Publisher, PublishError
from tactical.outbox._relay import RELAY_LOCK_KEY, OutboxRelay

__all__ = [
    "HEADER_NAMES",
    "RELAY_LOCK_KEY",
    "EventBusPublisher",
    "OutboxMessage",
    "OutboxRelay",
    "PublishError",
    "Publisher",
]
