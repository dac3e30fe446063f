"""RabbitMQ for the outbox (extra ``rabbitmq``, pika): a confirming publisher and a consumer loop.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import importlib
import logging
import random
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from tactical.outbox._inbox import InboxConsumer
from tactical.outbox._message import OutboxMessage, PublishError

__all__ = ["DEFAULT_EXCHANGE", "RabbitMQConsumer", "RabbitMQPublisher"]

# pika ships no type information (no py.typed, no stubs): it is used through Any here, and
# only this module touches it.
pika: Any = importlib.import_module("pika")
_pika_exceptions: Any = importlib.import_module("pika.exceptions")

_log = logging.getLogger("tactical.outbox")

DEFAULT_EXCHANGE = "tactical.events"
"""The topic exchange events are published to unless another is named."""


def _where(url: str) -> str:
    # host:port only: the URL may hold a password.
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5672}"


def connection_parameters(url: str, *, timeout: float) -> Any:
    """pika connection parameters for ``url``, failing fast (one attempt, ``timeout`` s)."""
    parameters = pika.URLParameters(url)
    parameters.connection_attempts = 1
    parameters.socket_timeout = timeout
    parameters.stack_timeout = timeout
    parameters.blocked_connection_timeout = timeout * 6
    return parameters


class RabbitMQPublisher:
    """Publishes outbox messages to a durable RabbitMQ topic exchange, with publisher confirms.

    Each message is sent persistent (``delivery_mode=2``) with routing key = event type
    name, ``content_type`` ``application/json``, ``message_id`` = event id,
    ``correlation_id``, ``type`` and the :attr:`OutboxMessage.headers` as AMQP headers. The
    channel is in confirm mode, so :meth:`publish` returns only after the broker confirmed
    every message (for a persistent message to a durable queue: written to disk). A nack,
    a lost connection or an unreachable broker raises :class:`PublishError` and the relay
    marks nothing.

    Bind your queues before publishing: a topic exchange drops messages no queue is bound
    for (unless ``mandatory=True``, which turns them into a :class:`PublishError` and so
    holds the relay back until a queue exists).

    The connection is opened on first use and reopened after a failure. Like every pika
    connection it belongs to one thread: give each relay its own publisher.

    Args:
        url: An AMQP URL (``amqp://user:password@host:port/vhost``).
        exchange: The topic exchange's name; declared durable unless ``declare=False``.
        declare: Declare the exchange (idempotent) when connecting.
        mandatory: Refuse messages that no queue receives.
        timeout: Seconds to wait for connecting and for each socket operation.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
        *,
        exchange: str = DEFAULT_EXCHANGE,
        declare: bool = True,
        mandatory: bool = False,
        timeout: float = 5.0,
    ) -> None:
        self._url = url
        self._exchange = exchange
        self._declare = declare
        self._mandatory = mandatory
        self._timeout = timeout
        self._connection: Any = None
        self._channel: Any = None

    @property
    def exchange(self) -> str:
        """The exchange messages are published to."""
        return self._exchange

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Send ``messages`` in order, each confirmed by the broker before the next.

        Raises:
            PublishError: The broker is unreachable, refused (nacked) a message, returned
                an unroutable one (``mandatory``), or the connection was lost; the error
                names the broker's host and port and the first unconfirmed event.
        """
        if not messages:
            return
        current = messages[0]
        try:
            channel = self._open_channel()
            for current in messages:
                channel.basic_publish(
                    exchange=self._exchange,
                    routing_key=current.event_type,
                    body=current.body,
                    properties=_properties(current),
                    mandatory=self._mandatory,
                )
        except Exception as error:
            self.close()
            raise PublishError(
                f"RabbitMQ at {_where(self._url)} did not confirm event {current.event_id} "
                f"({current.event_type}, outbox position {current.position}) on exchange "
                f"{self._exchange!r}: {type(error).__name__}: {error}"
            ) from error

    def close(self) -> None:
        """Close the connection (a later :meth:`publish` opens a new one)."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                _log.debug("closing a broken RabbitMQ connection failed", exc_info=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _open_channel(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            try:
                # Services heartbeats after an idle spell and reveals a connection the
                # broker dropped meanwhile, which is then replaced instead of failing.
                self._connection.process_data_events(time_limit=0)
                return self._channel
            except _pika_exceptions.AMQPError:
                self.close()
        connection = pika.BlockingConnection(
            connection_parameters(self._url, timeout=self._timeout)
        )
        try:
            channel = connection.channel()
            if self._declare:
                channel.exchange_declare(
                    exchange=self._exchange, exchange_type="topic", durable=True
                )
            channel.confirm_delivery()
        except BaseException:
            connection.close()
            raise
        self._connection, self._channel = connection, channel
        _log.info("connected to RabbitMQ at %s (exchange %r)", _where(self._url), self._exchange)
        return channel


def _properties(message: OutboxMessage) -> Any:
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        message_id=str(message.event_id),
        correlation_id=None if message.correlation_id is None else str(message.correlation_id),
        type=message.event_type,
        timestamp=int(message.occurred_at.timestamp()),
        headers=message.headers,
    )


