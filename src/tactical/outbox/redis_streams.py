"""Redis Streams for the outbox (extra ``redis``): a publisher and a consumer-group loop.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import redis

from tactical.outbox._message import OutboxMessage, PublishError

__all__ = ["DEFAULT_STREAM", "RedisStreamPublisher"]

DEFAULT_STREAM = "tactical:events"
"""The stream events are appended to unless another is named."""


class RedisStreamPublisher:
    """Appends outbox messages to a Redis stream (``XADD``), one entry per event, in order.

    Each entry has two fields: ``body`` (the event's JSON, as in the outbox) and ``headers``
    (:attr:`OutboxMessage.headers` as a JSON object). A batch is sent as one pipeline;
    :meth:`publish` returns once Redis replied to every ``XADD``. How durable an entry is
    then depends on the server's persistence settings (``appendonly yes`` with
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
            PublishError: Redis is unreachable or refused an entry; the error names the
                stream and the batch's first event.
        """
        if not messages:
            return
        try:
            pipeline = self._client.pipeline(transaction=False)  # pyright: ignore[reportUnknownMemberType]
            for message in messages:
                pipeline.xadd(
                    self._stream,
                    {"body": message.body, "headers": json.dumps(message.headers)},
                    maxlen=self._maxlen,
                    approximate=True,
                )
            pipeline.execute()
        except redis.RedisError as error:
            first = messages[0]
            raise PublishError(
                f"Redis did not append {len(messages)} event(s) from {first.event_id} "
                f"(outbox position {first.position}) to stream {self._stream!r}: "
                f"{type(error).__name__}: {error}"
            ) from error
