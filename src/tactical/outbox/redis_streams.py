"""Redis Streams for the outbox (extra ``redis``): a publisher and a consumer-group loop.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeAlias, TypeVar, cast

from tactical._extras import missing_extra

try:
    import redis
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.outbox.redis_streams", "redis") from _missing

import redis.asyncio
from redis.typing import EncodableT, FieldT

from tactical._flow import Flow, run, run_async
from tactical._telemetry import NOOP
from tactical.outbox._async_inbox import AsyncInboxConsumer
from tactical.outbox._broker_partitions import (
    PartitionMismatchError,
    broker_partitions,
    check_partition,
    partition_stream,
)
from tactical.outbox._consumer_flow import (
    AsyncConsuming,
    Consuming,
    LoopOp,
    check_inbox,
    consumer_loop,
)
from tactical.outbox._inbox import InboxConsumer
from tactical.outbox._message import (
    MessagingDestination,
    OutboxMessage,
    PublishError,
    wire_forms,
)
from tactical.outbox._partitions import partition_of
from tactical.outbox._redis_leases import (
    Call,
    PartitionLeases,
    Pause,
    check_partitions_key,
)
from tactical.outbox._telemetry import delivered, record_consumer_partitions

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_STREAM",
    "AsyncRedisStreamConsumer",
    "AsyncRedisStreamPublisher",
    "RedisStreamConsumer",
    "RedisStreamPublisher",
]

if TYPE_CHECKING:
    from tactical.outbox._inbox_flow import InboxCore

_log = logging.getLogger("tactical.outbox")

DEFAULT_STREAM = "tactical:events"
"""The stream events are appended to unless another is named."""

DEFAULT_LEASE: float = 10.0
"""Seconds a partitioned Redis consumer's lease on a partition lasts unless renewed.

It renews its leases every third of it; the partitions of a consumer that died are taken
over by the others within about 1.4 times the lease.

