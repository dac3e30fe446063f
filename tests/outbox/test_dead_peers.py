"""Every outbox loop notices a peer gone silent, says where, reconnects, and stops when told.

A fail-over through the test's proxy: the connections open at that moment stop forwarding
for good (their sockets stay open, so TCP looks alive), new connections work. Timeouts are
set short in each test; the bounds below only say "eventually", never "fast".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis
import redis.asyncio as redis_async
from tests.outbox.brokers import AMQP_URL, NO_ASYNC_RETRY, NO_RETRY, Rabbit, TcpProxy
from tests.outbox.contract import sample_batch
from tests.outbox.helpers import (
    RecordingPublisher,
    commit_ticks,
    make_consumer,
    mirrors,
    pending_count,
    side_consumer,
)
from tests.outbox.sides import AsyncSide, Relay, Side
from tests.postgres import postgres_url

import sqlalchemy as sa
from sqlalchemy import exc
from tactical.outbox import (
    AsyncInboxConsumer,
    OutboxMessage,
    OutboxRelay,
    Publisher,
    PublishError,
)
from tactical.outbox.rabbitmq import AsyncRabbitMQPublisher, RabbitMQPublisher
from tactical.outbox.redis_streams import (
    AsyncRedisStreamConsumer,
    AsyncRedisStreamPublisher,
    RedisStreamConsumer,
    RedisStreamPublisher,
)
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import Counter

EVENTUALLY = 15.0
"""Seconds within which something must have happened: a liveness bound, not a speed claim."""

BACKOFF: dict[str, float] = {"initial_backoff": 0.05, "max_backoff": 0.2}


def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + EVENTUALLY
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


class Loop:
    """A ``run(stop)`` loop in a thread of its own."""

    def __init__(self, run: Callable[[threading.Event], None]) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run, args=(self.stop,), daemon=True)
        self.thread.start()

    def stopped(self) -> bool:
        """Ask the loop to stop; True once it returned (within the liveness bound)."""
        self.stop.set()
        self.thread.join(EVENTUALLY)
        return not self.thread.is_alive()


@contextmanager
def looping(run: Callable[[threading.Event], None]) -> Iterator[Loop]:
    """Run ``run`` in a thread for the block; make sure it is stopped afterwards."""
    loop = Loop(run)
    try:
        yield loop
    finally:
        loop.stopped()


def lines(caplog: pytest.LogCaptureFixture, level: int, *parts: str) -> list[str]:
    """The tactical log lines of ``level`` that contain every one of ``parts``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("tactical")
        and r.levelno == level
        and all(part in r.getMessage() for part in parts)
    ]


def redis_via(proxy: TcpProxy) -> redis.Redis:
    """A client through ``proxy`` with a short socket timeout and no retries of its own."""
    return redis.Redis(
        host="127.0.0.1",
        port=proxy.port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=NO_RETRY,
    )


def amqp_via(proxy: TcpProxy) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"


def redis_publisher_via(proxy: TcpProxy, stream: str, side: Side) -> Any:
    """The side's Redis publisher through ``proxy``: short socket timeout, no retries."""
    if not isinstance(side, AsyncSide):
        client = redis_via(proxy)
        side.on_close(client.close)
        return RedisStreamPublisher(client, stream)
    async_client = redis_async.Redis(
        host="127.0.0.1",
        port=proxy.port,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=NO_ASYNC_RETRY,
    )
    side.on_close(async_client.aclose)
    return AsyncRedisStreamPublisher(async_client, stream)


def rabbit_publisher_via(proxy: TcpProxy, exchange: str, side: Side) -> Any:
    """The side's RabbitMQ publisher through ``proxy``, with a 1 s timeout."""
    kind = AsyncRabbitMQPublisher if isinstance(side, AsyncSide) else RabbitMQPublisher
    made = kind(amqp_via(proxy), exchange=exchange, timeout=1.0)
    side.on_close(made.close)
    return made


class ProducerSide:
    """Commits counters' ticks to an outbox and relays them to the real broker (not proxied)."""

    def __init__(self, engine: sa.Engine, publisher: Publisher) -> None:
        self.engine = engine
        self.relay = OutboxRelay(engine, publisher)
        self.expected: dict[UUID, list[int]] = {}

    def send_ticks(self) -> None:
        (counter_id,) = commit_ticks(self.engine, counters=1, ticks=2)
        self.expected[counter_id] = [1, 2]
        while self.relay.relay_once():
            pass


