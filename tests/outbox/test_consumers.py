"""The RabbitMQ and Redis Streams consumer loops against the real brokers on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import pytest
import redis
import redis.asyncio as redis_async
from sqlalchemy.ext.asyncio import create_async_engine
from tests.outbox.brokers import AMQP_URL, NO_RETRY, Rabbit, closed_port
from tests.outbox.contract import sample_batch
from tests.outbox.helpers import commit_ticks, mirrors, side_consumer
from tests.outbox.sides import Side
from tests.outbox.test_message import DEEP, deep_json, valid_headers

import sqlalchemy as sa
from tactical.outbox import AsyncInboxConsumer, InboxConsumer, OutboxRelay
from tactical.outbox.rabbitmq import (
    AsyncRabbitMQConsumer,
    AsyncRabbitMQPublisher,
    RabbitMQConsumer,
    RabbitMQPublisher,
)
from tactical.outbox.redis_streams import (
    AsyncRedisStreamConsumer,
    RedisStreamConsumer,
    RedisStreamPublisher,
)
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork


@pytest.mark.rabbitmq
class TestRabbitMQConsumer:
    def test_relayed_events_are_handled_and_acknowledged(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """Every relayed event reaches the handler once, in order, and leaves the queue."""
        ids = commit_ticks(sqlite_engine, counters=3, ticks=5)
        with RabbitMQPublisher(AMQP_URL, exchange=rabbit.exchange) as publisher:
            OutboxRelay(sqlite_engine, publisher).relay_once()
        consumer = side.rabbit_consumer(
            side_consumer(side, consumer_engine),
            AMQP_URL,
            queue=rabbit.queue,
            exchange=rabbit.exchange,
        )
        try:
            assert consumer.consume_available(idle_timeout=0.2) == 15
        finally:
            consumer.close()
        assert mirrors(consumer_engine) == {i: [1, 2, 3, 4, 5] for i in ids}
        assert rabbit.drain() == []

    def test_foreign_message_is_rejected_and_logged(
        self,
        side: Side,
        consumer_engine: sa.Engine,
        rabbit: Rabbit,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A message without tactical headers is rejected (not requeued) with an error log."""
        rabbit.channel.basic_publish(
            exchange=rabbit.exchange,
            routing_key="other.thing",
            body=b"{}",
            properties=pika.BasicProperties(headers={"kind": "legacy"}),
        )
        consumer = side.rabbit_consumer(
            side_consumer(side, consumer_engine),
            AMQP_URL,
            queue=rabbit.queue,
            exchange=rabbit.exchange,
        )
        with caplog.at_level(logging.ERROR, logger="tactical.outbox"):
            try:
                assert consumer.consume_available(idle_timeout=0.2) == 1
            finally:
                consumer.close()
        assert "not a tactical event" in caplog.text
        assert "header 'event_id' is missing" in caplog.text
        assert rabbit.drain() == []

    def test_message_nested_beyond_the_recursion_limit_is_rejected_and_logged(
        self,
        side: Side,
        consumer_engine: sa.Engine,
        rabbit: Rabbit,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A body nested too deep for json is rejected without requeue and logged with its id."""
        headers = valid_headers()
        rabbit.channel.basic_publish(
            exchange=rabbit.exchange,
            routing_key="billing.Invoiced",
            body=deep_json(),
            properties=pika.BasicProperties(message_id=headers["event_id"], headers=headers),
        )
        consumer = side.rabbit_consumer(
            side_consumer(side, consumer_engine),
            AMQP_URL,
            queue=rabbit.queue,
            exchange=rabbit.exchange,
        )
        with caplog.at_level(logging.ERROR, logger="tactical.outbox"):
            try:
                assert consumer.consume_available(idle_timeout=0.2) == 1
                assert consumer.consume_available(idle_timeout=0.2) == 0
            finally:
                consumer.close()
        (logged,) = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
        assert headers["event_id"] in logged
        assert "nested deeper than the recursion limit" in logged
        assert rabbit.drain() == []

    def test_run_handles_events_until_stopped(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """run() keeps consuming as events arrive and returns once stop is set."""
        consumer = side.rabbit_consumer(
            side_consumer(side, consumer_engine),
            AMQP_URL,
            queue=rabbit.queue,
            exchange=rabbit.exchange,
        )
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=4)
            with RabbitMQPublisher(AMQP_URL, exchange=rabbit.exchange) as publisher:
                OutboxRelay(sqlite_engine, publisher).relay_once()
            deadline = time.monotonic() + 5
            while mirrors(consumer_engine) != {counter_id: [1, 2, 3, 4]}:
                assert time.monotonic() < deadline, mirrors(consumer_engine)
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(5)
        assert not thread.is_alive()


@pytest.mark.redis
class TestRedisStreamConsumer:
    def test_relayed_events_are_handled_and_acknowledged(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        redis_client: redis.Redis,
        stream_name: str,
    ) -> None:
        """Every relayed entry reaches the handler once, in order, and is acknowledged."""
        ids = commit_ticks(sqlite_engine, counters=2, ticks=3)
        OutboxRelay(sqlite_engine, RedisStreamPublisher(redis_client, stream_name)).relay_once()
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), redis_client, stream=stream_name
        )
        assert consumer.consume_available() == 6
        assert consumer.consume_available() == 0
        assert mirrors(consumer_engine) == {i: [1, 2, 3] for i in ids}
        assert redis_client.xpending(stream_name, consumer.group)["pending"] == 0

    def test_entries_read_but_not_acknowledged_are_handled_first(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        redis_client: redis.Redis,
        stream_name: str,
    ) -> None:
        """Entries a crashed reader took without XACK are handled again before new ones."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=3)
        OutboxRelay(sqlite_engine, RedisStreamPublisher(redis_client, stream_name)).relay_once()
        inbox = side_consumer(side, consumer_engine)
        redis_client.xgroup_create(stream_name, inbox.name, id="0")
        taken = redis_client.xreadgroup(inbox.name, "consumer-1", {stream_name: ">"}, count=2)
        assert len(taken[0][1]) == 2  # read, then the reader "crashed" before handling
        consumer = side.redis_consumer(inbox, redis_client, stream=stream_name)
        assert consumer.consume_available() == 3
        assert mirrors(consumer_engine) == {counter_id: [1, 2, 3]}
        assert redis_client.xpending(stream_name, inbox.name)["pending"] == 0

    def test_foreign_entry_is_acknowledged_and_logged(
        self,
        side: Side,
        consumer_engine: sa.Engine,
        redis_client: redis.Redis,
        stream_name: str,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An entry that is not a tactical message is logged and acknowledged, not retried forever."""
        redis_client.xadd(stream_name, {"something": json.dumps({"else": 1})})
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), redis_client, stream=stream_name
        )
        with caplog.at_level(logging.ERROR, logger="tactical.outbox"):
            assert consumer.consume_available() == 1
        assert "not a tactical event" in caplog.text
        assert redis_client.xpending(stream_name, consumer.group)["pending"] == 0

    @pytest.mark.parametrize(
        ("fields", "reason"),
        [
            ({"body": b"{}", "headers": b'["event_id"]'}, "headers are a JSON list"),
            ({"body": b"{}", "headers": b'"event_id"'}, "headers are a JSON str"),
            ({"body": b"{}", "headers": b"[" * DEEP}, "headers are not JSON: nested too deep"),
            ({"body": deep_json(), "headers": None}, "nested deeper than the recursion limit"),
        ],
        ids=["headers-array", "headers-string", "headers-deep", "body-deep"],
    )
    def test_malformed_entry_is_acknowledged_and_logged_with_its_id(
        self,
        side: Side,
        consumer_engine: sa.Engine,
        redis_client: redis.Redis,
        stream_name: str,
        caplog: pytest.LogCaptureFixture,
        fields: dict[str, bytes | None],
        reason: str,
    ) -> None:
        """An entry whose headers or body cannot be read is logged with its id and reason, then acked."""
        entry: dict[str, bytes] = {
            name: json.dumps(valid_headers()).encode() if value is None else value
            for name, value in fields.items()
        }
        entry_id = redis_client.xadd(stream_name, entry).decode()  # pyright: ignore[reportArgumentType]
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), redis_client, stream=stream_name
        )
        with caplog.at_level(logging.ERROR, logger="tactical.outbox"):
            assert consumer.consume_available() == 1
            assert consumer.consume_available() == 0
        (logged,) = [r.getMessage() for r in caplog.records if "acknowledged" in r.getMessage()]
        assert entry_id in logged
        assert reason in logged
        assert redis_client.xpending(stream_name, consumer.group)["pending"] == 0

    def test_run_handles_entries_until_stopped(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        redis_client: redis.Redis,
        stream_name: str,
    ) -> None:
        """run() blocks on the stream, handles entries as they come, and stops when told."""
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), redis_client, stream=stream_name
        )
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=2)
            OutboxRelay(sqlite_engine, RedisStreamPublisher(redis_client, stream_name)).relay_once()
            deadline = time.monotonic() + 5
            while mirrors(consumer_engine) != {counter_id: [1, 2]}:
                assert time.monotonic() < deadline, mirrors(consumer_engine)
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(5)
        assert not thread.is_alive()


class TestLoopsWhileTheBrokerIsDown:
    """A consumer loop whose broker is unreachable logs, backs off, and still stops on request."""

    def run_briefly(self, run: Callable[[threading.Event], None]) -> float:
        stop = threading.Event()
        thread = threading.Thread(target=run, args=(stop,))
        thread.start()
        time.sleep(0.6)
        asked = time.monotonic()
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        return time.monotonic() - asked

    @pytest.mark.rabbitmq
    def test_rabbitmq_consumer_retries_with_backoff(
        self, side: Side, consumer_engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Connection failures are logged as warnings with the delay; stop ends the loop."""
        consumer = side.rabbit_consumer(
            side_consumer(side, consumer_engine),
            f"amqp://guest:guest@127.0.0.1:{closed_port()}/%2F",
            queue="never-declared",
            timeout=0.2,
        )
        with caplog.at_level(logging.WARNING, logger="tactical.outbox"):
            waited = self.run_briefly(
                lambda stop: consumer.run(stop, initial_backoff=0.05, max_backoff=0.1)
            )
        retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
        assert len(retries) >= 2
        assert "RabbitMQ consumer mirror" in retries[0].getMessage()
        assert waited < 2

    @pytest.mark.redis
    def test_redis_consumer_retries_with_backoff(
        self, side: Side, consumer_engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Connection failures are logged as warnings with the delay; stop ends the loop."""
        client = redis.Redis(
            port=closed_port(), socket_timeout=1, socket_connect_timeout=0.2, retry=NO_RETRY
        )
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), client, stream="nowhere"
        )
        with caplog.at_level(logging.WARNING, logger="tactical.outbox"):
            waited = self.run_briefly(
                lambda stop: consumer.run(stop, initial_backoff=0.05, max_backoff=0.1)
            )
        retries = [r for r in caplog.records if "retrying in" in r.getMessage()]
        assert len(retries) >= 2
        assert "Redis consumer mirror" in retries[0].getMessage()
        assert waited < 2


class TestAmqpUrls:
    @pytest.mark.parametrize("url", ["127.0.0.1:5672", "localhost:5672", "http://localhost/"])
    def test_what_is_not_an_amqp_url_is_refused_when_made(self, url: str) -> None:
        """pika would fail at the first connection (an IndexError for host:port): refused now."""
        inbox = AsyncInboxConsumer(lambda: pytest.fail("no unit of work is made"), "mirror")
        for make in (
            lambda: RabbitMQPublisher(url),
            lambda: AsyncRabbitMQPublisher(url),
            lambda: AsyncRabbitMQConsumer(inbox, url, queue="q"),
        ):
            with pytest.raises(
                ValueError,
                match=r"needs an AMQP URL such as amqp://guest:guest@127\.0\.0\.1:5672/%2F "
                rf"\(amqps:// for TLS\), got '{re.escape(url)}'",
            ):
                make()

    def test_the_refusal_hides_the_password(self) -> None:
        """A URL of another scheme may hold a password: the message does not show it."""
        with pytest.raises(ValueError, match=r"got 'http://guest:\*\*\*@broker/'") as raised:
            RabbitMQPublisher("http://guest:s3cret@broker/")
        assert "s3cret" not in str(raised.value)

    def test_amqp_and_amqps_urls_are_taken(self) -> None:
        """Both schemes are accepted as they are; nothing connects before the first publish."""
        assert RabbitMQPublisher("amqps://user:pw@broker:5671/%2F").exchange == "tactical.events"
        assert AsyncRabbitMQPublisher(AMQP_URL).exchange == "tactical.events"


class TestInboxKinds:
    """A broker consumer and its inbox consumer must both be sync or both be async."""

    def test_a_sync_broker_consumer_refuses_an_async_inbox(self) -> None:
        """It would acknowledge messages whose handling, never awaited, did not happen."""
        # Any: what a type checker refuses before it runs, as a caller without one passes it.
        inbox: Any = AsyncInboxConsumer(lambda: pytest.fail("no unit of work is made"), "billing")
        for make, name in (
            (lambda: RabbitMQConsumer(inbox, AMQP_URL, queue="q"), "RabbitMQConsumer"),
            (
                lambda: RedisStreamConsumer(inbox, redis.Redis(socket_timeout=5)),
                "RedisStreamConsumer",
            ),
        ):
            with pytest.raises(
                TypeError,
                match=rf"^{name} calls its inbox's handle\(\) without awaiting, but got "
                rf"AsyncInboxConsumer 'billing', whose handle\(\) is async and would never run: "
                rf"give it an InboxConsumer, or use Async{name}$",
            ):
                make()

    def test_an_async_broker_consumer_refuses_a_sync_inbox(self, tmp_path: Path) -> None:
        """It would await what a sync handle() returned, after that handle() committed."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
        inbox: Any = InboxConsumer(lambda: SqlAlchemyUnitOfWork(engine), "billing")
        for make, name in (
            (lambda: AsyncRabbitMQConsumer(inbox, AMQP_URL, queue="q"), "RabbitMQConsumer"),
            (
                lambda: AsyncRedisStreamConsumer(inbox, redis_async.Redis(socket_timeout=5)),
                "RedisStreamConsumer",
            ),
        ):
            with pytest.raises(
                TypeError,
                match=rf"^Async{name} awaits its inbox's handle\(\), but got InboxConsumer "
                rf"'billing', whose handle\(\) is not async: give it an AsyncInboxConsumer, "
                rf"or use {name}$",
            ):
                make()
        engine.dispose()

    def test_an_inbox_refuses_units_of_work_of_the_other_kind(self, tmp_path: Path) -> None:
        """Said when the first message comes, naming the unit of work the factory made."""
        message = sample_batch(aggregates=1, events_each=1)[0]
        database = tmp_path / "inbox.db"
        engine = sa.create_engine(f"sqlite:///{database}")
        async_engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
        async_uow: Any = AsyncSqlAlchemyUnitOfWork(async_engine)
        sync_uow: Any = SqlAlchemyUnitOfWork(engine)
        sync_inbox = InboxConsumer(lambda: async_uow, "a")
        with pytest.raises(
            TypeError,
            match=r"^InboxConsumer 'a': its unit of work factory made AsyncSqlAlchemyUnitOfWork, "
            r"which is not a sync unit of work \(no `with`\)",
        ):
            sync_inbox.handle(message)
        async_inbox = AsyncInboxConsumer(lambda: sync_uow, "b")
        with pytest.raises(
            TypeError,
            match=r"^AsyncInboxConsumer 'b': its unit of work factory made SqlAlchemyUnitOfWork, "
            r"which is not an async unit of work \(no `async with`\)",
        ):
            asyncio.run(async_inbox.handle(message))
        engine.dispose()
        asyncio.run(async_engine.dispose())
