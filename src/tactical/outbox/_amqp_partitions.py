"""Who consumes which partition queue on RabbitMQ: locks held by connections, shared fairly.

A queue with ``x-single-active-consumer`` gives one consumer at a time, but RabbitMQ 3.x
keeps its first subscriber active for as long as it lives (consumer priorities pick the
active one only on quorum queues, from 3.13), and an AMQP 0-9-1 client is not told whether
it is the active one. Consumers that all subscribe to every partition queue would thus
leave the first of them with all the work. So a partitioned consumer subscribes to a
partition's queue only while it holds that partition's *lock*: an exclusive queue
``<queue>.<p>.owner``, which one connection at a time can declare (another gets
``RESOURCE_LOCKED``) and which the broker deletes when that connection closes, as it does
the connection's subscriptions (at once after a crash, within the heartbeat for a host that
vanished). The live consumers are counted by the broker too: each subscribes to the
members queue ``<queue>.consumers`` (which nothing is routed to), whose consumer count
``queue.declare-ok`` reports. Each consumer holds at most its fair share,
``ceil(partitions / consumers)``: one that holds more gives partitions up, one that holds
fewer takes partitions whose queue has no consumer, first locking them.

A partition is given up between two deliveries: its channel is closed, which makes the
broker requeue what it had sent ahead on it, in queue order, and only then its lock is
deleted; the next holder subscribes once it took the lock, so it receives the partition
from its first unacknowledged message. The partition queues keep
``x-single-active-consumer`` as well, so that the broker itself never delivers a queue to
two consumers at once, whatever the timing of a crash.

Everything here is a flow (:mod:`tactical._flow`) of operations on the consuming
connection, carried out by the sync and the async consumer alike.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from tactical._flow import Flow
from tactical.outbox._broker_partitions import partition_queue

__all__ = [
    "MEMBERS_ARGUMENTS",
    "PARTITION_ARGUMENTS",
    "Consuming",
    "Count",
    "Join",
    "Leave",
    "Lock",
    "PartitionLocks",
    "PartitionOp",
    "Subscribe",
    "Unlock",
    "Unsubscribe",
    "binding_keys",
]

_log = logging.getLogger("tactical.outbox")

PARTITION_ARGUMENTS: dict[str, Any] = {"x-single-active-consumer": True}
"""The arguments a partition's queue is declared with."""

MEMBERS_ARGUMENTS: dict[str, Any] = {"x-max-length": 0}
"""The members queue's: it holds no message (one published to it by name is dropped)."""


def binding_keys(partition: int, routing_keys: tuple[str, ...]) -> tuple[str, ...]:
    """The keys ``partition``'s queue is bound with: each of ``routing_keys`` after ``<p>.``."""
    return tuple(f"{partition}.{key}" for key in routing_keys)


@dataclass(frozen=True, slots=True)
class Join:
    """Declare durable ``queue`` with ``arguments`` and subscribe to it (acknowledging
    nothing): one more live consumer counted."""

    queue: str
    arguments: dict[str, Any]

    def start(self, target: Any) -> Any:
        return target.join(self.queue, self.arguments)


@dataclass(frozen=True, slots=True)
class Leave:
    """Cancel the subscription to the members queue."""

    def start(self, target: Any) -> Any:
        return target.leave()


@dataclass(frozen=True, slots=True)
class Count:
    """Declare durable ``queue`` with ``arguments`` (idempotent): how many consumers it has."""

    queue: str
    arguments: dict[str, Any]

    def start(self, target: Any) -> Any:
        return target.count(self.queue, self.arguments)


@dataclass(frozen=True, slots=True)
class Lock:
    """Open ``partition``'s channel and declare the exclusive ``queue`` on it.

    True if declared (the lock is this connection's); False if another connection holds
    it (the broker closed the channel with ``RESOURCE_LOCKED``).
    """

    partition: int
    queue: str

    def start(self, target: Any) -> Any:
        return target.lock(self.partition, self.queue)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Bind ``queue`` to ``exchange`` with ``keys`` (again: a queue deleted and declared
    anew has no binding), then consume it on ``partition``'s channel, with the consumer's
    prefetch."""

    partition: int
    queue: str
    exchange: str
    keys: tuple[str, ...]

    def start(self, target: Any) -> Any:
        return target.subscribe(self.partition, self.queue, self.exchange, self.keys)


@dataclass(frozen=True, slots=True)
class Consuming:
    """Whether ``partition``'s subscription still stands: its channel is open and the broker
    did not cancel its consumer (it does when the queue is deleted, or its node goes down)."""

    partition: int

    def start(self, target: Any) -> Any:
        return target.consuming(self.partition)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Close ``partition``'s channel: the broker requeues what it sent ahead, in order.

    What arrived from it but was not handled is dropped (the broker has it back).
    """

    partition: int

    def start(self, target: Any) -> Any:
        return target.unsubscribe(self.partition)


