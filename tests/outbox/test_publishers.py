"""Every publisher passes the publisher contract; then what is particular to each one.

The contract (``contract.py``) runs on the in-process bus and on the real RabbitMQ and Redis
on loopback; the classes below add the checks that only make sense for one publisher.
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
import warnings
from collections.abc import Iterator

import pytest
import redis
from tests.outbox.brokers import (
    Broker,
    Rabbit,
    TcpProxy,
    rabbit_broker,
    rabbit_publisher,
    redis_broker,
)
from tests.outbox.contract import (
    BrokerPublisherContract,
    Destination,
    PublisherContract,
    sample_batch,
)
from tests.outbox.helpers import all_positions, commit_ticks, pending_positions
from tests.outbox.sides import AsyncSide, Side, SyncSide

import sqlalchemy as sa
from tactical import (
    DeserializationError,
    DomainEvent,
    EventBus,
    EventHandlerError,
    JsonCodec,
    Trace,
    current_trace,
)
from tactical.outbox import (
    EventBusPublisher,
    OutboxMessage,
    PublishError,
    UndeliverableError,
)

codec = JsonCodec()


def bus_arrival(message: OutboxMessage) -> object:
    """What a handler on the bus sees of a message: the decoded event, in the message's flow."""
    return (
        message.event_type,
        message.event_id,
        message.payload,
        Trace(message.correlation_id or message.event_id, message.event_id),
    )


class TestEventBusPublisher(PublisherContract):
    """The contract for the in-process bus: a refusing destination is a failing handler."""

    @pytest.fixture
    def destination(self) -> Destination:
        bus, refusing_bus = EventBus(), EventBus()
        arrived: list[object] = []

        def receive(event: DomainEvent) -> None:
            record = codec.event_to_record(event)
            arrived.append((record.type_name, event.event_id, record.payload, current_trace()))

        def refuse(event: DomainEvent) -> None:
            raise RuntimeError(f"cannot handle {event.event_id}")

        bus.subscribe(DomainEvent, receive)
        refusing_bus.subscribe(DomainEvent, refuse)
        return Destination(
            publisher=EventBusPublisher(bus, codec),
            received=lambda: list(arrived),
            arrival=bus_arrival,
            refusing=EventBusPublisher(refusing_bus, codec),
            failure=EventHandlerError,
            spoiled={"event_type": "nobody.Knows"},
        )

    def test_every_handler_receives_the_whole_batch_before_the_error(self) -> None:
        """One failing handler does not keep the others from any event of the batch."""
        bus = EventBus()
        seen: list[object] = []

        def refuse(event: DomainEvent) -> None:
            raise RuntimeError(f"cannot handle {event.event_id}")

        bus.subscribe(DomainEvent, refuse)
        bus.subscribe(DomainEvent, lambda event: seen.append(event.event_id))
        batch = sample_batch()
        with pytest.raises(EventHandlerError) as raised:
            EventBusPublisher(bus, codec).publish(batch)
        assert seen == [m.event_id for m in batch]
        assert len(raised.value.exceptions) == len(batch)

    def test_undecodable_message_is_undeliverable_and_publishes_nothing(self) -> None:
        """A message of an unknown type is refused for good before any handler ran, by position."""
        bus = EventBus()
        seen: list[DomainEvent] = []
        bus.subscribe(DomainEvent, seen.append)
        good, bad = sample_batch(aggregates=1, events_each=2)
        unknown = OutboxMessage(**{**_fields(bad), "event_type": "nobody.Knows"})
        with pytest.raises(UndeliverableError, match=f"outbox position {bad.position}") as raised:
            EventBusPublisher(bus, codec).publish([good, unknown])
        assert list(raised.value.reasons) == [bad.position]
        assert DeserializationError.__name__ in raised.value.reasons[bad.position]
        assert "nobody.Knows" in raised.value.reasons[bad.position]
        assert seen == []


def _fields(message: OutboxMessage) -> dict[str, object]:
    return {name: getattr(message, name) for name in OutboxMessage.__slots__}


