"""What the outbox loops log: what failed, where, what happens next, once; and when it recovers."""

from __future__ import annotations

import logging
import re

import pytest
from tests.outbox.brokers import Rabbit, TcpProxy
from tests.outbox.helpers import RecordingPublisher, commit_ticks, make_consumer, pending_count
from tests.outbox.sides import Side
from tests.outbox.test_dead_peers import BACKOFF, Loop, eventually, lines
from tests.postgres import postgres_url

import sqlalchemy as sa
from tactical.outbox._rabbitmq_channel import describe_error, pika_exceptions
from tactical.outbox.rabbitmq import RabbitMQConsumer


def attempts(messages: list[str]) -> list[int]:
    """The attempt numbers the failure lines report, in order."""
    return [int(m) for line in messages for m in re.findall(r"\(attempt (\d+)\)", line)]


@pytest.mark.rabbitmq
class TestRabbitMQConsumerLogs:
    def test_refused_connection_is_one_line_with_cause_and_address_then_resumption(
        self,
        consumer_engine: sa.Engine,
        rabbit: Rabbit,
        rabbit_proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Each refused connect is one warning naming the cause, the address and the next try."""
        consumer = RabbitMQConsumer(
            make_consumer(consumer_engine),
            f"amqp://guest:guest@127.0.0.1:{rabbit_proxy.port}/%2F",
            queue=rabbit.queue,
            exchange=rabbit.exchange,
            timeout=1.0,
        )
        address = f"127.0.0.1:{rabbit_proxy.port}"
        rabbit_proxy.stop()
        with caplog.at_level(logging.DEBUG, logger="tactical.outbox"):
            loop = Loop(lambda stop: consumer.run(stop, poll_interval=0.1, **BACKOFF))
            try:
                eventually(
                    lambda: len(lines(caplog, logging.WARNING, "retrying in")) >= 2,
                    "two failed attempts",
                )
                rabbit_proxy.start()
                eventually(
                    lambda: bool(lines(caplog, logging.INFO, "again after")), "consuming again"
                )
            finally:
                assert loop.stopped()
        failures = lines(caplog, logging.WARNING, "RabbitMQ consumer mirror")
        assert failures
        assert all(address in line and "Connection refused" in line for line in failures)
        assert attempts(failures) == list(range(1, len(failures) + 1))
        (resumed,) = lines(caplog, logging.INFO, "again after")
        assert f"consuming queue {rabbit.queue!r} at {address} again after" in resumed
        assert [r for r in caplog.records if r.name.startswith("pika")] == []

    def test_pika_loggers_are_quiet_unless_the_application_set_a_level(self) -> None:
        """Importing the RabbitMQ module lets only pika's CRITICAL lines through by default."""
        assert logging.getLogger("pika").getEffectiveLevel() == logging.CRITICAL
        assert logging.getLogger("tactical.outbox").getEffectiveLevel() < logging.CRITICAL


class TestRelayLogs:
    @pytest.mark.postgres
    @pytest.mark.parametrize("side", ["sync", "async", "asyncpg"], indirect=True)
    def test_database_failure_names_the_database_not_the_publisher(
        self,
        side: Side,
        postgres_engine: sa.Engine,
        postgres_proxy: TcpProxy,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An unreachable database is logged as the database at host:port/name, then recovery."""
        url = postgres_url().set(host="127.0.0.1", port=postgres_proxy.port)
        engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
        relay = side.relay(engine, RecordingPublisher())
        commit_ticks(postgres_engine, counters=1, ticks=1)
        postgres_proxy.stop()
        with caplog.at_level(logging.INFO, logger="tactical.outbox"):
            loop = Loop(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF))
            try:
                eventually(lambda: bool(lines(caplog, logging.WARNING, "retrying in")), "a failure")
                postgres_proxy.start()
                eventually(lambda: pending_count(postgres_engine) == 0, "rows published")
            finally:
                assert loop.stopped()
        engine.dispose()
        database = f"the database at 127.0.0.1:{postgres_proxy.port}/{url.database}"
        failures = lines(caplog, logging.WARNING, "outbox relay")
        assert failures
        # psycopg's refusal comes wrapped in SQLAlchemy's OperationalError, asyncpg's as it is.
        assert all(
            re.search(
                f"{re.escape(database)} failed \\((OperationalError|ConnectionRefusedError): ", line
            )
            for line in failures
        )
        assert not any("publishing failed" in line for line in failures)
        assert all("nothing was marked published, retrying in" in line for line in failures)
        assert lines(caplog, logging.INFO, f"publishing from {database} again after")

    def test_publisher_failure_is_logged_as_publishing_failed(
        self, side: Side, sqlite_engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A publisher that raises is named as the failure, with its error."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        relay = side.relay(sqlite_engine, RecordingPublisher(failures=2))
        with caplog.at_level(logging.INFO, logger="tactical.outbox"):
            loop = Loop(lambda stop: relay.run(stop, idle_interval=0.05, **BACKOFF))
            try:
                eventually(lambda: pending_count(sqlite_engine) == 0, "rows published")
            finally:
                assert loop.stopped()
        failures = lines(caplog, logging.WARNING, "outbox relay")
        assert len(failures) == 2
        assert all(
            "publishing failed (ConnectionError: broker unreachable (injected))" in line
            for line in failures
        )
        assert attempts(failures) == [1, 2]


class TestDescribeError:
    def test_a_cause_chain_that_loops_back_is_described_and_ends(self) -> None:
        """A pika error whose causes loop back to it is still described, in finite time."""
        inner = pika_exceptions.AMQPConnectionError()
        outer = pika_exceptions.AMQPConnectionError(inner)
        inner.__cause__ = outer
        assert describe_error(outer) == "AMQPConnectionError: AMQPConnectionError"