.. versionadded:: 0.2.0
"""


class _StreamAppender:
    """What both Redis publishers decide: the entries of a batch, and what a failure means."""

    # Whether the publisher awaits its client (a redis.asyncio.Redis) or calls it.
    _asynchronous: ClassVar[bool] = False

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis,
        stream: str,
        maxlen: int | None,
        partitions: int | None,
    ) -> None:
        _socket_timeout(client, type(self).__name__, self._asynchronous)
        self._stream = stream
        self._maxlen = maxlen
        self._partitions = broker_partitions(partitions)
        self._checked = partitions is None
        self._address = _redis_address(client)

    @property
    def stream(self) -> str:
        """The stream's key (with ``partitions``: the prefix of the partitions' streams)."""
        return self._stream

    @property
    def partitions(self) -> int | None:
        """The number of partition streams events are appended to; None if not partitioned.

        .. versionadded:: 0.2.0
        """
        return self._partitions

    def messaging_destination(self, message: OutboxMessage, /) -> MessagingDestination:
        """Where ``message`` goes, for the relay's OpenTelemetry spans.

        ``redis`` (not one of the conventions' well-known systems, which name none for
        Redis), the stream's key (its partition's stream, if partitioned), the partition,
        and Redis's host and port.

        .. versionadded:: 0.2.0
        """
        host, _, port = self._address.rpartition(":")
        return MessagingDestination(
            "redis",
            self._stream_of(message),
            partition=self._partition_of(message),
            server_address=host if port.isdigit() else self._address,
            server_port=int(port) if port.isdigit() else None,
        )

    def _partition_of(self, message: OutboxMessage) -> int | None:
        if self._partitions is None:
            return None
        return partition_of(message.aggregate_type, message.aggregate_id, self._partitions)

    def _stream_of(self, message: OutboxMessage) -> str:
        partition = self._partition_of(message)
        return self._stream if partition is None else partition_stream(self._stream, partition)

    def _appending(self, messages: Sequence[OutboxMessage]) -> Flow[Call | _Append, None]:
        """Append the batch's entries in one pipeline; a Redis failure is a PublishError.

        A partitioned publisher first records its number of partitions in Redis, or finds
        it recorded (once): another number is refused.
        """
        if not messages:
            return
        entries = [
            (self._stream_of(message), entry)
            for message, entry in zip(messages, wire_forms(messages, _entry), strict=True)
        ]
        try:
            if not self._checked and self._partitions is not None:
                yield from check_partitions_key(self._stream, self._partitions, "publisher")
                self._checked = True
            yield _Append(entries, self._maxlen)
        except (redis.RedisError, PartitionMismatchError) as error:
            first = messages[0]
            raise PublishError(
                f"Redis at {self._address} did not append {len(messages)} "
                f"event(s) from {first.event_id} (outbox position {first.position}) to stream "
                f"{self._stream!r}: {type(error).__name__}: {error}"
            ) from error


class RedisStreamPublisher(_StreamAppender):
    """Appends outbox messages to a Redis stream (``XADD``), one entry per event, in order.

    Each entry has two fields: ``body`` (the event's JSON, as in the outbox) and ``headers``
    (:attr:`~tactical.outbox.OutboxMessage.headers` as a JSON object). A batch is sent as one
    pipeline; :meth:`publish` returns once Redis replied to every ``XADD``. How durable an entry
    is then depends on the server's persistence settings (``appendonly yes`` with
    ``appendfsync everysec`` or ``always`` for an outbox worth the name).

    Every wait is bounded by the client's ``socket_timeout`` (redis-py 8 defaults to 5 s; older
    versions to none, which is refused): a Redis that stops answering makes :meth:`publish`
    raise :class:`~tactical.outbox.PublishError` after it, once the client's own retries
    (``retry=``) are spent, and the relay reconnects on its next attempt.

    Args:
        client: The Redis client to use (one per relay thread is simplest), made with a
            ``socket_timeout`` (and ideally ``socket_connect_timeout`` and
            ``health_check_interval``).
        stream: The stream's key.
        maxlen: Trim the stream to about this many entries (``MAXLEN ~``); None keeps all.
            Trimming can drop entries that a slow consumer group has not read yet.
        partitions: Append each event to its aggregate's partition stream
            ``<stream>:<p>``, one of this many (:func:`~tactical.outbox.partition_of`), for
            partitioned consumers. The number is recorded in the key
            ``<stream>:partitions`` on the first batch; if another number is recorded there,
            :meth:`publish` raises :class:`~tactical.outbox.PublishError` naming both.
            None (the default): one stream.

    Raises:
        TypeError: ``client`` is not a sync ``redis.Redis`` (a ``redis.asyncio.Redis``,
            whose commands nothing would await, or a URL).
        ValueError: ``client`` has no ``socket_timeout``: a Redis that stopped answering
            would block the relay for ever; or ``partitions`` is below 1.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A client without ``socket_timeout`` is refused; ``partitions``.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str = DEFAULT_STREAM,
        *,
        maxlen: int | None = None,
        partitions: int | None = None,
    ) -> None:
        super().__init__(client, stream, maxlen, partitions)
        self._client = client

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Append ``messages`` to the stream, in order.

        Raises:
            UndeliverableError: Some messages cannot be encoded into an entry (a payload
                that is not encodable as UTF-8); checked before anything of the batch is
                sent, so nothing was.
            PublishError: Redis is unreachable, did not answer within the client's
                ``socket_timeout`` or refused an entry; the error names Redis's address, the
                stream and the batch's first event.
        """
        run(self._appending(messages), lambda op: op.start(self._client, None))


class AsyncRedisStreamPublisher(_StreamAppender):
    """:class:`RedisStreamPublisher` on ``redis.asyncio``: the same entries, awaited.

    Every wait is bounded by the client's ``socket_timeout`` (a client without one is
    refused); a failure is a :class:`~tactical.outbox.PublishError` naming Redis's address,
    and the next batch gets a new connection from the client's pool.

    Args:
        client: A ``redis.asyncio.Redis`` made with a ``socket_timeout``.
        stream: The stream's key.
        maxlen: Trim the stream to about this many entries (``MAXLEN ~``); None keeps all.
        partitions: As for :class:`RedisStreamPublisher`.

    Raises:
        TypeError: ``client`` is not a ``redis.asyncio.Redis`` (a sync ``redis.Redis``, or
            a URL).
        ValueError: ``client`` has no ``socket_timeout``, or ``partitions`` is below 1.

    .. versionadded:: 0.2.0
    """

    _asynchronous = True

    def __init__(
        self,
        client: redis.asyncio.Redis,
        stream: str = DEFAULT_STREAM,
        *,
        maxlen: int | None = None,
        partitions: int | None = None,
    ) -> None:
        super().__init__(client, stream, maxlen, partitions)
        self._client = client

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Append ``messages`` to the stream, in order (see :meth:`RedisStreamPublisher.publish`).

        Raises:
            UndeliverableError: Some messages cannot be encoded into an entry; nothing was sent.
            PublishError: Redis is unreachable, did not answer within ``socket_timeout`` or
                refused an entry.
        """
        await run_async(self._appending(messages), self._perform)

    async def _perform(self, op: Call | _Append) -> object:
        return await op.start(self._client, None)