@dataclass(frozen=True, slots=True)
class Unlock:
    """Delete the lock queue ``queue`` (this connection's): another consumer may take it."""

    queue: str

    def start(self, target: Any) -> Any:
        return target.unlock(self.queue)


PartitionOp: TypeAlias = Join | Leave | Count | Lock | Subscribe | Consuming | Unsubscribe | Unlock


class PartitionLocks:
    """The partitions one consumer holds on its connection, and the flows that keep them fair.

    Args:
        queue: The prefix of the partition queues (``<queue>.0`` ...).
        partitions: How many partitions there are.
        interval: Seconds between two looks at the members and the partitions.
        label: Who logs.
        exchange: The exchange the partition queues are bound to.
        routing_keys: The consumer's binding keys (``<p>.<key>`` binds partition ``p``).
        report: Called with the partitions owned whenever they changed (the ownership gauge).
    """

    def __init__(
        self,
        *,
        queue: str,
        partitions: int,
        interval: float,
        label: str,
        exchange: str,
        routing_keys: tuple[str, ...],
        report: Callable[[frozenset[int]], None] = lambda owned: None,
    ) -> None:
        self.queue = queue
        self.partitions = partitions
        self.interval = interval
        self.owned: set[int] = set()
        self._label = label
        self._exchange = exchange
        self._routing_keys = routing_keys
        self._report = report
        self._joined = False
        self._balanced = -math.inf
        # Where this consumer starts looking for free partitions, so that consumers started
        # together do not all reach for partition 0 first.
        self._start = random.randrange(partitions)  # noqa: S311 - not for security

    @property
    def members(self) -> str:
        """The members queue's name."""
        return f"{self.queue}.consumers"

    def lock_of(self, partition: int) -> str:
        """The name of ``partition``'s lock queue."""
        return f"{partition_queue(self.queue, partition)}.owner"

    def due(self) -> bool:
        """Whether it is time to look at the members and the partitions again."""
        return time.monotonic() - self._balanced >= self.interval

    def balance(self) -> Flow[PartitionOp, None]:
        """Count the live consumers, then give partitions up or take free ones, to a fair share."""
        self._balanced = time.monotonic()
        if not self._joined:
            yield Join(self.members, MEMBERS_ARGUMENTS)
            self._joined = True
        for partition in sorted(self.owned):
            # A lock held without its subscription would keep the partition from everyone:
            # give it up, so that it is taken again (by this consumer or another).
            if not (yield Consuming(partition)):
                _log.warning(
                    "%s: the subscription to partition %d of queues %r ended (the broker "
                    "cancelled it or closed its channel): giving the partition up",
                    self._label,
                    partition,
                    self.queue,
                )
                yield from self.release(partition)
        alive: int = yield Count(self.members, MEMBERS_ARGUMENTS)
        share = math.ceil(self.partitions / max(1, alive))
        while len(self.owned) > share:
            yield from self.release(max(self.owned))
        for step in range(self.partitions):
            if len(self.owned) >= share:
                break
            partition = (self._start + step) % self.partitions
            if partition in self.owned:
                continue
            queue = partition_queue(self.queue, partition)
            if (yield Count(queue, PARTITION_ARGUMENTS)):
                continue  # another consumer's (or being handed over)
            if not (yield Lock(partition, self.lock_of(partition))):
                continue
            self.owned.add(partition)
            keys = binding_keys(partition, self._routing_keys)
            yield Subscribe(partition, queue, self._exchange, keys)
            self._report(frozenset(self.owned))
            _log.info(
                "%s took partition %d of queues %r (%d consumer%s)",
                self._label,
                partition,
                self.queue,
                alive,
                "" if alive == 1 else "s",
            )

    def release(self, partition: int) -> Flow[PartitionOp, None]:
        """Give ``partition`` up: unsubscribe (its messages go back), then unlock it."""
        self.owned.discard(partition)
        self._report(frozenset(self.owned))
        yield Unsubscribe(partition)
        yield Unlock(self.lock_of(partition))
        _log.info("%s gave up partition %d of queues %r", self._label, partition, self.queue)

    def release_all(self) -> Flow[PartitionOp, None]:
        """Give every partition up and leave the members: the others take over at once."""
        for partition in sorted(self.owned):
            yield from self.release(partition)
        if self._joined:
            self._joined = False
            yield Leave()
        self._balanced = -math.inf

    def forget(self) -> None:
        """The connection closed: the broker dropped its locks and subscriptions."""
        self.owned.clear()
        self._report(frozenset())
        self._joined = False
        self._balanced = -math.inf
