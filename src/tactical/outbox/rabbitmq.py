"""RabbitMQ for the outbox (extra ``rabbitmq``): confirming publishers and a consumer loop.

:class:`RabbitMQPublisher` and :class:`RabbitMQConsumer` run on pika; :class:`AsyncRabbitMQPublisher`
and :class:`AsyncRabbitMQConsumer` are the publisher and the consumer on asyncio (aio-pika).

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Self

from tactical._exports import publish as _publish
from tactical._flow import run
from tactical.outbox import _amqp
from tactical.outbox._amqp import AmqpConsumer, ConfirmingPublisher
from tactical.outbox._consumer_flow import Consuming, Handle, Settle
from tactical.outbox._inbox import InboxConsumer
from tactical.outbox._message import OutboxMessage
from tactical.outbox._rabbitmq_async import AsyncRabbitMQPublisher
from tactical.outbox._rabbitmq_async_consumer import AsyncRabbitMQConsumer
from tactical.outbox._rabbitmq_channel import (
    AmqpMessage,
    ConfirmedChannel,
    Silence,
    amqp_message,
    answer_within,
    connection_parameters,
    describe_error,
    pika,
    pika_exceptions,
)

__all__ = [
    "DEFAULT_BALANCE_INTERVAL",
    "DEFAULT_EXCHANGE",
    "DEFAULT_HEARTBEAT",
    "AsyncRabbitMQConsumer",
    "AsyncRabbitMQPublisher",
    "RabbitMQConsumer",
    "RabbitMQPublisher",
]

_log = logging.getLogger("tactical.outbox")

DEFAULT_EXCHANGE = _amqp.DEFAULT_EXCHANGE
"""The topic exchange events are published to unless another is named."""

DEFAULT_HEARTBEAT: int = _amqp.DEFAULT_HEARTBEAT
"""The AMQP heartbeat in seconds that consumers negotiate; a connection silent this long is dead.

.. versionadded:: 0.2.0
"""

DEFAULT_BALANCE_INTERVAL: float = _amqp.DEFAULT_BALANCE_INTERVAL
"""Seconds between two looks of a partitioned consumer at the live consumers and the free
partitions: a dead consumer's partitions are taken over within about this long after the
broker closed its connection.