class RabbitMQConsumer:
    """Feeds a durable RabbitMQ queue to an :class:`InboxConsumer`, acknowledging after commit.

    The queue is declared durable and bound to the (durable topic) exchange for each of
    ``routing_keys`` (event type names; ``#`` for all, ``billing.#`` for a prefix). Each
    delivery is rebuilt with :meth:`OutboxMessage.from_wire` and handled; it is
    acknowledged (``basic_ack``) only after :meth:`InboxConsumer.handle` returned, that is
    after the handler's unit of work committed with its inbox row (or the message was
    parked). A crash before the ack makes RabbitMQ redeliver, and the inbox skips it.
    If handling raises (the database is down) the message is requeued and the consumer
    reconnects with backoff. A delivery that is not a tactical message (missing headers)
    is rejected without requeue (to the queue's dead-letter exchange if it has one) and
    logged.

    Per-aggregate order holds with one consumer per queue (messages are handled one at a
    time in queue order); several consumers on one queue share the load but may handle
    two events of one aggregate at once.

    Args:
        inbox: Handles the events.
        url: An AMQP URL.
        queue: The queue's name (one per consumer, e.g. the inbox consumer's name).
        exchange: The topic exchange the relay publishes to.
        routing_keys: Binding keys of the queue.
        prefetch: How many unacknowledged messages the broker sends ahead.
        timeout: Seconds to wait for connecting and for each socket operation.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        inbox: InboxConsumer[Any],
        url: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
        *,
        queue: str,
        exchange: str = DEFAULT_EXCHANGE,
        routing_keys: Sequence[str] = ("#",),
        prefetch: int = 10,
        timeout: float = 5.0,
    ) -> None:
        self._inbox = inbox
        self._url = url
        self._queue = queue
        self._exchange = exchange
        self._routing_keys = tuple(routing_keys)
        self._prefetch = prefetch
        self._timeout = timeout
        self._connection: Any = None
        self._channel: Any = None

    @property
    def queue(self) -> str:
        """The queue consumed."""
        return self._queue

    def consume_available(self, *, idle_timeout: float = 0.5) -> int:
        """Handle messages until none arrived for ``idle_timeout`` seconds; return how many.

        Raises:
            Exception: Connecting failed, or handling a message raised (it was requeued).
        """
        return self._consume(None, idle_timeout)

    def run(
        self,
        stop: threading.Event,
        *,
        poll_interval: float = 0.5,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        """Handle messages until ``stop`` is set; reconnect with bounded backoff on failures.

        Args:
            stop: Set it to end the loop (checked at least every ``poll_interval`` s).
            poll_interval: Seconds to wait for a message before checking ``stop``.
            initial_backoff: Seconds to wait after the first failure, doubling after each.
            max_backoff: The longest wait between attempts.
        """
        failures = 0
        _log.info("RabbitMQ consumer %s started on queue %r", self._inbox.name, self._queue)
        while not stop.is_set():
            try:
                self._consume(stop, poll_interval)
                failures = 0
            except Exception as error:
                failures += 1
                self.close()
                delay = min(max_backoff, initial_backoff * 2 ** min(failures - 1, 30))
                delay *= random.uniform(0.5, 1.0)  # noqa: S311  (jitter, not security)
                _log.warning(
                    "RabbitMQ consumer %s: %s: %s; retrying in %.1fs",
                    self._inbox.name,
                    type(error).__name__,
                    error,
                    delay,
                )
                stop.wait(delay)
        self.close()
        _log.info("RabbitMQ consumer %s stopped", self._inbox.name)

    def close(self) -> None:
        """Close the connection (unacknowledged messages go back to the queue)."""
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except Exception:
                _log.debug("closing a broken RabbitMQ connection failed", exc_info=True)

    def _open_channel(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        connection = pika.BlockingConnection(
            connection_parameters(self._url, timeout=self._timeout)
        )
        try:
            channel = connection.channel()
            channel.exchange_declare(exchange=self._exchange, exchange_type="topic", durable=True)
            channel.queue_declare(queue=self._queue, durable=True)
            for key in self._routing_keys:
                channel.queue_bind(queue=self._queue, exchange=self._exchange, routing_key=key)
            channel.basic_qos(prefetch_count=self._prefetch)
        except BaseException:
            connection.close()
            raise
        self._connection, self._channel = connection, channel
        return channel

    def _consume(self, stop: threading.Event | None, idle_timeout: float) -> int:
        channel = self._open_channel()
        count = 0
        try:
            for method, properties, body in channel.consume(
                self._queue, inactivity_timeout=idle_timeout
            ):
                if method is not None:
                    self._deliver(channel, method, properties, body)
                    count += 1
                elif stop is None:
                    break
                if stop is not None and stop.is_set():
                    break
        finally:
            if channel.is_open:
                channel.cancel()
        return count

    def _deliver(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            message = OutboxMessage.from_wire(body, properties.headers or {})
        except ValueError as error:
            _log.error(
                "RabbitMQ consumer %s rejected a message from queue %r that is not a tactical "
                "event: %s",
                self._inbox.name,
                self._queue,
                error,
            )
            channel.basic_nack(delivery_tag=method.delivery_tag, requeue=False)
            return
        try:
            self._inbox.handle(message)
        except BaseException:
            if channel.is_open:
                channel.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
            raise
        channel.basic_ack(delivery_tag=method.delivery_tag)
