"""What both RabbitMQ publishers decide, without a client: the message's AMQP form, the retry.

:class:`~tactical.outbox.rabbitmq.RabbitMQPublisher` (pika) and
:class:`~tactical.outbox.rabbitmq.AsyncRabbitMQPublisher` (aio-pika) drive
:func:`confirmed_publishing` with their own connection: it yields :class:`LinkCall`
operations (is the link usable, connect, send the batch and wait for its confirms, close),
which each publisher carries out by calling its method of that name.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from tactical._flow import Flow
from tactical.outbox._amqp_partitions import (
    PARTITION_ARGUMENTS,
    PartitionLocks,
    PartitionOp,
    binding_keys,
)
from tactical.outbox._broker_partitions import (
    PARTITIONS_HEADER,
    broker_partitions,
    check_partition,
    partition_queue,
    partition_routing_key,
)
from tactical.outbox._consumer_flow import (
    ConsumeOp,
    Handle,
    LoopOp,
    Settle,
    amqp_consuming,
    amqp_delivery,
    check_inbox,
    consumer_loop,
)
from tactical.outbox._message import (
    MessagingDestination,
    OutboxMessage,
    PublishError,
    wire_forms,
)
from tactical.outbox._partitions import partition_of
from tactical.outbox._telemetry import delivered, record_consumer_partitions

__all__ = [
    "DEFAULT_BALANCE_INTERVAL",
    "DEFAULT_EXCHANGE",
    "DEFAULT_HEARTBEAT",
    "AmqpConsumer",
    "ConfirmingPublisher",
    "LinkCall",
    "amqp_properties",
    "broker_address",
    "confirmed_publishing",
]

DEFAULT_EXCHANGE = "tactical.events"
DEFAULT_HEARTBEAT = 10
DEFAULT_BALANCE_INTERVAL = 1.0

if TYPE_CHECKING:
    from tactical.outbox._inbox_flow import InboxCore

_log = logging.getLogger("tactical.outbox")

_Wire = TypeVar("_Wire")


def checked_url(url: object, user: str) -> str:
    """``url``, refused with a ValueError unless it is an ``amqp://`` or ``amqps://`` URL.

    pika reads ``127.0.0.1:5672`` as a path and fails at the first connection with an
    ``IndexError``: refused here, saying what a URL looks like (its password hidden).
    """
    if isinstance(url, str) and urlsplit(url).scheme in ("amqp", "amqps"):
        return url
    shown = _PASSWORD.sub(r"\1***@", url) if isinstance(url, str) else url
    raise ValueError(
        f"{user} needs an AMQP URL such as amqp://guest:guest@127.0.0.1:5672/%2F "
        f"(amqps:// for TLS), got {shown!r}"
    )


_PASSWORD = re.compile(r"(//[^:/@]*:)[^@/]*@")


def broker_address(url: str) -> str:
    """``host:port`` of the broker at ``url``, for messages (the URL may hold a password)."""
    host, port = _host_port(url)
    return f"{host}:{port}"


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "localhost", parts.port or 5672


def amqp_destination(exchange: str, routing_key: str, queue: str | None = None) -> str:
    """``messaging.destination.name`` as the conventions for RabbitMQ spell it.

    ``<exchange>:<routing key>``, and ``:<queue>`` after it on the consumer's side, each
    left out when empty (the queue also when it is the routing key); ``amq.default`` for
    the default exchange without a routing key.
    """
    parts = [part for part in (exchange, routing_key) if part]
    if queue and queue != routing_key:
        parts.append(queue)
    return ":".join(parts) or "amq.default"


def amqp_properties(message: OutboxMessage, partitions: int | None = None) -> dict[str, Any]:
    """The AMQP basic properties of ``message``, as keyword arguments of either client.

    Persistent (``delivery_mode`` 2), JSON, the event id as ``message_id``, the flow's
    correlation id, the event type as ``type``, the event's time (seconds) as ``timestamp``
    and :attr:`~tactical.outbox.OutboxMessage.headers` as the headers, with the number of
    ``partitions`` (if partitioned) as the ``tactical-partitions`` header.
    """
    headers: dict[str, object] = dict(message.headers)
    if partitions is not None:
        headers[PARTITIONS_HEADER] = partitions
    return {
        "content_type": "application/json",
        "delivery_mode": 2,
        "message_id": str(message.event_id),
        "correlation_id": None if message.correlation_id is None else str(message.correlation_id),
        "type": message.event_type,
        "timestamp": int(message.occurred_at.timestamp()),
        "headers": headers,
    }


@dataclass(frozen=True, slots=True)
class LinkCall:
    """An operation of :func:`confirmed_publishing`: call the publisher's ``_<name>(*args)``.

    The names: ``usable`` (None without a link, else whether it is still open), ``connect``
    (replace any link by a new one), ``send`` (publish the wire forms, wait for every
    confirm), ``close``.
    """

    name: str
    args: tuple[object, ...] = ()

    def on(self, publisher: object) -> Any:
        """Call it on ``publisher``: its result, or for an async publisher the awaitable."""
        return getattr(publisher, f"_{self.name}")(*self.args)


def confirmed_publishing(
    messages: Sequence[OutboxMessage],
    encode: Callable[[OutboxMessage], _Wire],
    *,
    address: str,
    exchange: str,
    describe: Callable[[BaseException], str],
    lost: Callable[[BaseException], bool],
) -> Flow[LinkCall, None]:
    """Send ``messages`` on a confirming link, reconnecting once if an idle link was lost.

    Every message is encoded (``encode``) before anything is sent, so that one the broker's
    protocol cannot carry is refused (:class:`~tactical.outbox.UndeliverableError`) with
    nothing of the batch sent. A link that was open before this batch and turns out lost
    (``lost(error)``: the broker or the network dropped it while idle, which may only show
    once used) is replaced and the batch sent again (the broker may then have some of it
    twice; consumers deduplicate). Any other failure closes the link and is a
    :class:`~tactical.outbox.PublishError` naming ``address``, the batch's first event and
    ``exchange``.
    """
    if not messages:
        return
    wire = wire_forms(messages, encode)
    while True:
        usable: bool | None = yield LinkCall("usable")
        try:
            if not usable:
                yield LinkCall("connect")
                _log.info("connected to RabbitMQ at %s (exchange %r)", address, exchange)
            yield LinkCall("send", (wire,))
            return
        except Exception as error:
            yield LinkCall("close")
            if usable is not None and lost(error):
                _log.info(
                    "RabbitMQ connection to %s lost (%s): reconnecting", address, describe(error)
                )
                continue
            first = messages[0]
            raise PublishError(
                f"RabbitMQ at {address} did not confirm {len(messages)} event(s) "
                f"from {first.event_id} ({first.event_type}, outbox position "
                f"{first.position}) on exchange {exchange!r}: {describe(error)}"
            ) from error


class ConfirmingPublisher:
    """What both RabbitMQ publishers share: their settings, and the flow of one publish.

    A subclass sets up its connection state in ``_setup``, encodes a message for its client
    in ``_encode``, describes its client's errors in ``_describe``, tells a lost idle link in
    ``_lost``, and carries :class:`LinkCall` operations out with its ``_usable``,
    ``_connect``, ``_send`` and ``_close`` methods. The constructor's arguments are
    documented on the publishers.
    """

    def __init__(
        self,
        url: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
        *,
        exchange: str = DEFAULT_EXCHANGE,
        declare: bool = True,
        mandatory: bool = False,
        timeout: float = 10.0,
        partitions: int | None = None,
    ) -> None:
        self._partitions = broker_partitions(partitions)
        self._url = checked_url(url, type(self).__name__)
        self._exchange_name = exchange
        self._declare = declare
        self._mandatory = mandatory
        self._timeout = timeout
        self._setup()

    @property
    def exchange(self) -> str:
        """The exchange messages are published to."""
        return self._exchange_name

    @property
    def partitions(self) -> int | None:
        """The number of partitions events are routed into; None if not partitioned.

        .. versionadded:: 0.2.0
        """
        return self._partitions

    def messaging_destination(self, message: OutboxMessage, /) -> MessagingDestination:
        """Where ``message`` goes, for the relay's OpenTelemetry spans.

        ``rabbitmq``, ``<exchange>:<routing key>``, the routing key, the partition (if
        partitioned) and the broker's host and port.

        .. versionadded:: 0.2.0
        """
        routing_key = partition_routing_key(message, self._partitions)
        host, port = _host_port(self._url)
        return MessagingDestination(
            "rabbitmq",
            amqp_destination(self._exchange_name, routing_key),
            routing_key=routing_key,
            partition=(
                None
                if self._partitions is None
                else partition_of(message.aggregate_type, message.aggregate_id, self._partitions)
            ),
            server_address=host,
            server_port=port,
        )

    def _setup(self) -> None:
        raise NotImplementedError

    def _encode(self, message: OutboxMessage) -> object:
        raise NotImplementedError

    def _describe(self, error: BaseException) -> str:
        raise NotImplementedError

    def _lost(self, error: BaseException) -> bool:
        raise NotImplementedError

    def _publishing(self, messages: Sequence[OutboxMessage]) -> Flow[LinkCall, None]:
        return confirmed_publishing(
            messages,
            self._encode,
            address=broker_address(self._url),
            exchange=self._exchange_name,
            describe=self._describe,
            lost=self._lost,
        )


U = TypeVar("U", bound="InboxCore[Any]")  # the inbox consumer fed


class AmqpConsumer(Generic[U]):
    """What both RabbitMQ consumers share: their settings, their loop and each delivery's fate.

    A subclass sets up its connection state in ``_setup`` and describes its client's errors
    in ``_describe``. The constructor's arguments are documented on the consumers.
    """

    # Whether the consumer awaits its inbox consumer (an AsyncInboxConsumer) or calls it.
    _asynchronous: ClassVar[bool] = False

    def __init__(
        self,
        inbox: U,
        url: str = "amqp://guest:guest@127.0.0.1:5672/%2F",
        *,
        queue: str,
        exchange: str = DEFAULT_EXCHANGE,
        routing_keys: Sequence[str] = ("#",),
        prefetch: int = 10,
        timeout: float = 5.0,
        heartbeat: int = DEFAULT_HEARTBEAT,
        partitions: int | None = None,
        balance_interval: float = DEFAULT_BALANCE_INTERVAL,
    ) -> None:
        self._partitions = broker_partitions(partitions)
        if heartbeat < 1:
            raise ValueError(f"heartbeat must be at least 1 second, got {heartbeat}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if not balance_interval > 0:
            raise ValueError(f"balance_interval must be positive, got {balance_interval}")
        check_inbox(inbox, type(self).__name__, self._asynchronous)
        self._inbox = inbox
        self._url = checked_url(url, type(self).__name__)
        self._address = broker_address(url)
        self._queue = queue
        self._exchange = exchange
        self._routing_keys = tuple(routing_keys)
        self._prefetch = prefetch
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._label = f"RabbitMQ consumer {inbox.name}"
        # This consumer's own id in the partition ownership gauge, which reports the
        # partitions whose lock it holds.
        self._client_id = f"{inbox.name}/{uuid.uuid4().hex[:8]}"
        self._locks = (
            None
            if partitions is None
            else PartitionLocks(
                queue=queue,
                partitions=partitions,
                interval=balance_interval,
                label=self._label,
                exchange=exchange,
                routing_keys=self._routing_keys,
                report=functools.partial(
                    record_consumer_partitions,
                    "rabbitmq",
                    inbox.name,
                    self._client_id,
                    partitions,
                ),
            )
        )
        self._setup()

    @property
    def queue(self) -> str:
        """The queue consumed (with ``partitions``: the prefix of the partitions' queues)."""
        return self._queue

    @property
    def partitions(self) -> int | None:
        """The number of partition queues consumed; None if not partitioned.

        .. versionadded:: 0.2.0
        """
        return self._partitions

    @property
    def queues(self) -> tuple[str, ...]:
        """The names of the queues consumed, ``queue`` or one per partition (``queue.0``...).

        .. versionadded:: 0.2.0
        """
        if self._partitions is None:
            return (self._queue,)
        return tuple(partition_queue(self._queue, p) for p in range(self._partitions))

    @property
    def held_partitions(self) -> frozenset[int]:
        """The partitions whose queue this consumer consumes now (empty if not partitioned).

        .. versionadded:: 0.2.0
        """
        return frozenset(() if self._locks is None else self._locks.owned)

    def _partition_queues(self) -> list[tuple[str, int | None]]:
        """Each queue declared, with its partition (None if not partitioned)."""
        partitions = self._partitions
        if partitions is None:
            return [(self._queue, None)]
        return [(partition_queue(self._queue, p), p) for p in range(partitions)]

    def _subscribed_at_once(self) -> list[tuple[str, int | None]]:
        """The queues consumed from the start: the one queue; partitions only once locked."""
        return [] if self._partitions is not None else [(self._queue, None)]

    def _queue_arguments(self, partition: int | None) -> dict[str, Any] | None:
        """A partition's queue has a single active consumer; a plain queue, no arguments."""
        return None if partition is None else dict(PARTITION_ARGUMENTS)

    def _forget(self) -> None:
        """The connection closed: with it went the partitions' locks and subscriptions."""
        if self._locks is not None:
            self._locks.forget()

    def _binding_keys(self, partition: int | None) -> tuple[str, ...]:
        """The routing keys a queue is bound with: each of ``routing_keys``, in its partition."""
        if partition is None:
            return self._routing_keys
        return binding_keys(partition, self._routing_keys)

    def _setup(self) -> None:
        raise NotImplementedError

    def _describe(self, error: BaseException) -> str:
        raise NotImplementedError

    def _loop(self, initial_backoff: float, max_backoff: float) -> Flow[LoopOp, None]:
        return consumer_loop(
            label=self._label,
            source=self._source(),
            address=self._address,
            what_failed=lambda error: (
                f"consuming {self._source()} at {self._address} failed ({self._describe(error)})"
            ),
            connected_is_up=True,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
        )

    def _consuming(
        self, until_stopped: bool, idle_timeout: float
    ) -> Flow[ConsumeOp | PartitionOp, int]:
        return amqp_consuming(
            until_stopped=until_stopped,
            idle_timeout=idle_timeout,
            heartbeat=self._heartbeat,
            address=self._address,
            locks=self._locks,
        )

    def _source(self) -> str:
        if self._partitions is None:
            return f"queue {self._queue!r}"
        return f"partition queues {self._queue!r}.0-{self._partitions - 1}"

    def _unsubscribed(self) -> None:
        """Own no partition: before subscribing, and when the subscription ended."""
        if self._partitions is not None:
            record_consumer_partitions(
                "rabbitmq", self._inbox.name, self._client_id, self._partitions, frozenset()
            )

    def _delivery(
        self,
        body: bytes,
        headers: Mapping[str, Any] | None,
        message_id: object,
        delivery_tag: object,
        partition: int | None = None,
        *,
        exchange: str = "",
        routing_key: str = "",
    ) -> Flow[Handle | Settle, None]:
        partitions = self._partitions
        check: Callable[[OutboxMessage], None] | None = None
        if partition is None or partitions is None:
            queue = self._queue
        else:
            queue = partition_queue(self._queue, partition)

            def in_partition(message: OutboxMessage) -> None:
                check_partition(
                    message,
                    partition=partition,
                    partitions=partitions,
                    stated=(headers or {}).get(PARTITIONS_HEADER),
                    source=f"queue {queue!r}",
                )

            check = in_partition

        return amqp_delivery(
            label=self._label,
            queue=queue,
            body=body,
            headers=headers,
            message_id=message_id,
            delivery_tag=delivery_tag,
            check=check,
            source=delivered(
                "rabbitmq",
                lambda: amqp_destination(exchange, routing_key, queue),
                address=self._address,
                routing_key=routing_key,
                partition=partition,
                delivery_tag=delivery_tag if isinstance(delivery_tag, int) else None,
            ),
        )