@pytest.mark.redis
class TestRedisConsumerWhenRedisGoesSilent:
    def test_silence_is_logged_with_the_address_and_consuming_resumes(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        redis_client: redis.Redis,
        stream_name: str,
        redis_proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A silenced connection times out, is logged with Redis's address, and is replaced."""
        producer = ProducerSide(sqlite_engine, RedisStreamPublisher(redis_client, stream_name))
        client = redis_via(redis_proxy)
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), client, stream=stream_name
        )
        with (
            caplog.at_level(logging.INFO, logger="tactical.outbox"),
            looping(lambda stop: consumer.run(stop, **BACKOFF)) as loop,
        ):
            producer.send_ticks()
            eventually(lambda: mirrors(consumer_engine) == producer.expected, "first events")
            assert redis_proxy.silence() >= 1
            producer.send_ticks()
            eventually(lambda: mirrors(consumer_engine) == producer.expected, "later events")
            assert loop.stopped()
        address = f"127.0.0.1:{redis_proxy.port}"
        assert lines(caplog, logging.WARNING, "Redis consumer mirror", address, "Timeout")
        assert lines(caplog, logging.INFO, "consuming stream", address, "again after")
        client.close()

    def test_stop_ends_run_while_redis_is_silent(
        self,
        side: Side,
        consumer_engine: sa.Engine,
        stream_name: str,
        redis_proxy: TcpProxy,
    ) -> None:
        """run() returns after a stop request although every open connection went silent."""
        client = redis_via(redis_proxy)
        consumer = side.redis_consumer(
            side_consumer(side, consumer_engine), client, stream=stream_name
        )
        loop = Loop(lambda stop: consumer.run(stop, **BACKOFF))
        eventually(lambda: redis_proxy.silence() >= 1, "a connection to silence")
        assert loop.stopped()
        client.close()

    def test_publisher_client_without_socket_timeout_is_refused(self) -> None:
        """A client that would wait for ever on a silent Redis is refused, saying what to set."""
        with pytest.raises(ValueError, match="RedisStreamPublisher needs a Redis client with a"):
            RedisStreamPublisher(redis.Redis(socket_timeout=None))

    def test_async_publisher_client_without_socket_timeout_is_refused(self) -> None:
        """The async publisher refuses a redis.asyncio client without a socket timeout too."""
        with pytest.raises(ValueError, match="AsyncRedisStreamPublisher needs a Redis client"):
            AsyncRedisStreamPublisher(redis_async.Redis(socket_timeout=None))

    def test_consumer_client_without_socket_timeout_is_refused(
        self, consumer_engine: sa.Engine
    ) -> None:
        """A consumer's client must have a socket timeout too."""
        inbox = make_consumer(consumer_engine)
        with pytest.raises(ValueError, match="needs a Redis client with a socket_timeout"):
            RedisStreamConsumer(inbox, redis.Redis(socket_timeout=None))

    def test_async_consumer_client_without_socket_timeout_is_refused(
        self, consumer_engine: sa.Engine
    ) -> None:
        """The async consumer refuses a redis.asyncio client without a socket timeout, by name."""
        inbox = AsyncInboxConsumer(lambda: pytest.fail("no unit of work is made"), "mirror")
        with pytest.raises(ValueError, match="AsyncRedisStreamConsumer needs a Redis client"):
            AsyncRedisStreamConsumer(inbox, redis_async.Redis(socket_timeout=None))

    def test_a_client_of_the_other_kind_is_refused(self, consumer_engine: sa.Engine) -> None:
        """A sync publisher would never run an async client's commands (and mark them sent)."""
        with pytest.raises(
            TypeError,
            match=r"RedisStreamPublisher calls its client without awaiting, but got a "
            r"redis\.asyncio\.Redis, whose commands would never run: give it a redis\.Redis, "
            r"or give this client to AsyncRedisStreamPublisher",
        ):
            RedisStreamPublisher(redis_async.Redis(socket_timeout=5))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(
            TypeError,
            match=r"AsyncRedisStreamPublisher awaits its client, but got a sync redis\.Redis: "
            r"give it a redis\.asyncio\.Redis, or give this client to RedisStreamPublisher",
        ):
            AsyncRedisStreamPublisher(redis.Redis(socket_timeout=5))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(TypeError, match="RedisStreamConsumer calls its client without"):
            RedisStreamConsumer(make_consumer(consumer_engine), redis_async.Redis(socket_timeout=5))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        inbox = AsyncInboxConsumer(lambda: pytest.fail("no unit of work is made"), "mirror")
        with pytest.raises(TypeError, match="AsyncRedisStreamConsumer awaits its client"):
            AsyncRedisStreamConsumer(inbox, redis.Redis(socket_timeout=5))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    def test_a_url_instead_of_a_client_is_refused_with_the_fix(self) -> None:
        """A URL string is refused at once, saying how to make a client of it."""
        with pytest.raises(
            TypeError,
            match=r"RedisStreamPublisher needs a redis\.Redis client, got the string "
            r"'redis://127\.0\.0\.1:6379': make one with "
            r"redis\.Redis\.from_url\('redis://127\.0\.0\.1:6379', socket_timeout=5\)",
        ):
            RedisStreamPublisher("redis://127.0.0.1:6379")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(TypeError, match=r"make one with redis\.asyncio\.Redis\.from_url"):
            AsyncRedisStreamPublisher("redis://127.0.0.1:6379")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