def _entry(message: OutboxMessage) -> dict[FieldT, EncodableT]:
    # Both fields as UTF-8 bytes now, so that redis-py cannot fail to encode one mid-batch.
    return {"body": message.body, "headers": json.dumps(message.headers).encode()}


@dataclass(frozen=True, slots=True)
class _Append:
    """Append ``entries`` (stream, fields) in one pipeline: the replies, or their awaitable."""

    entries: list[tuple[str, dict[FieldT, EncodableT]]]
    maxlen: int | None

    def start(self, client: Any, _inbox: Any) -> Any:
        pipeline = client.pipeline(transaction=False)
        for stream, entry in self.entries:
            pipeline.xadd(stream, entry, maxlen=self.maxlen, approximate=True)
        return pipeline.execute()


@dataclass(frozen=True, slots=True)
class _Handle:
    """Hand a message to the inbox consumer: its outcome, or the awaitable of it.

    Inside ``source`` (where the entry came from, for the inbox consumer's span).
    """

    message: OutboxMessage
    source: contextlib.AbstractContextManager[None] = NOOP

    def start(self, _client: Any, inbox: Any) -> Any:
        return inbox.handle(self.message)


_StreamOp: TypeAlias = Call | Pause | _Handle
_Entry: TypeAlias = tuple[bytes, dict[bytes, bytes]]


U = TypeVar("U", bound="InboxCore[Any]")  # the inbox consumer fed
V = TypeVar("V", bound="redis.Redis | redis.asyncio.Redis")  # the client


