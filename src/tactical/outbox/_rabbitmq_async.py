"""AsyncRabbitMQPublisher: the confirming RabbitMQ publisher on asyncio (aio-pika)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from tactical._extras import missing_extra
from tactical._flow import run_async
from tactical.outbox._amqp import ConfirmingPublisher, LinkCall, amqp_properties
from tactical.outbox._broker_partitions import partition_routing_key
from tactical.outbox._message import OutboxMessage

try:
    import aio_pika
    import aiormq
    from pamqp import commands as amqp_commands
    from pamqp import header as amqp_header
except ModuleNotFoundError as _missing:
    raise missing_extra(_missing, "tactical.outbox.rabbitmq", "rabbitmq") from _missing

__all__ = ["AsyncRabbitMQPublisher", "aio_pika", "aiormq", "connect", "describe_async_error"]

_log = logging.getLogger("tactical.outbox")

# aiormq 7 can queue a publish without waiting for the socket to drain, which makes a batch
# about 1.6 times as fast; older versions cannot.
_QUEUE_ONLY: dict[str, Any] = (
    {"wait": False} if "wait" in inspect.signature(aiormq.Channel.basic_publish).parameters else {}
)

# aiormq waits up to 2 s (READER_CLOSE_TIMEOUT) for the reader of a connection it closes.
_ABANDON_SECONDS = 3.0

_LOST = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
)


class _ClosedOnFailure(aio_pika.Connection):
    """An aio-pika connection that closes itself when connecting fails or is cancelled.

    ``aio_pika.connect`` drops the connection object of a failed attempt unclosed, and its
    ``__del__`` then schedules ``close()`` on whatever event loop is current wherever the
    garbage collector runs, where it may never run.
    """

    async def connect(self, timeout: float | None = None) -> None:
        try:
            await super().connect(timeout)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.close()
            raise


async def connect(url: str, *, timeout: float, **options: Any) -> aio_pika.abc.AbstractConnection:
    """``aio_pika.connect``, leaving no unclosed connection behind when it fails."""
    connection: aio_pika.abc.AbstractConnection = await aio_pika.connect(
        url, timeout=timeout, connection_class=_ClosedOnFailure, **options
    )
    return connection


class BrokerSilent(Exception):
    """The broker did not answer within the publisher's timeout (not a lost idle link)."""


class _Refused(Exception):
    """The broker nacked or returned messages."""


@dataclass(frozen=True, slots=True)
class _AmqpWire:
    """An outbox message as aiormq sends it, checked to be encodable beforehand."""

    message_id: str
    routing_key: str
    body: bytes
    properties: aiormq.spec.Basic.Properties


def _amqp_wire(
    message: OutboxMessage, *, exchange: str, mandatory: bool, partitions: int | None
) -> _AmqpWire:
    """The AMQP form of ``message``, encoded once here so that nothing fails mid-batch.

    The properties are the sync publisher's (:func:`amqp_properties`), so a consumer gets
    the same message from either.

    Raises:
        Exception: AMQP cannot carry the message (``UnicodeEncodeError`` for a lone surrogate
            in the payload, ``TypeError`` for a routing key or type over 255 UTF-8 bytes).
    """
    properties = amqp_properties(message, partitions)
    properties["timestamp"] = datetime.fromtimestamp(properties["timestamp"], UTC)
    properties["message_type"] = properties.pop("type")  # pamqp's name for it
    wire = _AmqpWire(
        str(message.event_id),
        partition_routing_key(message, partitions),
        message.body,
        aiormq.spec.Basic.Properties(**properties),
    )
    amqp_header.ContentHeader(0, len(wire.body), wire.properties).marshal()
    amqp_commands.Basic.Publish(
        exchange=exchange, routing_key=wire.routing_key, mandatory=mandatory
    ).marshal()
    return wire