@pytest.mark.redis
class TestRelayToRedisWhenRedisGoesSilent:
    def test_silence_is_logged_with_the_address_and_publishing_resumes(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        stream_name: str,
        redis_client: redis.Redis,
        redis_proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The relay's publish times out on the silent connection, says where, then delivers."""
        relay = side.relay(sqlite_engine, redis_publisher_via(redis_proxy, stream_name, side))
        with (
            caplog.at_level(logging.INFO, logger="tactical.outbox"),
            looping(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF)) as loop,
        ):
            commit_ticks(sqlite_engine, counters=1, ticks=2)
            eventually(lambda: pending_count(sqlite_engine) == 0, "first rows published")
            assert redis_proxy.silence() >= 1
            commit_ticks(sqlite_engine, counters=1, ticks=2)
            eventually(lambda: pending_count(sqlite_engine) == 0, "later rows published")
            assert loop.stopped()
        assert redis_client.xlen(stream_name) >= 4
        address = f"127.0.0.1:{redis_proxy.port}"
        assert lines(caplog, logging.WARNING, "publishing failed", f"Redis at {address}")
        assert lines(caplog, logging.INFO, "publishing from the database at", "again after")

    def test_stop_ends_run_while_redis_is_silent(
        self, side: Side, sqlite_engine: sa.Engine, stream_name: str, redis_proxy: TcpProxy
    ) -> None:
        """relay.run() returns after a stop request while its publish waits on a silent Redis."""
        relay = side.relay(sqlite_engine, redis_publisher_via(redis_proxy, stream_name, side))
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        loop = Loop(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF))
        eventually(lambda: pending_count(sqlite_engine) == 0, "first rows published")
        redis_proxy.silence()
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        assert loop.stopped()


