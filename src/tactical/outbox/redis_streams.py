"""Redis Streams for the outbox (extra ``redis``): a publisher and a consumer-group loop.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any, cast

from tactical._extras import missing_extra

try:
    import redis
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.outbox.redis_streams", "redis") from _missing

from redis.typing import EncodableT, FieldT

from tactical.outbox._inbox import InboxConsumer
from tactical.outbox._message import OutboxMessage, PublishError, backoff_delay, wire_forms

__all__ = ["DEFAULT_STREAM", "RedisStreamConsumer", "RedisStreamPublisher"]

_log = logging.getLogger("tactical.outbox")

DEFAULT_STREAM = "tactical:events"
"""The stream events are appended to unless another is named."""


class RedisStreamPublisher:
    """Appends outbox messages to a Redis stream (``XADD``), one entry per event, in order.

    Each entry has two fields: ``body`` (the event's JSON, as in the outbox) and ``headers``
    (:attr:`~tactical.outbox.OutboxMessage.headers` as a JSON object). A batch is sent as one
    pipeline; :meth:`publish` returns once Redis replied to every ``XADD``. How durable an entry
    is then depends on the server's persistence settings (``appendonly yes`` with
    ``appendfsync everysec`` or ``always`` for an outbox worth the name).

    Args:
        client: The Redis client to use (one per relay thread is simplest).
        stream: The stream's key.
        maxlen: Trim the stream to about this many entries (``MAXLEN ~``); None keeps all.
            Trimming can drop entries that a slow consumer group has not read yet.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, client: redis.Redis, stream: str = DEFAULT_STREAM, *, maxlen: int | None = None
    ) -> None:
        self._client = client
        self._stream = stream
        self._maxlen = maxlen

    @property
    def stream(self) -> str:
        """The stream's key."""
        return self._stream

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Append ``messages`` to the stream, in order.

        Raises:
            UndeliverableError: Some messages cannot be encoded into an entry (a payload
                that is not encodable as UTF-8); checked before anything of the batch is
                sent, so nothing was.
            PublishError: Redis is unreachable or refused an entry; the error names the
                stream and the batch's first event.
        """
        if not messages:
            return
        entries = wire_forms(messages, _entry)
        try:
            pipeline = self._client.pipeline(transaction=False)  # pyright: ignore[reportUnknownMemberType]
            for entry in entries:
                pipeline.xadd(self._stream, entry, maxlen=self._maxlen, approximate=True)
            pipeline.execute()
        except redis.RedisError as error:
            first = messages[0]
            raise PublishError(
                f"Redis did not append {len(messages)} event(s) from {first.event_id} "
                f"(outbox position {first.position}) to stream {self._stream!r}: "
                f"{type(error).__name__}: {error}"
            ) from error


def _entry(message: OutboxMessage) -> dict[FieldT, EncodableT]:
    # Both fields as UTF-8 bytes now, so that redis-py cannot fail to encode one mid-batch.
    return {"body": message.body, "headers": json.dumps(message.headers).encode()}


class RedisStreamConsumer:
    """Feeds a Redis stream, through a consumer group, to an inbox consumer.

    The group (default: the inbox consumer's name) is created at the stream's start if it does
    not exist. Each entry is rebuilt with :meth:`~tactical.outbox.OutboxMessage.from_wire` and
    handled; ``XACK`` follows only after :meth:`~tactical.outbox.InboxConsumer.handle` returned,
    that is after the handler's unit of work committed with its inbox row (or the message was
    parked). Entries delivered to this consumer but not acknowledged (a crash, or handling that
    raised) are read again first, in order, before new ones, and the inbox skips those already
    handled. An entry that is not a tactical message is logged and acknowledged.

    The client must speak RESP2 (redis-py's default protocol). Per-aggregate order holds
    with one consumer name per group; more consumers in a group
    share the load but may handle two events of one aggregate at once.

    Args:
        inbox: Handles the events.
        client: The Redis client to use.
        stream: The stream's key.
        group: The consumer group's name; the inbox consumer's name if omitted.
        consumer: This reader's name within the group.
        batch_size: The most entries read per ``XREADGROUP``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        inbox: InboxConsumer[Any],
        client: redis.Redis,
        *,
        stream: str = DEFAULT_STREAM,
        group: str | None = None,
        consumer: str = "consumer-1",
        batch_size: int = 100,
    ) -> None:
        self._inbox = inbox
        self._client = client
        self._stream = stream
        self._group = group if group is not None else inbox.name
        self._consumer = consumer
        self._batch_size = batch_size
        self._group_ready = False

    @property
    def group(self) -> str:
        """The consumer group's name."""
        return self._group

    def consume_available(self) -> int:
        """Handle every entry pending for this consumer, then every new one; return how many.

        Raises:
            Exception: Redis failed, or handling an entry raised (it stays pending).
        """
        total = 0
        while True:
            count = self._poll(block_ms=None)
            if not count:
                return total
            total += count

    def run(
        self,
        stop: threading.Event,
        *,
        poll_interval: float = 0.5,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        """Handle entries until ``stop`` is set; retry with bounded backoff on failures.

        Args:
            stop: Set it to end the loop (checked at least every ``poll_interval`` s).
            poll_interval: Seconds ``XREADGROUP`` blocks waiting for new entries.
            initial_backoff: Seconds to wait after the first failure, doubling after each.
            max_backoff: The longest wait between attempts.
        """
        failures = 0
        _log.info("Redis consumer %s started on stream %r", self._group, self._stream)
        while not stop.is_set():
            try:
                self._poll(block_ms=max(1, int(poll_interval * 1000)))
                failures = 0
            except Exception as error:
                failures += 1
                delay = backoff_delay(failures, initial_backoff, max_backoff)
                _log.warning(
                    "Redis consumer %s: %s: %s; retrying in %.1fs",
                    self._group,
                    type(error).__name__,
                    error,
                    delay,
                )
                stop.wait(delay)
        _log.info("Redis consumer %s stopped", self._group)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        self._group_ready = True

    def _poll(self, block_ms: int | None) -> int:
        self._ensure_group()
        # Own pending entries first: delivered before but never acknowledged.
        count = self._handle_entries(self._read("0", None))
        if count:
            return count
        return self._handle_entries(self._read(">", block_ms))

    def _read(self, start: str, block_ms: int | None) -> list[tuple[bytes, dict[bytes, bytes]]]:
        reply: Any = self._client.xreadgroup(
            self._group,
            self._consumer,
            {self._stream: start},
            count=self._batch_size,
            block=block_ms,
        )
        if not reply:
            return []
        return cast("list[tuple[bytes, dict[bytes, bytes]]]", reply[0][1])

    def _handle_entries(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        for entry_id, fields in entries:
            try:
                headers: Any = json.loads(fields[b"headers"])
                message = OutboxMessage.from_wire(
                    fields[b"body"], cast("dict[str, object]", headers)
                )
            except (KeyError, ValueError, TypeError) as error:
                _log.error(
                    "Redis consumer %s acknowledged entry %s of stream %r without handling it: "
                    "not a tactical event (%s)",
                    self._group,
                    entry_id.decode(),
                    self._stream,
                    error,
                )
            else:
                self._inbox.handle(message)
            self._client.xack(self._stream, self._group, entry_id)
        return len(entries)
