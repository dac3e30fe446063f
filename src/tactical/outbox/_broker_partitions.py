"""Partitions on a broker: which queue or stream carries an event, and a refused mismatch.

A partitioned publisher sends every event of an aggregate to one partition (a RabbitMQ
queue, a Redis stream) chosen by :func:`~tactical.outbox.partition_of`; partitioned
consumers share the partitions, one consumer per partition at a time, so that each
aggregate's events are handled in order while the partitions are handled in parallel.
Publisher and consumers must agree on the number of partitions: what can be checked is
checked here.
"""

from __future__ import annotations

from tactical.outbox._message import OutboxMessage
from tactical.outbox._partitions import partition_of

__all__ = [
    "DEFAULT_BROKER_PARTITIONS",
    "PARTITIONS_HEADER",
    "PartitionMismatchError",
    "broker_partitions",
    "check_partition",
    "partition_queue",
    "partition_routing_key",
    "partition_stream",
    "partitions_key",
]

DEFAULT_BROKER_PARTITIONS: int = 8
"""The number of partitions the documentation recommends for a partitioned publisher and its
consumers: more than the consumers a service usually runs (each partition has one consumer
at a time), few enough that an idle partition costs nothing worth counting.

.. versionadded:: 0.2.0
"""

PARTITIONS_HEADER = "tactical-partitions"
"""The AMQP header in which a partitioned RabbitMQ publisher states its number of partitions."""


class PartitionMismatchError(ValueError):
    """A publisher and a consumer disagree on the number of partitions (or on the routing).

    The message names both numbers and where they were found. The delivery is left with the
    broker (requeued, or pending): it is not the message's fault, and a consumer configured
    with the publisher's number handles it.
    """


def broker_partitions(partitions: int | None) -> int | None:
    """``partitions`` checked: None (not partitioned) or an ``int`` of at least 1.

    Raises:
        TypeError: ``partitions`` is not an ``int`` (a ``bool`` is refused too).
        ValueError: ``partitions`` is below 1.
    """
    if partitions is not None:
        partition_of("", "", partitions)  # its own checks, with its own messages
    return partitions


def partition_queue(queue: str, partition: int) -> str:
    """The name of partition ``partition``'s queue of the consumers of ``queue``."""
    return f"{queue}.{partition}"


def partition_stream(stream: str, partition: int) -> str:
    """The key of partition ``partition``'s stream of ``stream``."""
    return f"{stream}:{partition}"


def partitions_key(stream: str) -> str:
    """The Redis key holding the number of partitions ``stream`` is split into."""
    return f"{stream}:partitions"


def partition_routing_key(message: OutboxMessage, partitions: int | None) -> str:
    """The routing key of ``message``: its event type, after its partition if partitioned.

    ``3.billing.Invoiced`` is event type ``billing.Invoiced`` in partition 3, which a queue
    bound with ``3.#`` or ``3.billing.#`` receives.
    """
    if partitions is None:
        return message.event_type
    partition = partition_of(message.aggregate_type, message.aggregate_id, partitions)
    return f"{partition}.{message.event_type}"


def check_partition(
    message: OutboxMessage,
    *,
    partition: int,
    partitions: int,
    stated: object,
    source: str,
) -> None:
    """Refuse ``message`` if it is not in the partition ``partitions`` consumers expect.

    Args:
        message: The delivered message.
        partition: The partition it was delivered from.
        partitions: The consumer's number of partitions.
        stated: The number of partitions the publisher stated with the message, if any.
        source: Where it came from, for the error (``queue 'billing.3'``).

    Raises:
        PartitionMismatchError: The publisher stated another number, or the message's
            aggregate belongs to another partition.
    """
    if stated is not None and str(stated) != str(partitions):
        raise PartitionMismatchError(
            f"event {message.event_id} from {source} was published into {stated} "
            f"partitions, but this consumer is configured with {partitions}: give the "
            "publisher and every consumer the same number of partitions"
        )
    belongs = partition_of(message.aggregate_type, message.aggregate_id, partitions)
    if belongs != partition:
        raise PartitionMismatchError(
            f"event {message.event_id} of aggregate {message.aggregate_type} "
            f"{message.aggregate_id} came from {source} (partition {partition}) but belongs "
            f"to partition {belongs} of {partitions}: the publisher splits events into "
            f"another number of partitions than this consumer's {partitions}"
        )