@pytest.mark.rabbitmq
class TestRabbitMQConsumerWhenTheBrokerGoesSilent:
    def consumer(self, side: Side, consumer_engine: sa.Engine, rabbit: Rabbit, url: str) -> Any:
        return side.rabbit_consumer(
            side_consumer(side, consumer_engine),
            url,
            queue=rabbit.queue,
            exchange=rabbit.exchange,
            timeout=1.0,
            heartbeat=1,
        )

    def test_silence_is_logged_with_the_address_and_consuming_resumes(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        rabbit: Rabbit,
        rabbit_proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A connection silent for a heartbeat is given up, logged with its address, and replaced."""
        publisher = RabbitMQPublisher(AMQP_URL, exchange=rabbit.exchange)
        producer = ProducerSide(sqlite_engine, publisher)
        consumer = self.consumer(side, consumer_engine, rabbit, amqp_via(rabbit_proxy))
        with (
            caplog.at_level(logging.INFO, logger="tactical.outbox"),
            looping(lambda stop: consumer.run(stop, poll_interval=0.1, **BACKOFF)) as loop,
        ):
            producer.send_ticks()
            eventually(lambda: mirrors(consumer_engine) == producer.expected, "first events")
            assert rabbit_proxy.silence() >= 1
            producer.send_ticks()
            eventually(lambda: mirrors(consumer_engine) == producer.expected, "later events")
            assert loop.stopped()
        publisher.close()
        address = f"127.0.0.1:{rabbit_proxy.port}"
        assert lines(
            caplog, logging.WARNING, "RabbitMQ consumer mirror", address, "not even a heartbeat"
        )
        assert lines(caplog, logging.INFO, "consuming queue", address, "again after")

    def test_stop_ends_run_while_the_broker_is_silent(
        self, side: Side, consumer_engine: sa.Engine, rabbit: Rabbit, rabbit_proxy: TcpProxy
    ) -> None:
        """run() returns after a stop request although the broker stopped answering."""
        consumer = self.consumer(side, consumer_engine, rabbit, amqp_via(rabbit_proxy))
        loop = Loop(lambda stop: consumer.run(stop, poll_interval=0.1, **BACKOFF))
        eventually(lambda: rabbit_proxy.silence() >= 1, "a connection to silence")
        assert loop.stopped()


@pytest.mark.rabbitmq
class TestRelayToRabbitMQWhenTheBrokerGoesSilent:
    def test_silence_is_logged_with_the_address_and_publishing_resumes(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        rabbit: Rabbit,
        rabbit_proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An unconfirmed batch on the silent connection is logged with the address, then sent."""
        relay = side.relay(sqlite_engine, rabbit_publisher_via(rabbit_proxy, rabbit.exchange, side))
        with (
            caplog.at_level(logging.INFO, logger="tactical.outbox"),
            looping(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF)) as loop,
        ):
            commit_ticks(sqlite_engine, counters=1, ticks=2)
            eventually(lambda: pending_count(sqlite_engine) == 0, "first rows published")
            assert rabbit_proxy.silence() >= 1
            commit_ticks(sqlite_engine, counters=1, ticks=2)
            eventually(lambda: pending_count(sqlite_engine) == 0, "later rows published")
            assert loop.stopped()
        assert len(rabbit.drain()) >= 4
        address = f"127.0.0.1:{rabbit_proxy.port}"
        assert lines(caplog, logging.WARNING, "publishing failed", f"RabbitMQ at {address}")
        assert lines(caplog, logging.INFO, "publishing from the database at", "again after")

    def test_stop_ends_run_while_the_broker_is_silent(
        self, side: Side, sqlite_engine: sa.Engine, rabbit: Rabbit, rabbit_proxy: TcpProxy
    ) -> None:
        """relay.run() returns after a stop request while a batch waits for its confirms."""
        relay = side.relay(sqlite_engine, rabbit_publisher_via(rabbit_proxy, rabbit.exchange, side))
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        loop = Loop(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF))
        eventually(lambda: pending_count(sqlite_engine) == 0, "first rows published")
        rabbit_proxy.silence()
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        assert loop.stopped()

    def test_giving_up_a_silent_connection_breaks_nothing_inside_pika(
        self, rabbit: Rabbit, rabbit_proxy: TcpProxy, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Dropping the unanswered connection leaves pika's teardown without an internal error."""
        publisher = RabbitMQPublisher(amqp_via(rabbit_proxy), exchange=rabbit.exchange, timeout=1.0)
        first, second = sample_batch(start=1), sample_batch(start=7)
        with caplog.at_level(logging.ERROR, logger="pika"):
            publisher.publish(first)
            rabbit_proxy.silence()
            with pytest.raises(PublishError, match="no answer from the broker"):
                publisher.publish(second)
            publisher.publish(second)
        publisher.close()
        assert [r.getMessage() for r in caplog.records if r.name.startswith("pika")] == []


@pytest.mark.postgres
@pytest.mark.parametrize("side", ["sync", "async", "asyncpg"], indirect=True)
class TestPostgresRelayWhenTheDatabaseGoesSilent:
    def relay_via(
        self, side: Side, proxy: TcpProxy, publisher: Publisher
    ) -> tuple[Relay, sa.Engine]:
        url = postgres_url().set(host="127.0.0.1", port=proxy.port)
        engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
        return side.relay(engine, publisher, database_timeout=0.5), engine

    def test_silence_is_logged_with_the_address_and_relaying_resumes(
        self,
        side: Side,
        postgres_engine: sa.Engine,
        postgres_proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A round trip that never returns is cut after database_timeout, logged, and retried."""
        publisher = RecordingPublisher()
        relay, engine = self.relay_via(side, postgres_proxy, publisher)
        with (
            caplog.at_level(logging.INFO, logger="tactical.outbox"),
            looping(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF)) as loop,
        ):
            commit_ticks(postgres_engine, counters=1, ticks=2)
            eventually(lambda: pending_count(postgres_engine) == 0, "first rows published")
            assert postgres_proxy.silence() >= 1
            commit_ticks(postgres_engine, counters=1, ticks=2)
            eventually(lambda: pending_count(postgres_engine) == 0, "later rows published")
            assert loop.stopped()
        engine.dispose()
        assert len({m.event_id for m in publisher.published}) == 4
        database = f"127.0.0.1:{postgres_proxy.port}/"
        assert lines(caplog, logging.WARNING, f"the database at {database}", "did not answer")
        assert lines(caplog, logging.INFO, f"the database at {database}", "again after")

    def test_stop_ends_run_while_the_database_is_silent(
        self, side: Side, postgres_engine: sa.Engine, postgres_proxy: TcpProxy
    ) -> None:
        """relay.run() returns after a stop request while marking a batch on a silent database."""
        stop_requested = threading.Event()

        class SilencingPublisher(RecordingPublisher):
            """Silences the database and asks the relay to stop; the mark then meets silence."""

            def publish(self, messages: Sequence[OutboxMessage], /) -> None:
                super().publish(messages)
                postgres_proxy.silence()
                stop_requested.set()

        relay, engine = self.relay_via(side, postgres_proxy, SilencingPublisher())
        commit_ticks(postgres_engine, counters=1, ticks=1)
        loop = Loop(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF))
        eventually(stop_requested.is_set, "a batch published")
        assert loop.stopped()
        engine.dispose()

    def test_database_timeout_must_be_positive(
        self, side: Side, postgres_engine: sa.Engine
    ) -> None:
        """A zero or negative database_timeout is refused."""
        with pytest.raises(ValueError, match="database_timeout must be positive, got 0"):
            side.relay(postgres_engine, RecordingPublisher(), database_timeout=0)


class TestUnitOfWorkWhenTheDatabaseGoesSilent:
    def uow_via(self, proxy: TcpProxy) -> tuple[SqlAlchemyUnitOfWork, sa.Engine]:
        url = postgres_url().set(host="127.0.0.1", port=proxy.port)
        engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
        return SqlAlchemyUnitOfWork(engine, database_timeout=0.5), engine

    def test_a_commit_meeting_silence_fails_after_database_timeout_and_stores_nothing(
        self, postgres_engine: sa.Engine, postgres_proxy: TcpProxy
    ) -> None:
        """The commit is cut, raises naming database_timeout, and the next block reconnects."""
        uow, engine = self.uow_via(postgres_proxy)
        counter = Counter(uuid4(), "silent")
        with uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        raised: list[BaseException] = []

        def commit_on_a_silent_database() -> None:
            with uow:
                uow.repository(Counter).require(counter.id).tick()
                assert postgres_proxy.silence() >= 1
                try:
                    uow.commit()
                except exc.OperationalError as error:
                    raised.append(error)

        worker = threading.Thread(target=commit_on_a_silent_database, daemon=True)
        worker.start()
        worker.join(15)  # liveness bound, not a speed assertion: without a deadline it hangs
        assert not worker.is_alive(), "the commit hung on the silent connection"
        (error,) = raised
        assert any("database_timeout (0.5s)" in note for note in error.__notes__)
        with SqlAlchemyUnitOfWork(postgres_engine) as direct:
            assert direct.repository(Counter).require(counter.id).count == 0
            direct.rollback()
        with uow:  # a new connection through the proxy: the cut one was discarded
            uow.repository(Counter).require(counter.id).tick()
            uow.commit()
        with SqlAlchemyUnitOfWork(postgres_engine) as direct:
            assert direct.repository(Counter).require(counter.id).count == 1
            direct.rollback()
        engine.dispose()

    def test_database_timeout_must_be_positive(self, postgres_engine: sa.Engine) -> None:
        """A zero or negative database_timeout is refused when the unit of work is made."""
        with pytest.raises(ValueError, match="database_timeout must be positive, got -1"):
            SqlAlchemyUnitOfWork(postgres_engine, database_timeout=-1)
