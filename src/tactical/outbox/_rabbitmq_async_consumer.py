"""AsyncRabbitMQConsumer: the RabbitMQ consumer loop on asyncio (aio-pika)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tactical._flow import run_async
from tactical.outbox._amqp import AmqpConsumer
from tactical.outbox._amqp_partitions import PartitionOp
from tactical.outbox._async_inbox import AsyncInboxConsumer
from tactical.outbox._consumer_flow import AsyncConsuming, BrokerSilent, ConsumeOp, Handle, Settle
from tactical.outbox._rabbitmq_async import aio_pika, aiormq, connect, describe_async_error

__all__ = ["AsyncRabbitMQConsumer"]

_log = logging.getLogger("tactical.outbox")

T = TypeVar("T")

_Delivery = tuple["int | None", "aio_pika.abc.AbstractIncomingMessage"]  # partition, message


def _arrival(
    deliveries: asyncio.Queue[_Delivery], partition: int | None
) -> Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]]:
    """Put what arrives from a partition's queue (or the one queue) in ``deliveries``."""

    async def arrived(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        await deliveries.put((partition, incoming))

    return arrived


class AsyncRabbitMQConsumer(AmqpConsumer[AsyncInboxConsumer[Any]], AsyncConsuming):
    """:class:`RabbitMQConsumer` on asyncio (aio-pika), feeding an :class:`~tactical.outbox.AsyncInboxConsumer`.

    The same queue, bindings, acknowledgements and logs (the two share their decisions):
    the queue is declared durable and bound for each of ``routing_keys``; each delivery is
    acknowledged only after :meth:`~tactical.outbox.AsyncInboxConsumer.handle` returned
    (committed with its inbox row, or parked); if handling raises, the delivery goes back to
    the queue and the consumer reconnects with backoff; a delivery that is not a tactical
    message is rejected without requeue and logged with its id and the reason. Messages are
    handled one at a time, in queue order, with ``prefetch`` sent ahead by the broker.

    **A broker that stops answering.** The connection negotiates an AMQP heartbeat of
    ``heartbeat`` seconds, and a connection from which nothing arrived for ``heartbeat``
    seconds is given up (as the sync consumer does; aio-pika's own check takes three
    heartbeats) and replaced; connecting, declaring, cancelling and closing are each
    bounded by ``timeout``. So :meth:`run` notices a dead broker within about ``heartbeat``
    seconds, logs it with the broker's address, reconnects, and returns within about
    ``timeout`` seconds of a stop request (or when its task is cancelled: the delivery
    being handled then goes back to the queue, and the connection is closed, as after a
    stop, within ``timeout``).

    Args:
        inbox: Handles the events (awaited).
        url: An AMQP URL.
        queue: As for :class:`RabbitMQConsumer`, and so are ``exchange``, ``routing_keys``,
            ``prefetch``, ``timeout`` (seconds for each request), ``heartbeat``,
            ``partitions`` (the same partition queues, locks, fair shares and checks) and
            ``balance_interval``.

    Raises:
        TypeError: ``inbox`` is a sync :class:`~tactical.outbox.InboxConsumer`.
        ValueError: ``heartbeat`` is below 1, ``timeout`` or ``balance_interval`` is not
            positive, or ``partitions`` is below 1; ``url`` is not an AMQP URL.

    .. versionadded:: 0.2.0
    """

    _asynchronous = True

    def _setup(self) -> None:
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._amqp_queues: list[tuple[aio_pika.abc.AbstractQueue, int | None]] | None = None

    def _describe(self, error: BaseException) -> str:
        return describe_async_error(error)

    async def consume_available(self, *, idle_timeout: float = 0.5) -> int:
        """Handle messages until none arrived for ``idle_timeout`` seconds; return how many.

        Partitioned, it takes the partitions it may hold, handles what they have and gives
        them up before it returns (``held_partitions`` is empty again).

        Raises:
            Exception: Connecting failed, the broker stopped answering, or handling a
                message raised (it was requeued).
        """
        return await self._consume(None, idle_timeout)

    # run() is AsyncConsuming's; this is its documentation on this class.
    _run_doc = """Handle messages until ``stop`` is set; reconnect with bounded backoff on failures.

    As :meth:`RabbitMQConsumer.run`: the same waits, backoff and log lines.

    Args:
        stop: Set it to end the loop (or cancel the task running it).
        poll_interval: As for :meth:`RabbitMQConsumer.run`, and so are
            ``initial_backoff`` and ``max_backoff``.
    """

    def _steps(
        self, stop: asyncio.Event, poll_interval: float
    ) -> dict[str, Callable[[], Awaitable[object]]]:
        return {
            "connect": self._open_channel,
            "consume": lambda: self._consume(stop, poll_interval),
            "close": self.close,
        }

    async def close(self) -> None:
        """Close the connection (unacknowledged messages go back to the queue).

        Waits at most ``timeout`` seconds for the broker to confirm.
        """
        connection, self._connection = self._connection, None
        self._channel = self._amqp_queues = None
        self._forget()
        if connection is None or connection.is_closed:
            return
        try:
            await self._within(connection.close(), "closing the connection")
        except Exception:
            _log.debug("closing a broken RabbitMQ connection failed", exc_info=True)

    async def _within(self, request: Awaitable[T], what: str) -> T:
        """Await ``request`` to the broker, at most ``timeout`` seconds."""
        try:
            async with asyncio.timeout(self._timeout):
                return await request
        except TimeoutError:
            raise BrokerSilent(
                f"no answer from RabbitMQ while {what} within {self._timeout}s"
            ) from None

    async def _open_channel(self) -> list[tuple[aio_pika.abc.AbstractQueue, int | None]]:
        connection, queues = self._connection, self._amqp_queues
        if connection is not None and not connection.is_closed and queues is not None:
            return queues
        await self.close()
        try:
            connection = self._connection = await self._within(
                connect(self._url, timeout=self._timeout, heartbeat=self._heartbeat),
                "connecting",
            )
            queues = await self._within(self._declare(connection), f"declaring {self._source()}")
        except BaseException:
            await self.close()
            raise
        self._amqp_queues = queues
        return queues

    async def _declare(
        self, connection: aio_pika.abc.AbstractConnection
    ) -> list[tuple[aio_pika.abc.AbstractQueue, int | None]]:
        channel = self._channel = await connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        exchange = await channel.declare_exchange(
            self._exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queues: list[tuple[aio_pika.abc.AbstractQueue, int | None]] = []
        at_once = self._subscribed_at_once()
        for name, partition in self._partition_queues():
            queue = await channel.declare_queue(
                name, durable=True, arguments=self._queue_arguments(partition)
            )
            for key in self._binding_keys(partition):
                await queue.bind(exchange, routing_key=key)
            if (name, partition) in at_once:
                queues.append((queue, partition))
        return queues

    async def _consume(self, stop: asyncio.Event | None, idle_timeout: float) -> int:
        queues = await self._open_channel()
        deliveries: asyncio.Queue[_Delivery] = asyncio.Queue()
        tags: list[tuple[aio_pika.abc.AbstractQueue, str]] = []

        async def cancel() -> None:
            for queue, tag in tags:
                await self._within(queue.cancel(tag), "cancelling")

        try:
            for queue, partition in queues:
                tag = await self._within(
                    queue.consume(_arrival(deliveries, partition)), f"consuming {queue.name!r}"
                )
                tags.append((queue, tag))
        except BaseException:
            with contextlib.suppress(Exception):
                await cancel()
            raise
        consumption = _Consumption(
            self._connection,
            self._channel,
            self._address,
            self._within,
            self._prefetch,
            cancel,
            self._deliver,
            deliveries,
            stop,
        )

        async def perform(op: ConsumeOp | PartitionOp) -> object:
            return await op.start(consumption)

        self._unsubscribed()
        try:
            return await run_async(self._consuming(stop is not None, idle_timeout), perform)
        finally:
            self._unsubscribed()

    async def _deliver(self, delivery: _Delivery) -> None:
        partition, incoming = delivery

        async def perform(op: Handle | Settle) -> object:
            if isinstance(op, Handle):
                with op.source:
                    return await self._inbox.handle(op.message)
            if op.ack:
                await incoming.ack()
            elif not incoming.channel.is_closed:
                await incoming.nack(requeue=op.requeue)
            return None

        flow = self._delivery(
            incoming.body,
            incoming.headers,
            incoming.message_id,
            incoming.delivery_tag,
            partition,
            exchange=incoming.exchange or "",
            routing_key=incoming.routing_key or "",
        )
        await run_async(flow, perform)


class _Consumption:
    """One consuming run on an aio-pika connection: carries out :func:`amqp_consuming`'s operations.

    Consumes the one queue, or each partition it holds on a channel of the partition's own
    (:mod:`~tactical.outbox._amqp_partitions`). A delivery from a channel closed since (a
    partition given up) is dropped: the broker requeued it. The silence is measured from
    the time aiormq last received a frame (aio-pika itself gives a connection up only after
    three heartbeats without one); where that is not known, aio-pika's own check remains,
    seen as the connection closing.
    """

    def __init__(
        self,
        connection: aio_pika.abc.AbstractConnection | None,
        channel: aio_pika.abc.AbstractChannel | None,
        address: str,
        within: Callable[[Awaitable[Any], str], Awaitable[Any]],
        prefetch: int,
        cancel: Callable[[], Awaitable[object]],
        deliver: Callable[[_Delivery], Awaitable[None]],
        deliveries: asyncio.Queue[_Delivery],
        stop: asyncio.Event | None,
    ) -> None:
        self._connection = connection
        self._channel = channel
        self._address = address
        self._within = within
        self._prefetch = prefetch
        self._cancel = cancel
        self._deliver = deliver
        self._deliveries = deliveries
        self._stop = stop
        transport = getattr(self._connection, "transport", None)
        self._amqp = getattr(transport, "connection", None)
        self._loop = asyncio.get_running_loop()
        self._heard = self._loop.time()
        self._channels: dict[int, aio_pika.abc.AbstractChannel] = {}
        self._members: tuple[aio_pika.abc.AbstractQueue, str] | None = None
        self._cancelled: set[int] = set()  # partitions whose consumer the broker cancelled

    async def receive(self, seconds: float) -> _Delivery | None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    delivery = await self._deliveries.get()
                    if not delivery[1].channel.is_closed:
                        return delivery
        return None

    async def deliver(self, delivery: _Delivery) -> None:
        await self._deliver(delivery)

    async def heard(self) -> None:
        self._heard = self._loop.time()

    async def silent_for(self) -> float | None:
        if self._connection is None or self._connection.is_closed:
            raise ConnectionError(f"the RabbitMQ connection to {self._address} closed")
        last: float | None = getattr(self._amqp, "_Connection__last_frame_time", None)
        if last is None:
            return None
        self._heard = max(self._heard, last)
        return self._loop.time() - self._heard

    async def abandon(self, error: BaseException) -> None:
        del error  # the loop's close gives the connection up, bounded by the timeout

    async def give_back(self) -> None:
        try:
            await self._cancel()
            while not self._deliveries.empty():
                incoming = self._deliveries.get_nowait()[1]
                if not incoming.channel.is_closed:
                    await incoming.nack(requeue=True)
        except Exception:
            _log.debug("cancelling a RabbitMQ consumer failed", exc_info=True)

    async def stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    # -- the partitions' operations (tactical.outbox._amqp_partitions)

    def _main(self) -> aio_pika.abc.AbstractChannel:
        if self._channel is None:
            raise ConnectionError(f"no RabbitMQ channel to {self._address}")
        return self._channel

    async def join(self, queue: str, arguments: dict[str, Any]) -> None:
        declared = await self._within(
            self._main().declare_queue(queue, durable=True, arguments=arguments),
            f"declaring {queue!r}",
        )
        tag = await self._within(declared.consume(_dropped, no_ack=True), f"joining {queue!r}")
        self._members = (declared, tag)

    async def leave(self) -> None:
        members, self._members = self._members, None
        if members is not None:
            await self._within(members[0].cancel(members[1]), "leaving the members")

    async def count(self, queue: str, arguments: dict[str, Any]) -> int:
        declared = await self._within(
            self._main().declare_queue(queue, durable=True, arguments=arguments),
            f"declaring {queue!r}",
        )
        result = declared.declaration_result
        return int(getattr(result, "consumer_count", 0) or 0)

    async def lock(self, partition: int, queue: str) -> bool:
        connection = self._connection
        if connection is None:
            raise ConnectionError(f"no RabbitMQ connection to {self._address}")
        channel = await self._within(connection.channel(), "opening a channel")
        try:
            await self._within(channel.declare_queue(queue, exclusive=True), f"locking {queue!r}")
        except aiormq.exceptions.ChannelLockedResource:
            return False
        self._channels[partition] = channel
        return True

    async def subscribe(
        self, partition: int, queue: str, exchange: str, keys: tuple[str, ...]
    ) -> None:
        channel = self._channels[partition]
        consumed = await channel.get_queue(queue, ensure=False)
        for key in keys:
            await self._within(consumed.bind(exchange, routing_key=key), f"binding {queue!r}")
        await self._within(channel.set_qos(prefetch_count=self._prefetch), "setting the prefetch")
        self._cancelled.discard(partition)

        def cancelled(_frame: object) -> None:
            self._cancelled.add(partition)

        underlay = await channel.get_underlay_channel()
        underlay.on_consumer_cancel_callbacks.add(cancelled)
        await self._within(
            consumed.consume(_arrival(self._deliveries, partition)), f"consuming {queue!r}"
        )

    async def consuming(self, partition: int) -> bool:
        channel = self._channels.get(partition)
        return channel is not None and not channel.is_closed and partition not in self._cancelled

    async def unsubscribe(self, partition: int) -> None:
        channel = self._channels.pop(partition, None)
        if channel is not None and not channel.is_closed:
            await self._within(channel.close(), "closing a partition's channel")

    async def unlock(self, queue: str) -> None:
        await self._within(self._main().queue_delete(queue), f"deleting {queue!r}")


async def _dropped(_incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
    """What arrives on the members queue (nothing is routed there) is dropped."""
