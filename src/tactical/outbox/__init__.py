"""Transactional outbox relay and idempotent consumers (extra ``sql``; brokers are extras).

:class:`OutboxRelay` moves the events the SQL unit of work wrote to ``tactical_outbox`` to
a :class:`Publisher`: the in-process :class:`EventBusPublisher` here, RabbitMQ in
:mod:`tactical.outbox.rabbitmq` (extra ``rabbitmq``) and Redis Streams in
:mod:`tactical.outbox.redis_streams` (extra ``redis``). :class:`AsyncOutboxRelay` does the
same on asyncio (extra ``async``), to an :class:`AsyncPublisher`. :class:`InboxConsumer` and
:class:`AsyncInboxConsumer` handle each delivered event once per consumer.
:class:`TimerWorker` and :class:`AsyncTimerWorker` move due durable timers
(``tactical_scheduled``) into the outbox.

.. versionadded:: 0.1.0
"""

from tactical._exports import publish as _publish
from tactical._extras import missing_extra

# Only checks that SQLAlchemy is installed (the rabbitmq and redis extras include it).
try:
    import sqlalchemy as _sqlalchemy  # noqa: F401  # pyright: ignore[reportUnusedImport]
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.outbox", "sql") from _missing

from tactical._tracing import Trace, current_trace
from tactical.outbox._async_inbox import AsyncInboxConsumer
from tactical.outbox._async_relay import AsyncOutboxRelay
from tactical.outbox._async_timer_worker import AsyncTimerWorker
from tactical.outbox._broker_partitions import DEFAULT_BROKER_PARTITIONS, PartitionMismatchError
from tactical.outbox._bus_publisher import EventBusPublisher
from tactical.outbox._inbox import DEFAULT_INBOX_RETENTION, InboxConsumer, Outcome, purge_inbox
from tactical.outbox._leases import DEFAULT_LEASE_TTL, DEFAULT_PARTITIONS
from tactical.outbox._message import (
    HEADER_NAMES,
    AsyncPublisher,
    MessagingDestination,
    OutboxMessage,
    Publisher,
    PublishError,
    UndeliverableError,
)
from tactical.outbox._parking import ParkedRow
from tactical.outbox._partitions import partition_key, partition_of
from tactical.outbox._relay import DEFAULT_DATABASE_TIMEOUT, RELAY_LOCK_KEY, OutboxRelay
from tactical.outbox._timer_flow import TIMER_AGGREGATE_TYPE, ParkedTimer
from tactical.outbox._timer_worker import TimerWorker
from tactical.sqlalchemy._schema import dead_letters_table, inbox_table

__all__ = [
    "DEFAULT_BROKER_PARTITIONS",
    "DEFAULT_DATABASE_TIMEOUT",
    "DEFAULT_INBOX_RETENTION",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_PARTITIONS",
    "HEADER_NAMES",
    "RELAY_LOCK_KEY",
    "TIMER_AGGREGATE_TYPE",
    "AsyncInboxConsumer",
    "AsyncOutboxRelay",
    "AsyncPublisher",
    "AsyncTimerWorker",
    "EventBusPublisher",
    "InboxConsumer",
    "MessagingDestination",
    "OutboxMessage",
    "OutboxRelay",
    "Outcome",
    "ParkedRow",
    "ParkedTimer",
    "PartitionMismatchError",
    "PublishError",
    "Publisher",
    "TimerWorker",
    "Trace",
    "UndeliverableError",
    "current_trace",
    "dead_letters_table",
    "inbox_table",
    "partition_key",
    "partition_of",
    "purge_inbox",
]

_publish(__name__, globals(), __all__)
