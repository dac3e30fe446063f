"""The RabbitMQ and Redis Streams publishers against the real brokers on loopback."""

from __future__ import annotations

import json

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from tests.outbox.brokers import AMQP_URL, Rabbit, TcpProxy, closed_port
from tests.outbox.helpers import all_positions, commit_ticks, pending_positions, tick

import sqlalchemy as sa
from tactical import JsonCodec
from tactical.outbox import OutboxMessage, OutboxRelay, PublishError
from tactical.outbox.rabbitmq import RabbitMQPublisher
from tactical.outbox.redis_streams import RedisStreamPublisher
from tactical.testing._contract import CounterTicked

NO_RETRY = Retry(NoBackoff(), 0)
TICKED = JsonCodec().type_name(CounterTicked)


@pytest.mark.rabbitmq
class TestRabbitMQPublisher:
    def test_messages_arrive_persistent_with_routing_key_and_headers(
        self, sqlite_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """Each row becomes a persistent JSON message routed by event type, headers included."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=3)
        with RabbitMQPublisher(AMQP_URL, exchange=rabbit.exchange) as publisher:
            assert OutboxRelay(sqlite_engine, publisher).relay_once() == 3
        received = rabbit.drain()
        assert [m.routing_key for m, _, _ in received] == [TICKED] * 3
        assert {p.delivery_mode for _, p, _ in received} == {2}
        assert {p.content_type for _, p, _ in received} == {"application/json"}
        messages = [OutboxMessage.from_wire(body, p.headers) for _, p, body in received]
        assert [m.position for m in messages] == all_positions(sqlite_engine)
        assert [json.loads(body)["count"] for _, _, body in received] == [1, 2, 3]
        assert {m.aggregate_id for m in messages} == {str(counter_id)}
        assert [p.message_id for _, p, _ in received] == [str(m.event_id) for m in messages]
        assert {p.headers["type"] for _, p, _ in received} == {TICKED}
        assert {p.headers["version"] for _, p, _ in received} == {"1"}

    def test_unreachable_broker_leaves_rows_pending_until_it_is_back(
        self, sqlite_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """With RabbitMQ unreachable nothing is marked; with it back every row is delivered."""
        commit_ticks(sqlite_engine, counters=2, ticks=2)
        port = closed_port()
        down = RabbitMQPublisher(
            f"amqp://guest:guest@127.0.0.1:{port}/%2F", exchange=rabbit.exchange, timeout=1.0
        )
        with pytest.raises(PublishError, match=f"RabbitMQ at 127.0.0.1:{port} did not confirm"):
            OutboxRelay(sqlite_engine, down).relay_once()
        assert pending_positions(sqlite_engine) == all_positions(sqlite_engine)
        with RabbitMQPublisher(AMQP_URL, exchange=rabbit.exchange) as up:
            assert OutboxRelay(sqlite_engine, up).relay_once() == 4
        assert pending_positions(sqlite_engine) == []
        assert len(rabbit.drain()) == 4

    def test_mandatory_refuses_unroutable_messages(
        self, sqlite_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """With mandatory=True a message no queue receives is an error and stays pending."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        rabbit.channel.queue_unbind(queue=rabbit.queue, exchange=rabbit.exchange, routing_key="#")
        with (
            RabbitMQPublisher(AMQP_URL, exchange=rabbit.exchange, mandatory=True) as publisher,
            pytest.raises(PublishError, match="UnroutableError"),
        ):
            OutboxRelay(sqlite_engine, publisher).relay_once()
        assert pending_positions(sqlite_engine) == all_positions(sqlite_engine)

    def test_publisher_reconnects_after_the_connection_was_lost(
        self, sqlite_engine: sa.Engine, rabbit: Rabbit, rabbit_proxy: TcpProxy
    ) -> None:
        """A connection cut while idle is replaced by the next publish, which then succeeds."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        url = f"amqp://guest:guest@127.0.0.1:{rabbit_proxy.port}/%2F"
        with RabbitMQPublisher(url, exchange=rabbit.exchange) as publisher:
            relay = OutboxRelay(sqlite_engine, publisher)
            assert relay.relay_once() == 1
            rabbit_proxy.drop()
            tick(sqlite_engine, counter_id)
            assert relay.relay_once() == 1
        assert len(rabbit.drain()) == 2


@pytest.mark.redis
class TestRedisStreamPublisher:
    def test_entries_hold_body_and_headers_in_order(
        self, sqlite_engine: sa.Engine, redis_client: redis.Redis, stream_name: str
    ) -> None:
        """Each row becomes one stream entry with the JSON body and the headers, in order."""
        commit_ticks(sqlite_engine, counters=2, ticks=2)
        publisher = RedisStreamPublisher(redis_client, stream_name)
        assert OutboxRelay(sqlite_engine, publisher).relay_once() == 4
        entries = redis_client.xrange(stream_name)
        messages = [
            OutboxMessage.from_wire(fields[b"body"], json.loads(fields[b"headers"]))
            for _, fields in entries
        ]
        assert [m.position for m in messages] == all_positions(sqlite_engine)
        assert {m.event_type for m in messages} == {TICKED}

    def test_unreachable_redis_leaves_rows_pending(self, sqlite_engine: sa.Engine) -> None:
        """With Redis unreachable the relay raises PublishError naming the stream; nothing is marked."""
        commit_ticks(sqlite_engine, counters=1, ticks=2)
        down = redis.Redis(
            host="127.0.0.1", port=closed_port(), socket_connect_timeout=1, retry=NO_RETRY
        )
        with pytest.raises(PublishError, match="to stream 'tactical:events'"):
            OutboxRelay(sqlite_engine, RedisStreamPublisher(down)).relay_once()
        assert pending_positions(sqlite_engine) == all_positions(sqlite_engine)