def describe_async_error(error: BaseException) -> str:
    """``error``'s type and message, or its cause's where aio-pika's has no text."""
    text = str(error)
    if not text and error.__cause__ is not None:
        return f"{type(error).__name__}: {describe_async_error(error.__cause__)}"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class AsyncRabbitMQPublisher(ConfirmingPublisher):
    """:class:`RabbitMQPublisher` on asyncio (aio-pika): the same messages, confirms and errors.

    Each message is sent persistent, JSON, routed by its event type, with the same AMQP
    properties and headers as the sync publisher's (a consumer cannot tell them apart). The
    channel is in confirm mode: a batch is sent in one go and :meth:`publish` returns only
    after the broker confirmed every message of it. A nack, a returned message
    (``mandatory``), a lost connection, an unreachable broker or no answer within
    ``timeout`` (connecting, confirming) raises :class:`~tactical.outbox.PublishError`, and
    the relay marks nothing; a message AMQP cannot carry raises
    :class:`~tactical.outbox.UndeliverableError` before anything is sent, and the relay parks
    it. The connection is opened on first use and replaced after a failure, or when the
    broker dropped it while idle. It belongs to the event loop it was opened in.

    Args:
        url: An AMQP URL (``amqp://user:password@host:port/vhost``).
        exchange: The topic exchange's name; declared durable unless ``declare=False``.
        declare: Declare the exchange (idempotent) when connecting.
        mandatory: Refuse messages that no queue receives.
        timeout: Seconds to wait for connecting, for a batch to be confirmed, and for
            closing.
        partitions: As for :class:`RabbitMQPublisher`: route each event to its
            aggregate's partition, one of this many.

    .. versionadded:: 0.2.0
    """

    def _setup(self) -> None:
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._underlay: aiormq.abc.AbstractChannel | None = None
        self._hung = False
        self._closing: set[asyncio.Task[None]] = set()

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Send ``messages`` in order and wait until the broker confirmed all of them.

        As :meth:`RabbitMQPublisher.publish`, with the same errors.

        Raises:
            UndeliverableError: Some messages cannot be carried by AMQP; nothing was sent.
            PublishError: The batch was not confirmed (the error says why and where).
        """
        await run_async(self._publishing(messages), self._perform)

    def _encode(self, message: OutboxMessage) -> _AmqpWire:
        return _amqp_wire(
            message,
            exchange=self._exchange_name,
            mandatory=self._mandatory,
            partitions=self._partitions,
        )

    def _describe(self, error: BaseException) -> str:
        return describe_async_error(error)

    def _lost(self, error: BaseException) -> bool:
        return isinstance(error, _LOST)

    async def _perform(self, call: LinkCall) -> object:
        return await call.on(self)

    async def _usable(self) -> bool | None:
        if self._connection is None:
            return None
        channel = self._channel
        return not self._connection.is_closed and channel is not None and not channel.is_closed

    async def _connect(self) -> None:
        await self._close()
        try:
            async with asyncio.timeout(self._timeout):
                self._connection = await connect(self._url, timeout=self._timeout)
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
                self._channel = channel
                if self._declare:
                    await channel.declare_exchange(
                        self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                    )
                self._underlay = await channel.get_underlay_channel()
        except TimeoutError:
            self._hung = True
            raise BrokerSilent(
                f"no answer from the broker while connecting within {self._timeout}s"
            ) from None

    async def _send(self, wire: Sequence[_AmqpWire]) -> None:
        channel = self._underlay
        if channel is None:  # the flow connects first; a lost link is reported as such
            raise ConnectionError("no RabbitMQ connection to send on")
        try:
            async with asyncio.timeout(self._timeout):
                # Each publish queues its frames in call order (the channel's lock is fair)
                # without waiting for the socket to drain, then waits for its own confirm:
                # the batch goes out first, the waits overlap.
                results: list[object] = await asyncio.gather(
                    *(
                        channel.basic_publish(
                            w.body,
                            exchange=self._exchange_name,
                            routing_key=w.routing_key,
                            properties=w.properties,
                            mandatory=self._mandatory,
                            **_QUEUE_ONLY,
                        )
                        for w in wire
                    ),
                    return_exceptions=True,
                )
        except TimeoutError:
            self._hung = True
            raise BrokerSilent(
                f"no answer from the broker while confirming {len(wire)} message(s) within "
                f"{self._timeout}s"
            ) from None
        _raise_refusals(wire, results)

    async def _close(self) -> None:
        # The flow's close: it never waits on a broker that stopped answering (it would not
        # answer the close either); that connection is closed in the background, within
        # aio-pika's own bounds, and close() waits for it.
        connection, self._connection = self._connection, None
        self._channel = self._underlay = None
        hung, self._hung = self._hung, False
        if connection is None:
            return
        if not hung:
            await _close_within(connection, self._timeout)
            return
        task = asyncio.get_running_loop().create_task(_close_within(connection, None))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close the connection (a later :meth:`publish` opens a new one).

        Waits at most ``timeout`` seconds for the broker to answer, and a few more for the
        connections given up on a broker that stopped answering.
        """
        await self._close()
        if self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._timeout + _ABANDON_SECONDS):
                    await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> Self:
        """Return the publisher itself; the connection opens on the first :meth:`publish`."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the connection, as :meth:`close` does."""
        await self.close()


async def _close_within(connection: aio_pika.abc.AbstractConnection, seconds: float | None) -> None:
    try:
        async with asyncio.timeout(seconds):
            await connection.close()
    except Exception:  # a broken connection's close fails too: what matters is it is gone
        _log.debug("closing a broken RabbitMQ connection failed", exc_info=True)


def _raise_refusals(wire: Sequence[_AmqpWire], results: Sequence[object]) -> None:
    """Raise the first connection failure of a batch's publishes, or what the broker refused."""
    nacked: list[str] = []
    returned: list[str] = []
    for sent, result in zip(wire, results, strict=True):
        if isinstance(result, aiormq.exceptions.PublishError):
            returned.append(sent.message_id)
        elif isinstance(result, aiormq.exceptions.DeliveryError):
            nacked.append(sent.message_id)
        elif isinstance(result, BaseException):
            raise result
    if nacked:
        raise _Refused(f"the broker nacked {len(nacked)} message(s)")
    if returned:
        raise _Refused(
            f"UnroutableError: no queue is bound for {len(returned)} message(s) "
            f"(event ids {', '.join(returned[:3])})"
        )