.. versionadded:: 0.2.0
"""


class RabbitMQPublisher(ConfirmingPublisher):
    """Publishes outbox messages to a durable RabbitMQ topic exchange, with publisher confirms.

    Each message is sent persistent (``delivery_mode=2``) with routing key = event type name,
    ``content_type`` ``application/json``, ``message_id`` = event id, ``correlation_id``,
    ``type`` and the :attr:`~tactical.outbox.OutboxMessage.headers` as AMQP headers. The channel
    is in confirm mode (``confirm_delivery``): a batch is sent in one go and :meth:`publish`
    returns only after the broker confirmed every message of it (for a persistent message to a
    durable queue: written to disk). A nack, a lost connection, a timeout or an unreachable
    broker raises :class:`~tactical.outbox.PublishError` and the relay marks nothing. A
    message AMQP cannot carry (see :meth:`publish`) raises
    :class:`~tactical.outbox.UndeliverableError` before anything is sent: the relay parks it.

    Bind your queues before publishing: a topic exchange drops messages no queue is bound for
    (unless ``mandatory=True``, which turns them into a :class:`~tactical.outbox.PublishError`
    and so holds the relay back until a queue exists).

    The connection is opened on first use and reopened after a failure or after the broker
    dropped it while idle. Like every pika connection it belongs to one thread: give each
    relay its own publisher.

    Args:
        url: An AMQP URL (``amqp://user:password@host:port/vhost``).
        exchange: The topic exchange's name; declared durable unless ``declare=False``.
        declare: Declare the exchange (idempotent) when connecting.
        mandatory: Refuse messages that no queue receives.
        timeout: Seconds to wait for connecting, and for a batch to be confirmed.
        partitions: Route each event to its aggregate's partition, one of this many
            (:func:`~tactical.outbox.partition_of`): the routing key becomes
            ``<partition>.<event type>`` (``3.billing.Invoiced``), and the number of
            partitions travels in the ``tactical-partitions`` header, for partitioned
            consumers (see ``partitions`` of :class:`RabbitMQConsumer`). None (the default):
            the routing key is the event type.

    Raises:
        ValueError: ``partitions`` is below 1.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``partitions``.
    """

    _link: ConfirmedChannel | None

    def _setup(self) -> None:
        self._link = None

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Send ``messages`` in order and wait until the broker confirmed all of them.

        Raises:
            UndeliverableError: Some messages cannot be carried by AMQP at all (a payload
                that is not encodable as UTF-8, an event type name over 255 UTF-8 bytes,
                the routing key and ``type`` property's limit); checked before anything of
                the batch is sent, so nothing was.
            PublishError: The broker is unreachable, refused (nacked) a message, returned
                an unroutable one (``mandatory``), did not confirm within ``timeout``, or
                the connection was lost; the error names the broker's host and port and the
                batch's first event.
        """
        run(self._publishing(messages), lambda call: call.on(self))

    def _encode(self, message: OutboxMessage) -> AmqpMessage:
        return amqp_message(
            message,
            exchange=self._exchange_name,
            mandatory=self._mandatory,
            partitions=self._partitions,
        )

    def _describe(self, error: BaseException) -> str:
        return describe_error(error)

    def _lost(self, error: BaseException) -> bool:
        return isinstance(error, pika_exceptions.AMQPConnectionError)

    def _usable(self) -> bool | None:
        return None if self._link is None else self._link.is_usable()

    def _connect(self) -> None:
        self.close()
        self._link = ConfirmedChannel(
            connection_parameters(self._url, timeout=self._timeout),
            exchange=self._exchange_name,
            declare=self._declare,
            timeout=self._timeout,
        )

    def _send(self, wire: Sequence[AmqpMessage]) -> None:
        if self._link is None:  # the flow connects first; a lost link is reported as such
            raise ConnectionError("no RabbitMQ connection to send on")
        self._link.publish(wire, mandatory=self._mandatory)

    def _close(self) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (a later :meth:`publish` opens a new one)."""
        link, self._link = self._link, None
        if link is not None:
            link.close()

    def __enter__(self) -> Self:
        """Return the publisher itself; the connection opens on the first :meth:`publish`."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the connection, as :meth:`close` does."""
        self.close()


class RabbitMQConsumer(AmqpConsumer[InboxConsumer[Any]], Consuming):
    """Feeds a durable RabbitMQ queue to an inbox consumer, acknowledging after commit.

    The queue is declared durable and bound to the (durable topic) exchange for each of
    ``routing_keys`` (event type names; ``#`` for all, ``billing.#`` for a prefix). Each
    delivery is rebuilt with :meth:`~tactical.outbox.OutboxMessage.from_wire` and handled; it is
    acknowledged (``basic_ack``) only after :meth:`~tactical.outbox.InboxConsumer.handle`
    returned, that is after the handler's unit of work committed with its inbox row (or the
    message was parked). A crash before the ack makes RabbitMQ redeliver, and the inbox skips
    it. If handling raises (the database is down) the message is requeued and the consumer
    reconnects with backoff. A delivery that is not a tactical message (missing headers,
    unreadable body) is rejected without requeue (to the queue's dead-letter exchange if it
    has one) and logged with its id and the reason.

    **A broker that stops answering.** The connection negotiates an AMQP heartbeat of
    ``heartbeat`` seconds (the broker then sends something at least every half of it), and a
    connection from which nothing arrived for ``heartbeat`` seconds is given up and
    replaced; every other wait (connecting, declaring, cancelling, closing) is bounded by
    ``timeout``. So :meth:`run` notices a dead broker within about ``heartbeat`` seconds,
    logs it with the broker's address, reconnects, and returns within about ``timeout``
    seconds of a stop request whatever the network does. A handler that runs longer than
    ``heartbeat`` keeps the connection from answering the broker's heartbeats: the broker
    may close it and redeliver the message, which the inbox then skips.

    Per-aggregate order holds with one consumer per queue (messages are handled one at a
    time in queue order); several consumers on one queue share the load but may handle
    two events of one aggregate at once.

    **Partitions.** With ``partitions=N`` (the publisher's number) the consumer declares N
    durable queues ``<queue>.0`` to ``<queue>.<N-1>``, each with ``x-single-active-consumer``
    and bound with ``<p>.<key>`` for each of ``routing_keys``. Several consumers (threads,
    processes, hosts) with the same ``queue`` share them fairly: each consumes a partition's
    queue only while it holds the partition's lock, an exclusive queue ``<queue>.<p>.owner``
    that RabbitMQ lets one connection at a time declare and deletes when that connection
    closes; the live consumers are counted on the members queue ``<queue>.consumers``. Every
    ``balance_interval`` seconds (between two messages) a consumer that holds more than
    ``ceil(N / consumers)`` partitions gives some up (closing the partition's channel, so that
    the broker takes back its unacknowledged messages, in order, before the lock goes), and
    one that holds fewer takes free ones. So a consumer that joins gets its share within
    about two intervals, and the partitions of one that stops or dies (its connection closes:
    at once for a killed process, within ``heartbeat`` for a lost host) are taken over within
    an interval, with the unacknowledged messages first. Each aggregate's events are thus
    handled in order, by one consumer at a time. A message whose ``tactical-partitions``
    header names another number, or whose aggregate belongs to another partition, raises
    :class:`~tactical.outbox.PartitionMismatchError` (it is requeued; :meth:`run` logs the
    error and retries with backoff).

    Args:
        inbox: Handles the events.
        url: An AMQP URL.
        queue: The queue's name (one per consumer, e.g. the inbox consumer's name).
        exchange: The topic exchange the relay publishes to.
        routing_keys: Binding keys of the queue.
        prefetch: How many unacknowledged messages the broker sends ahead.
        timeout: Seconds to wait for connecting and for each request to the broker.
        heartbeat: The AMQP heartbeat in seconds (at least 1): a connection silent for so
            long is dead.
        partitions: Consume the publisher's partition queues, one of this many; None
            (the default): the one queue ``queue``.
        balance_interval: With ``partitions``, seconds between two looks at the live
            consumers and the free partitions.

    Raises:
        TypeError: ``inbox`` is an :class:`~tactical.outbox.AsyncInboxConsumer`, whose
            ``handle`` this consumer would not await.
        ValueError: ``heartbeat`` is below 1, ``timeout`` or ``balance_interval`` is not
            positive, or ``partitions`` is below 1; ``url`` is not an AMQP URL.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``heartbeat``; every wait is bounded, and a silent connection is replaced;
       ``partitions`` and ``balance_interval``.
    """

    def _setup(self) -> None:
        self._connection: Any = None
        self._channel: Any = None

    def _describe(self, error: BaseException) -> str:
        return describe_error(error)

    def consume_available(self, *, idle_timeout: float = 0.5) -> int:
        """Handle messages until none arrived for ``idle_timeout`` seconds; return how many.

        Partitioned, it takes the partitions it may hold, handles what they have and gives
        them up before it returns (``held_partitions`` is empty again).

        Raises:
            Exception: Connecting failed, the broker stopped answering, or handling a
                message raised (it was requeued).
        """
        return self._consume(None, idle_timeout)

    # run() is Consuming's; this is its documentation on this class.
    _run_doc = """Handle messages until ``stop`` is set; reconnect with bounded backoff on failures.

    Each failure is logged once, as a warning saying what failed, at which broker
    address, and when the next attempt is; the first success after failures is logged
    as consuming again.

    Args:
        stop: Set it to end the loop (checked at least every ``poll_interval`` s; the
            loop then returns within about ``timeout`` s).
        poll_interval: Seconds to wait for a message before checking ``stop``.
        initial_backoff: Seconds to wait after the first failure, doubling after each.
        max_backoff: The longest wait between attempts.
    """

    def _steps(
        self, stop: threading.Event, poll_interval: float
    ) -> dict[str, Callable[[], object]]:
        return {
            "connect": self._open_channel,
            "consume": lambda: self._consume(stop, poll_interval),
            "close": self.close,
        }

    def close(self) -> None:
        """Close the connection (unacknowledged messages go back to the queue).

        Waits at most ``timeout`` seconds for the broker to confirm, then drops the socket.
        """
        connection, self._connection, self._channel = self._connection, None, None
        self._forget()
        if connection is not None and connection.is_open:
            try:
                with answer_within(connection, self._timeout, "closing the connection"):
                    connection.close()
            except Exception:
                _log.debug("closing a broken RabbitMQ connection failed", exc_info=True)

    def _open_channel(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self._forget()  # whatever the last connection held went with it
        connection = pika.BlockingConnection(
            connection_parameters(self._url, timeout=self._timeout, heartbeat=self._heartbeat)
        )
        try:
            with answer_within(connection, self._timeout, f"declaring queue {self._queue!r}"):
                channel = connection.channel()
                channel.exchange_declare(
                    exchange=self._exchange, exchange_type="topic", durable=True
                )
                for name, partition in self._partition_queues():
                    channel.queue_declare(
                        queue=name, durable=True, arguments=self._queue_arguments(partition)
                    )
                    for key in self._binding_keys(partition):
                        channel.queue_bind(queue=name, exchange=self._exchange, routing_key=key)
                channel.basic_qos(prefetch_count=self._prefetch)
        except BaseException:
            self._connection = connection
            self.close()
            raise
        self._connection, self._channel = connection, channel
        return channel

    def _consume(self, stop: threading.Event | None, idle_timeout: float) -> int:
        channel = self._open_channel()
        consumption = _Consumption(
            channel,
            self._connection,
            self._subscribed_at_once(),
            self._timeout,
            self._prefetch,
            self._deliver,
            stop,
        )
        self._unsubscribed()
        try:
            return run(
                self._consuming(stop is not None, idle_timeout), lambda op: op.start(consumption)
            )
        finally:
            self._unsubscribed()

    def _deliver(
        self, channel: Any, partition: int | None, method: Any, properties: Any, body: bytes
    ) -> None:
        def perform(op: Handle | Settle) -> object:
            if isinstance(op, Handle):
                with op.source:
                    return self._inbox.handle(op.message)
            if op.ack:
                channel.basic_ack(delivery_tag=method.delivery_tag)
            elif channel.is_open:
                channel.basic_nack(delivery_tag=method.delivery_tag, requeue=op.requeue)
            return None

        run(
            self._delivery(
                body,
                properties.headers,
                properties.message_id,
                method.delivery_tag,
                partition,
                exchange=method.exchange,
                routing_key=method.routing_key,
            ),
            perform,
        )


_Delivery = tuple[Any, int | None, Any, Any, bytes]  # channel, partition, method, properties, body


def _ignore(_channel: Any, _method: Any, _properties: Any, _body: bytes) -> None:
    """What arrives on the members queue (nothing is routed there) is dropped."""


class _Consumption:
    """One consuming run on a pika connection: carries out :func:`amqp_consuming`'s operations.

    Consumes the one queue on the main channel, or each partition it holds on a channel of
    the partition's own (:mod:`~tactical.outbox._amqp_partitions`); deliveries are taken in
    the order they arrive, so each queue's stay in its order. A delivery from a channel
    closed since (a partition given up) is dropped: the broker requeued it.
    """

    def __init__(
        self,
        channel: Any,
        connection: Any,
        queues: Sequence[tuple[str, int | None]],
        timeout: float,
        prefetch: int,
        deliver: Callable[[Any, int | None, Any, Any, bytes], None],
        stop: threading.Event | None,
    ) -> None:
        self._channel = channel
        self._connection = connection
        self._queues = queues
        self._timeout = timeout
        self._prefetch = prefetch
        self._deliver = deliver
        self._stop = stop
        self._silence = Silence(connection)
        self._tags: list[str] | None = None
        self._arrived: deque[_Delivery] = deque()
        self._channels: dict[int, Any] = {}  # partition -> the channel it is consumed on
        self._members: str | None = None  # the members queue's consumer tag
        self._cancelled: set[int] = set()  # partitions whose consumer the broker cancelled

    def receive(self, seconds: float) -> _Delivery | None:
        if self._tags is None:
            self._tags = [
                self._channel.basic_consume(name, self._arrival(partition))
                for name, partition in self._queues
            ]
        if not self._arrived:
            self._connection.process_data_events(time_limit=seconds)
        while self._arrived:
            delivery = self._arrived.popleft()
            if delivery[0].is_open:
                return delivery
        return None

    def _arrival(self, partition: int | None) -> Callable[[Any, Any, Any, bytes], None]:
        def arrived(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            self._arrived.append((channel, partition, method, properties, body))

        return arrived

    def deliver(self, delivery: _Delivery) -> None:
        self._deliver(*delivery)

    def heard(self) -> None:
        self._silence.heard()

    def silent_for(self) -> float:
        return self._silence.silent_for()

    def abandon(self, error: BaseException) -> None:
        self._silence.abandon(error)

    def give_back(self) -> None:
        if not self._channel.is_open:
            return
        try:
            with answer_within(self._connection, self._timeout, "cancelling"):
                for tag in self._tags or ():
                    self._channel.basic_cancel(tag)
                # What arrived but was not handled goes back, in its order.
                while self._arrived:
                    channel, _, method, _, _ = self._arrived.popleft()
                    if channel.is_open:
                        channel.basic_nack(delivery_tag=method.delivery_tag, requeue=True)
        except Exception:
            _log.debug("cancelling a RabbitMQ consumer failed", exc_info=True)

    def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # -- the partitions' operations (tactical.outbox._amqp_partitions)

    def join(self, queue: str, arguments: dict[str, Any]) -> None:
        with answer_within(self._connection, self._timeout, f"joining {queue!r}"):
            self._channel.queue_declare(queue=queue, durable=True, arguments=arguments)
            self._members = self._channel.basic_consume(queue, _ignore, auto_ack=True)

    def leave(self) -> None:
        tag, self._members = self._members, None
        if tag is not None and self._channel.is_open:
            with answer_within(self._connection, self._timeout, "leaving the members"):
                self._channel.basic_cancel(tag)

    def count(self, queue: str, arguments: dict[str, Any]) -> int:
        with answer_within(self._connection, self._timeout, f"declaring {queue!r}"):
            declared = self._channel.queue_declare(queue=queue, durable=True, arguments=arguments)
        return int(declared.method.consumer_count)

    def lock(self, partition: int, queue: str) -> bool:
        with answer_within(self._connection, self._timeout, f"locking {queue!r}"):
            channel = self._connection.channel()
            try:
                channel.queue_declare(queue=queue, exclusive=True)
            except pika_exceptions.ChannelClosedByBroker as error:
                if error.reply_code == _RESOURCE_LOCKED:
                    return False
                raise
        self._channels[partition] = channel
        return True

    def subscribe(self, partition: int, queue: str, exchange: str, keys: tuple[str, ...]) -> None:
        channel = self._channels[partition]
        self._cancelled.discard(partition)

        def cancelled(_frame: object) -> None:
            self._cancelled.add(partition)

        channel.add_on_cancel_callback(cancelled)
        with answer_within(self._connection, self._timeout, f"consuming {queue!r}"):
            for key in keys:
                channel.queue_bind(queue=queue, exchange=exchange, routing_key=key)
            channel.basic_qos(prefetch_count=self._prefetch)
            channel.basic_consume(queue, self._arrival(partition))

    def consuming(self, partition: int) -> bool:
        channel = self._channels.get(partition)
        return channel is not None and channel.is_open and partition not in self._cancelled

    def unsubscribe(self, partition: int) -> None:
        channel = self._channels.pop(partition, None)
        if channel is not None and channel.is_open:
            with answer_within(self._connection, self._timeout, "closing a partition's channel"):
                channel.close()

    def unlock(self, queue: str) -> None:
        with answer_within(self._connection, self._timeout, f"deleting {queue!r}"):
            self._channel.queue_delete(queue=queue)


_RESOURCE_LOCKED = 405  # the AMQP reply code: an exclusive queue another connection holds


_publish(__name__, globals(), ["AsyncRabbitMQConsumer", "AsyncRabbitMQPublisher"])