@pytest.mark.rabbitmq
class TestRabbitMQPublisher(BrokerPublisherContract):
    """The contract on the real RabbitMQ, then the AMQP properties and mandatory routing."""

    @pytest.fixture
    def broker(self, rabbit: Rabbit) -> Iterator[Broker]:
        made = rabbit_broker(rabbit)
        yield made
        made.close()

    def test_messages_are_persistent_json_routed_by_event_type(
        self, side: Side, sqlite_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """Each row becomes a persistent JSON message routed by event type, with its id as message id."""
        commit_ticks(sqlite_engine, counters=1, ticks=3)
        publisher = rabbit_publisher(side, rabbit.exchange)
        assert side.relay(sqlite_engine, publisher).relay_once() == 3
        received = rabbit.drain()
        messages = [OutboxMessage.from_wire(body, p.headers) for _, p, body in received]
        assert [m.routing_key for m, _, _ in received] == [m.event_type for m in messages]
        assert {p.delivery_mode for _, p, _ in received} == {2}
        assert {p.content_type for _, p, _ in received} == {"application/json"}
        assert [p.message_id for _, p, _ in received] == [str(m.event_id) for m in messages]
        assert [p.correlation_id for _, p, _ in received] == [
            str(m.correlation_id) for m in messages
        ]
        assert [json.loads(body)["count"] for _, _, body in received] == [1, 2, 3]

    def test_sync_and_async_publishers_put_the_same_messages_on_the_wire(
        self, rabbit: Rabbit
    ) -> None:
        """A consumer cannot tell which publisher sent a message: same key, properties and body."""
        batch = sample_batch()
        sides = [SyncSide(), AsyncSide()]
        wire: list[list[tuple[object, ...]]] = []
        for side in sides:
            side.send(rabbit_publisher(side, rabbit.exchange), batch)
            wire.append(
                [
                    (m.routing_key, vars(p), body)  # every property, headers included
                    for m, p, body in rabbit.drain()
                ]
            )
            side.close()
        assert wire[0] == wire[1]
        assert len(wire[0]) == len(batch)

    def test_connection_that_stopped_answering_is_closed_when_given_up(
        self, side: Side, rabbit: Rabbit, proxy: TcpProxy
    ) -> None:
        """The socket of a hung connection is closed with the error, not left to the garbage collector."""
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
        publisher = rabbit_publisher(side, rabbit.exchange, url, timeout=self.timeout)
        side.send(publisher, sample_batch(start=1))
        proxy.pause()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.monotonic()
            with pytest.raises(PublishError, match="no answer from the broker while confirming"):
                side.send(publisher, sample_batch(start=7))
            elapsed = time.monotonic() - started
            proxy.resume()
            side.close()  # waits for the connections given up to be closed
            gc.collect()
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
        assert elapsed < 1.5 * self.timeout

    def test_a_failed_async_connect_leaves_no_unclosed_connection(self) -> None:
        """aio-pika drops a failed attempt's connection unclosed (its __del__ then schedules a
        close on whatever loop is current); the async publisher's and consumer's closes it."""
        import aio_pika

        from tactical.outbox._rabbitmq_async import connect

        with socket.socket() as unused:  # bound, not listening: the connection is refused
            unused.bind(("127.0.0.1", 0))
            url = f"amqp://guest:guest@127.0.0.1:{unused.getsockname()[1]}/%2F"

            async def attempt() -> BaseException | None:
                try:
                    await connect(url, timeout=2.0)
                except Exception as error:
                    return error
                return None

            failure = asyncio.run(attempt())
        assert isinstance(failure, (ConnectionError, OSError, aio_pika.exceptions.AMQPError))
        gc.collect()
        left_open = [
            o for o in gc.get_objects() if isinstance(o, aio_pika.Connection) and not o.is_closed
        ]
        assert left_open == []

    def test_messages_the_broker_nacks_are_a_publish_error(
        self, side: Side, sqlite_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """A queue refusing every message (reject-publish at length 0) is a nack: nothing is marked."""
        full = f"{rabbit.queue}.full"
        rabbit.channel.queue_declare(
            queue=full, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
        )
        rabbit.channel.queue_bind(queue=full, exchange=rabbit.exchange, routing_key="#")
        commit_ticks(sqlite_engine, counters=1, ticks=2)
        publisher = rabbit_publisher(side, rabbit.exchange)
        try:
            with pytest.raises(PublishError, match="nacked 2 message"):
                side.relay(sqlite_engine, publisher).relay_once()
        finally:
            rabbit.channel.queue_delete(queue=full)
        assert pending_positions(sqlite_engine) == all_positions(sqlite_engine)

    def test_mandatory_refuses_unroutable_messages(
        self, side: Side, sqlite_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """With mandatory=True a message no queue receives is an error and stays pending."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        rabbit.channel.queue_unbind(queue=rabbit.queue, exchange=rabbit.exchange, routing_key="#")
        publisher = rabbit_publisher(side, rabbit.exchange, mandatory=True)
        with pytest.raises(PublishError, match="UnroutableError"):
            side.relay(sqlite_engine, publisher).relay_once()
        assert pending_positions(sqlite_engine) == all_positions(sqlite_engine)


@pytest.mark.redis
class TestRedisStreamPublisher(BrokerPublisherContract):
    """The contract on the real Redis, then the layout of a stream entry."""

    @pytest.fixture
    def broker(self, redis_client: redis.Redis, stream_name: str) -> Iterator[Broker]:
        made = redis_broker(redis_client, stream_name)
        yield made
        made.close()

    def test_entry_holds_the_body_and_the_headers_as_json(
        self, side: Side, broker: Broker, redis_client: redis.Redis, stream_name: str
    ) -> None:
        """An entry has exactly two fields: the outbox JSON body and the headers as a JSON object."""
        (message,) = sample_batch(aggregates=1, events_each=1)
        side.send(broker.publisher(broker.port, side=side), [message])
        ((_, fields),) = redis_client.xrange(stream_name)
        assert fields == {
            b"body": message.body,
            b"headers": json.dumps(message.headers).encode(),
        }
