"""Who reads which partition stream: leases in Redis, shared fairly by the live consumers.

A consumer group's entries of one stream would be spread over all the group's consumers,
which breaks per-aggregate order. A partitioned Redis consumer therefore reads a partition's
stream only while it holds that partition's lease: a key set with ``SET NX PX`` to a token
of its own, renewed (compare and ``PEXPIRE``, in a script) every third of the lease,
deleted (compare and ``DEL``) when the consumer stops or gives the partition up, and
expiring by itself when the consumer dies. The live consumers of a group announce
themselves in a sorted set (score: when each was last seen, on Redis's clock), so each
knows its fair share, ``ceil(partitions / consumers)``: one that holds more gives some up,
one that holds fewer takes free ones. On taking a partition, a consumer first claims every
entry the previous holders left pending (``XAUTOCLAIM``), and reads those before new ones.

Everything here is a flow (:mod:`tactical._flow`) of Redis calls, run by the sync and the
async consumer alike.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from uuid import uuid4

import redis

from tactical._flow import Flow
from tactical.outbox._broker_partitions import (
    PartitionMismatchError,
    partition_stream,
    partitions_key,
)

__all__ = ["Call", "PartitionLeases", "Pause", "RedisOp", "check_partitions_key"]

_log = logging.getLogger("tactical.outbox")

# Renew or release a lease only if it is still this consumer's.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)


@dataclass(frozen=True, slots=True)
class Call:
    """Call the Redis client's method ``name``: its reply, or the awaitable of it."""

    name: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict[str, Any])

    def start(self, client: Any, _inbox: Any) -> Any:
        return getattr(client, self.name)(*self.args, **self.kwargs)


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait ``seconds`` (a consumer that holds no partition has nothing to block on)."""

    seconds: float


RedisOp: TypeAlias = Call | Pause


def check_partitions_key(stream: str, partitions: int, who: str) -> Flow[Call, None]:
    """Record ``partitions`` as the split of ``stream``, or refuse if another was recorded.

    Raises:
        PartitionMismatchError: ``stream`` is recorded as split into another number.
    """
    key = partitions_key(stream)
    if (yield Call("set", (key, partitions), {"nx": True})):
        return
    stored: bytes | None = yield Call("get", (key,))
    if stored is not None and stored.decode() != str(partitions):
        raise PartitionMismatchError(
            f"stream {stream!r} is split into {stored.decode()} partitions (key {key!r}), "
            f"but this {who} is configured with {partitions}: give the publisher and every "
            "consumer the same number of partitions (or delete the key once the partition "
            "streams are drained, to change it)"
        )


class PartitionLeases:
    """The partitions one consumer of a group holds, and the flows that keep them fair.

    Args:
        stream: The stream's key (the partitions are ``stream:0`` ...).
        group: The consumer group.
        consumer: The consumer's name in the group (pending entries are claimed to it).
        partitions: How many partitions there are.
        lease: Seconds a lease lasts unless renewed.
        label: Who logs.
        report: Told the partitions held after each balance and each release (the
            ownership gauge).
    """

    def __init__(
        self,
        *,
        stream: str,
        group: str,
        consumer: str,
        partitions: int,
        lease: float,
        label: str,
        report: Callable[[frozenset[int]], None] | None = None,
    ) -> None:
        self.stream = stream
        self._report = report
        self.group = group
        self.consumer = consumer
        self.partitions = partitions
        self.token = f"{consumer}/{uuid4().hex}"
        self.owned: set[int] = set()
        self._lease_ms = max(1, int(lease * 1000))
        self._renew_every = lease / 3
        self._renewed = -math.inf
        self._label = label
        self._checked = False
        self._groups: set[int] = set()
        # Where this consumer starts looking for free partitions, so that consumers started
        # together do not all reach for partition 0 first.
        self._start = zlib.crc32(self.token.encode()) % partitions

    def stream_of(self, partition: int) -> str:
        """The key of ``partition``'s stream."""
        return partition_stream(self.stream, partition)

    def _lease_key(self, partition: int) -> str:
        return f"{partition_stream(self.stream, partition)}:lease:{self.group}"

    def _members_key(self) -> str:
        return f"{self.stream}:consumers:{self.group}"

    def due(self) -> bool:
        """Whether the leases are to be renewed (a third of the lease went by)."""
        return time.monotonic() - self._renewed >= self._renew_every

    def balance(self) -> Flow[Call, None]:
        """Announce this consumer, renew its leases, and give up or take its fair share.

        A lease found taken by another (this consumer was paused longer than the lease) is
        dropped: the entries of that partition left pending here are the new holder's.
        """
        if not self._checked:
            yield from check_partitions_key(self.stream, self.partitions, "consumer")
            self._checked = True
        self._renewed = time.monotonic()
        seconds, microseconds = yield Call("time")
        now = int(seconds) * 1000 + int(microseconds) // 1000
        members = self._members_key()
        yield Call("zadd", (members, {self.token: now}))
        yield Call("zremrangebyscore", (members, "-inf", now - self._lease_ms))
        yield Call("pexpire", (members, 3 * self._lease_ms))
        alive: int = yield Call("zcard", (members,))
        share = math.ceil(self.partitions / max(1, alive))
        for partition in sorted(self.owned):
            key = self._lease_key(partition)
            renewed = yield Call("eval", (_RENEW, 1, key, self.token, self._lease_ms))
            if not renewed:
                self.owned.discard(partition)
                _log.warning(
                    "%s lost its lease on partition %d of stream %r (held longer than the "
                    "lease without renewing it): another consumer handles it now",
                    self._label,
                    partition,
                    self.stream,
                )
        while len(self.owned) > share:
            yield from self.release(max(self.owned))
        for partition in sorted(self.owned):
            # Entries idle at another consumer for a whole lease are orphans (read by a
            # holder that had lost the lease while it waited for the read): claimed here,
            # so that they are handled rather than left pending.
            yield from self._claim(partition, min_idle_ms=self._lease_ms)
        for step in range(self.partitions):
            if len(self.owned) >= share:
                break
            partition = (self._start + step) % self.partitions
            if partition in self.owned:
                continue
            taken = yield Call(
                "set",
                (self._lease_key(partition), self.token),
                {"nx": True, "px": self._lease_ms},
            )
            if taken:
                claimed = yield from self._claim(partition)
                self.owned.add(partition)
                _log.info(
                    "%s took partition %d of stream %r (%d pending entr%s claimed)",
                    self._label,
                    partition,
                    self.stream,
                    claimed,
                    "y" if claimed == 1 else "ies",
                )
        self._reported()

    def _reported(self) -> None:
        if self._report is not None:
            self._report(frozenset(self.owned))

    def _claim(self, partition: int, min_idle_ms: int = 0) -> Flow[Call, int]:
        """Create the group on the partition's stream if needed; claim its pending entries.

        Only those idle for ``min_idle_ms`` at least (0: every one).
        """
        stream = self.stream_of(partition)
        if partition not in self._groups:
            try:
                yield Call("xgroup_create", (stream, self.group), {"id": "0", "mkstream": True})
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
            self._groups.add(partition)
        claimed = 0
        start: bytes | str = "0-0"
        while True:
            reply: Any = yield Call(
                "xautoclaim",
                (stream, self.group, self.consumer, min_idle_ms),
                {"start_id": start, "count": 1000},
            )
            # redis-py drops the cursor from a JUSTID reply: the entries come along.
            start, entries = reply[0], reply[1]
            claimed += len(entries)
            if start in (b"0-0", "0-0"):
                return claimed

    def release(self, partition: int) -> Flow[Call, None]:
        """Give ``partition`` up (its lease is deleted if still this consumer's)."""
        self.owned.discard(partition)
        yield Call("eval", (_RELEASE, 1, self._lease_key(partition), self.token))
        self._reported()
        _log.info("%s gave up partition %d of stream %r", self._label, partition, self.stream)

    def release_all(self) -> Flow[Call, None]:
        """Give every partition up and leave the group's members: others take over at once."""
        for partition in sorted(self.owned):
            yield from self.release(partition)
        yield Call("zrem", (self._members_key(), self.token))
        self._renewed = -math.inf