class _StreamReader(Generic[U, V]):
    """What both Redis consumers decide: the group, pending entries first, ack after handling.

    Partitioned, the same for each partition stream this consumer holds the lease of
    (:class:`~tactical.outbox._redis_leases.PartitionLeases`). The constructor's arguments
    are documented on the consumers.
    """

    # Whether the consumer awaits its client (a redis.asyncio.Redis) or calls it.
    _asynchronous: ClassVar[bool] = False

    def __init__(
        self,
        inbox: U,
        client: V,
        *,
        stream: str = DEFAULT_STREAM,
        group: str | None = None,
        consumer: str = "consumer-1",
        batch_size: int = 100,
        partitions: int | None = None,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        self._socket_timeout = _socket_timeout(client, type(self).__name__, self._asynchronous)
        check_inbox(inbox, type(self).__name__, self._asynchronous)
        if not lease > 0:
            raise ValueError(f"lease must be positive, got {lease}")
        self._inbox = inbox
        self._client = client
        self._stream = stream
        self._group = group if group is not None else inbox.name
        self._consumer = consumer
        self._batch_size = batch_size
        self._group_ready = False
        self._address = _redis_address(client)
        self._label = f"Redis consumer {self._group}"
        self._lease = lease
        self._leases = (
            None
            if broker_partitions(partitions) is None
            else PartitionLeases(
                stream=stream,
                group=self._group,
                consumer=consumer,
                partitions=cast("int", partitions),
                lease=lease,
                label=self._label,
                report=lambda owned: record_consumer_partitions(
                    "redis", inbox.name, consumer, cast("int", partitions), owned
                ),
            )
        )

    @property
    def group(self) -> str:
        """The consumer group's name."""
        return self._group

    @property
    def partitions(self) -> int | None:
        """The number of partition streams shared by the group; None if not partitioned.

        .. versionadded:: 0.2.0
        """
        return None if self._leases is None else self._leases.partitions

    @property
    def held_partitions(self) -> frozenset[int]:
        """The partitions this consumer holds the lease of now (empty if not partitioned).

        .. versionadded:: 0.2.0
        """
        return frozenset(() if self._leases is None else self._leases.owned)

    def _block_ms(self, poll_interval: float) -> int:
        longest = min(poll_interval, self._socket_timeout / 2)
        if self._leases is not None:
            longest = min(longest, self._lease / 3)
        return max(1, int(longest * 1000))

    def _loop(self, initial_backoff: float, max_backoff: float) -> Flow[LoopOp, None]:
        return consumer_loop(
            label=self._label,
            source=(
                f"stream {self._stream!r}"
                if self._leases is None
                else f"{self._leases.partitions} partition streams {self._stream!r}:N"
            ),
            address=self._address,
            what_failed=lambda error: _what_failed(error, self._stream, self._address),
            connected_is_up=False,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
        )

    def _available(self) -> Flow[_StreamOp, int]:
        total = 0
        try:
            while True:
                count = yield from self._poll(None)
                if not count:
                    return total
                total += count
        finally:
            yield from self._releasing()

    def _releasing(self) -> Flow[_StreamOp, None]:
        """Give every partition up (nothing if not partitioned)."""
        if self._leases is not None and self._leases.owned:
            yield from self._leases.release_all()

    def _poll(self, block_ms: int | None) -> Flow[_StreamOp, int]:
        if self._leases is not None:
            return (yield from self._poll_partitions(self._leases, block_ms))
        if not self._group_ready:
            try:
                yield Call(
                    "xgroup_create", (self._stream, self._group), {"id": "0", "mkstream": True}
                )
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
            self._group_ready = True
        # Own pending entries first: delivered before but never acknowledged.
        streams = {self._stream: None}
        count = yield from self._handle_streams((yield from self._read(streams, "0", None)))
        if count:
            return count
        return (yield from self._handle_streams((yield from self._read(streams, ">", block_ms))))

    def _poll_partitions(
        self, leases: PartitionLeases, block_ms: int | None
    ) -> Flow[_StreamOp, int]:
        if leases.due():
            yield from leases.balance()
        if not leases.owned:
            if block_ms is not None:
                yield Pause(block_ms / 1000)
            return 0
        streams: dict[str, int | None] = {leases.stream_of(p): p for p in sorted(leases.owned)}
        # Pending entries first: claimed from the partitions' previous holders, or left
        # unacknowledged here by a failure.
        count = yield from self._handle_streams((yield from self._read(streams, "0", None)))
        if count:
            return count
        return (yield from self._handle_streams((yield from self._read(streams, ">", block_ms))))

    def _read(
        self, streams: Mapping[str, int | None], start: str, block_ms: int | None
    ) -> Flow[_StreamOp, list[tuple[str, int | None, list[_Entry]]]]:
        reply: Any = yield Call(
            "xreadgroup",
            (self._group, self._consumer, dict.fromkeys(streams, start)),
            {"count": self._batch_size, "block": block_ms},
        )
        read: list[tuple[str, int | None, list[_Entry]]] = []
        for name, entries in reply or ():
            stream = name.decode() if isinstance(name, bytes) else str(name)
            read.append((stream, streams[stream], cast("list[_Entry]", entries)))
        return read

    def _handle_streams(
        self, read: list[tuple[str, int | None, list[_Entry]]]
    ) -> Flow[_StreamOp, int]:
        count = 0
        for stream, partition, entries in read:
            count += yield from self._handle_entries(stream, partition, entries)
        return count

    def _handle_entries(
        self, stream: str, partition: int | None, entries: list[_Entry]
    ) -> Flow[_StreamOp, int]:
        leases = self._leases
        handled = 0
        for entry_id, fields in entries:
            if leases is not None and partition is not None:
                if leases.due():
                    yield from leases.balance()
                if partition not in leases.owned:
                    break  # given up or lost: the rest stays pending for the next holder
            try:
                message = _message_of_entry(fields)
            except Exception as error:  # any decode failure: the entry is malformed
                _log.error(
                    "Redis consumer %s acknowledged entry %s of stream %r without handling it: "
                    "not a tactical event (%s: %s)",
                    self._group,
                    entry_id.decode(errors="replace"),
                    stream,
                    type(error).__name__,
                    error,
                )
            else:
                if leases is not None and partition is not None:
                    check_partition(
                        message,
                        partition=partition,
                        partitions=leases.partitions,
                        stated=None,
                        source=f"stream {stream!r}",
                    )
                yield _Handle(
                    message,
                    delivered(
                        "redis",
                        stream,
                        address=self._address,
                        partition=partition,
                        group=self._group,
                    ),
                )
            yield Call("xack", (stream, self._group, entry_id))
            handled += 1
        return handled


class RedisStreamConsumer(_StreamReader[InboxConsumer[Any], redis.Redis], Consuming):
    """Feeds a Redis stream, through a consumer group, to an inbox consumer.

    The group (default: the inbox consumer's name) is created at the stream's start if it does
    not exist. Each entry is rebuilt with :meth:`~tactical.outbox.OutboxMessage.from_wire` and
    handled; ``XACK`` follows only after :meth:`~tactical.outbox.InboxConsumer.handle` returned,
    that is after the handler's unit of work committed with its inbox row (or the message was
    parked). Entries delivered to this consumer but not acknowledged (a crash, or handling that
    raised) are read again first, in order, before new ones, and the inbox skips those already
    handled. An entry that is not a tactical message is logged and acknowledged.

    Every wait is bounded by the client's ``socket_timeout`` (a client without one is
    refused): :meth:`run` blocks in ``XREADGROUP`` for at most half of it, so a Redis that
    stops answering raises a timeout within ``socket_timeout`` (times the client's retries),
    which :meth:`run` logs with Redis's address before reconnecting, and a stop request is
    seen as soon as the current wait ends.

    The client must speak RESP2 (redis-py's default protocol). Per-aggregate order holds
    with one consumer name per group; more consumers in a group
    share the load but may handle two events of one aggregate at once, unless partitioned.

    **Partitions.** With ``partitions=N`` (the publisher's number) the consumers of a group
    share the partition streams ``<stream>:0`` to ``<stream>:<N-1>``, each read by one
    consumer at a time: the holder of its lease, a Redis key set with ``SET NX PX`` and
    renewed every third of ``lease``. The live consumers of the group (announced in a
    sorted set) each hold about ``N / consumers`` of them: one that holds more gives some up
    between two entries, one that holds fewer takes free ones. A consumer that stops
    releases its leases; one that dies loses them when they expire, and its partitions are
    taken over within about 1.4 times ``lease``. Taking a partition over, a consumer first
    claims the entries its previous holders left pending (``XAUTOCLAIM``) and handles them
    before new ones. The number of partitions recorded by the publisher (key
    ``<stream>:partitions``) must be N, else :class:`~tactical.outbox.PartitionMismatchError`
    is raised (and logged by :meth:`run`, which retries). A handler must take well under
    ``lease``: a consumer that could not renew in time loses the partition and logs it.

    Args:
        inbox: Handles the events.
        client: The Redis client to use, made with a ``socket_timeout`` (and ideally
            ``socket_connect_timeout`` and ``health_check_interval``).
        stream: The stream's key.
        group: The consumer group's name; the inbox consumer's name if omitted.
        consumer: This reader's name within the group.
        batch_size: The most entries read per ``XREADGROUP`` (per partition stream).
        partitions: Share the publisher's partition streams, one of this many, with the
            group's other consumers; None (the default): the one stream ``stream``.
        lease: Seconds a partition's lease lasts unless renewed
            (:data:`DEFAULT_LEASE`); only with ``partitions``.

    Raises:
        TypeError: ``client`` is not a sync ``redis.Redis`` (a ``redis.asyncio.Redis``,
            whose commands nothing would await, or a URL), or ``inbox`` is an
            :class:`~tactical.outbox.AsyncInboxConsumer`.
        ValueError: ``client`` has no ``socket_timeout``: a Redis that stopped answering
            would block the consumer for ever; ``partitions`` is below 1, or ``lease`` is
            not positive.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       A client without ``socket_timeout`` is refused; ``partitions`` and ``lease``.
    """

    def consume_available(self) -> int:
        """Handle every entry pending for this consumer, then every new one; return how many.

        Partitioned, it takes the partitions it may hold, handles what they have and gives
        them up before it returns (``held_partitions`` is empty again).

        Raises:
            Exception: Redis failed, or handling an entry raised (it stays pending).
        """
        return run(self._available(), self._perform)

    # run() is Consuming's; this is its documentation on this class.
    _run_doc = """Handle entries until ``stop`` is set; retry with bounded backoff on failures.

    Each failure is logged once, as a warning saying what failed (Redis, at which
    address, or handling an entry) and when the next attempt is; the first success
    after failures is logged too.

    Args:
        stop: Set it to end the loop (checked at least every ``poll_interval`` s, or
            half the client's ``socket_timeout`` if that is shorter).
        poll_interval: Seconds ``XREADGROUP`` blocks waiting for new entries.
        initial_backoff: Seconds to wait after the first failure, doubling after each.
        max_backoff: The longest wait between attempts.
    """

    def _steps(
        self, stop: threading.Event, poll_interval: float
    ) -> dict[str, Callable[[], object]]:
        block_ms = self._block_ms(poll_interval)
        return {
            "connect": _nothing,
            "consume": lambda: run(self._poll(block_ms), self._perform),
            "close": self._release,
        }

    def _release(self) -> None:
        try:
            run(self._releasing(), self._perform)
        except Exception:  # the leases expire by themselves
            _log.debug("releasing partition leases failed", exc_info=True)

    def _perform(self, op: _StreamOp) -> object:
        if isinstance(op, Pause):
            time.sleep(op.seconds)
            return None
        if isinstance(op, _Handle):
            with op.source:
                return op.start(self._client, self._inbox)
        return op.start(self._client, self._inbox)


class AsyncRedisStreamConsumer(
    _StreamReader[AsyncInboxConsumer[Any], redis.asyncio.Redis], AsyncConsuming
):
    """:class:`RedisStreamConsumer` on ``redis.asyncio``, feeding an :class:`~tactical.outbox.AsyncInboxConsumer`.

    The same group, order and acknowledgements (the two run the same code): pending entries
    of this consumer first, then new ones, each ``XACK``-ed only after
    :meth:`~tactical.outbox.AsyncInboxConsumer.handle` returned (committed or parked); an
    entry that is not a tactical message is logged and acknowledged. Every wait is bounded
    by the client's ``socket_timeout`` (a client without one is refused), so :meth:`run`
    notices a Redis gone silent, logs it with its address and tries again, and sees a stop
    request as soon as the current wait ends. Cancelling the task running it leaves the
    entry being handled pending, to be handled first next time.

    Args:
        inbox: Handles the events (awaited).
        client: A ``redis.asyncio.Redis`` made with a ``socket_timeout`` (RESP2).
        stream: As for :class:`RedisStreamConsumer`, and so are ``group``, ``consumer``,
            ``batch_size``, ``partitions`` and ``lease`` (the same leases, shared with sync
            consumers of the group alike).

    Raises:
        TypeError: ``client`` is not a ``redis.asyncio.Redis`` (a sync ``redis.Redis``, or
            a URL), or ``inbox`` is a sync :class:`~tactical.outbox.InboxConsumer`.
        ValueError: ``client`` has no ``socket_timeout``, ``partitions`` is below 1, or
            ``lease`` is not positive.

    .. versionadded:: 0.2.0
    """

    _asynchronous = True

    async def consume_available(self) -> int:
        """Handle every entry pending for this consumer, then every new one; return how many.

        Partitioned, it takes the partitions it may hold, handles what they have and gives
        them up before it returns (``held_partitions`` is empty again).

        Raises:
            Exception: Redis failed, or handling an entry raised (it stays pending).
        """
        return await run_async(self._available(), self._perform)

    # run() is AsyncConsuming's; this is its documentation on this class.
    _run_doc = """Handle entries until ``stop`` is set; retry with bounded backoff on failures.

    As :meth:`RedisStreamConsumer.run`: the same waits, backoff and log lines.

    Args:
        stop: Set it to end the loop (or cancel the task running it).
        poll_interval: As for :meth:`RedisStreamConsumer.run`, and so are
            ``initial_backoff`` and ``max_backoff``.
    """

    def _steps(
        self, stop: asyncio.Event, poll_interval: float
    ) -> dict[str, Callable[[], Awaitable[object]]]:
        block_ms = self._block_ms(poll_interval)
        return {
            "connect": _nothing_async,
            "consume": lambda: run_async(self._poll(block_ms), self._perform),
            "close": self._release,
        }

    async def _release(self) -> None:
        try:
            await run_async(self._releasing(), self._perform)
        except Exception:  # the leases expire by themselves
            _log.debug("releasing partition leases failed", exc_info=True)

    async def _perform(self, op: _StreamOp) -> object:
        if isinstance(op, Pause):
            await asyncio.sleep(op.seconds)
            return None
        if isinstance(op, _Handle):
            with op.source:
                return await op.start(self._client, self._inbox)
        return await op.start(self._client, self._inbox)


def _nothing() -> None:
    """A step a Redis consumer does not need (its client connects by itself)."""


async def _nothing_async() -> None:
    """A step a Redis consumer does not need (its client connects by itself)."""


def _message_of_entry(fields: Mapping[bytes, bytes]) -> OutboxMessage:
    """The message a stream entry written by :class:`RedisStreamPublisher` holds.

    Raises:
        ValueError: The entry lacks ``body`` or ``headers``, or they are malformed.
    """
    body, headers = fields.get(b"body"), fields.get(b"headers")
    if body is None or headers is None:
        raise ValueError(f"entry has no 'body' or no 'headers' field (fields {sorted(fields)!r})")
    try:
        decoded: object = json.loads(headers)
    except (ValueError, RecursionError) as error:
        reason = "nested too deep" if isinstance(error, RecursionError) else str(error)
        raise ValueError(f"headers are not JSON: {reason}") from None
    if not isinstance(decoded, dict):
        raise ValueError(f"headers are a JSON {type(decoded).__name__}, not an object")
    return OutboxMessage.from_wire(body, cast("dict[str, object]", decoded))


def _redis_address(client: redis.Redis | redis.asyncio.Redis) -> str:
    """``host:port`` (or the socket path) of the Redis server ``client`` talks to."""
    kwargs: dict[str, Any] = getattr(client.connection_pool, "connection_kwargs", {})
    if "path" in kwargs:
        return str(kwargs["path"])
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


def _socket_timeout(
    client: redis.Redis | redis.asyncio.Redis, user: str, asynchronous: bool
) -> float:
    _check_client(client, user, asynchronous)
    kwargs: dict[str, Any] = getattr(client.connection_pool, "connection_kwargs", {})
    timeout = kwargs.get("socket_timeout")
    if timeout is None:
        raise ValueError(
            f"{user} needs a Redis client with a socket_timeout: without one a Redis at "
            f"{_redis_address(client)} that stops answering blocks it for ever; make it with "
            "redis.Redis(..., socket_timeout=5, socket_connect_timeout=5, "
            "health_check_interval=30)"
        )
    return float(timeout)


def _check_client(client: object, user: str, asynchronous: bool) -> None:
    """Refuse a URL, or a client of the other kind: a sync user would not await its commands."""
    kind = "redis.asyncio.Redis" if asynchronous else "redis.Redis"
    if isinstance(client, str):
        raise TypeError(
            f"{user} needs a {kind} client, got the string {client!r}: make one with "
            f"{kind}.from_url({client!r}, socket_timeout=5)"
        )
    if asynchronous and isinstance(client, redis.Redis):
        raise TypeError(
            f"{user} awaits its client, but got a sync redis.Redis: give it a "
            f"redis.asyncio.Redis, or give this client to {user.removeprefix('Async')}"
        )
    if not asynchronous and isinstance(client, redis.asyncio.Redis):
        raise TypeError(
            f"{user} calls its client without awaiting, but got a redis.asyncio.Redis, "
            "whose commands would never run: give it a redis.Redis, or give this client "
            f"to Async{user}"
        )


def _what_failed(error: Exception, stream: str, address: str) -> str:
    described = f"{type(error).__name__}: {error}"
    if isinstance(error, redis.RedisError):
        return f"reading stream {stream!r} from Redis at {address} failed ({described})"
    return f"handling an entry of stream {stream!r} failed ({described}); it stays pending"
