"""Proofs against the real brokers and databases on loopback: nothing lost, nothing applied twice.

Each proof that takes ``broker`` runs on RabbitMQ and on Redis Streams; ``engine`` runs it on
SQLite and PostgreSQL; ``postgres_engine`` proofs are about several relays at once. Those that
also take ``side`` run the sync relay and publisher, then the async ones (aio-pika,
``redis.asyncio``) on each async driver: the same crash, the same outage, the same outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

import pytest
from tests.outbox.brokers import Broker, TcpProxy
from tests.outbox.helpers import (
    CounterMirrored,
    Flaky,
    all_positions,
    commit_ticks,
    make_consumer,
    mirrors,
    pending_count,
    pending_positions,
    relayed,
    tick,
)
from tests.outbox.sides import AsyncSide, Relay, Side

import sqlalchemy as sa
from sqlalchemy import event
from tactical import JsonCodec
from tactical.outbox import InboxConsumer, OutboxMessage, OutboxRelay, Outcome
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table
from tactical.testing import Counter, CounterTicked

codec = JsonCodec()


class RelayCrashed(Exception):
    """Stands for the relay process dying: raised where the mark would be written."""


def relay_engine(side: Side, engine: sa.Engine) -> sa.Engine:
    """The engine whose statements ``side``'s relays on ``engine``'s database run.

    The async side's ``AsyncEngine`` runs them on its sync core, where the events fire.
    """
    return side.async_engine(engine).sync_engine if isinstance(side, AsyncSide) else engine


@contextmanager
def crash_before_mark(engine: sa.Engine) -> Iterator[list[int]]:
    """The next UPDATE of the outbox (the relay's mark) dies; yields a list that records it."""
    crashed: list[int] = []

    def before_cursor_execute(*args: Any) -> None:
        statement: str = args[2]
        if not crashed and statement.lstrip().upper().startswith("UPDATE TACTICAL_OUTBOX"):
            crashed.append(1)
            raise RelayCrashed("relay died after the broker confirmed, before the mark")

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    try:
        yield crashed
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@contextmanager
def running_relays(
    engine: sa.Engine,
    publishers: Sequence[Any],
    batch_size: int = 200,
    side: Side | None = None,
    **options: float,
) -> Iterator[list[Relay]]:
    """Relays in threads (one per publisher, ``side``'s, else sync) running until the block ends."""
    stop = threading.Event()
    relays: list[Relay] = (
        [side.relay(engine, p, batch_size=batch_size) for p in publishers]
        if side is not None
        else [OutboxRelay(engine, p, batch_size=batch_size) for p in publishers]
    )
    settings = {"idle_interval": 0.01, "initial_backoff": 0.02, "max_backoff": 0.1} | options
    threads = [threading.Thread(target=r.run, args=(stop,), kwargs=settings) for r in relays]
    for thread in threads:
        thread.start()
    try:
        yield relays
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)


def relay_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == "tactical.outbox" and r.levelno == logging.WARNING
    ]


def counts_by_aggregate(messages: Sequence[OutboxMessage]) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for message in messages:
        counts.setdefault(message.aggregate_id, []).append(message.payload["count"])
    return counts


def bulk_outbox(engine: sa.Engine, aggregates: int, events_each: int) -> list[UUID]:
    """Insert aggregates x events_each CounterTicked rows, interleaved round-robin."""
    ids = [uuid4() for _ in range(aggregates)]
    aggregate_type = codec.type_name(Counter)
    rows: list[dict[str, Any]] = []
    for count in range(1, events_each + 1):
        for counter_id in ids:
            ticked = CounterTicked(counter_id, count)
            record = codec.event_to_record(ticked)
            rows.append(
                {
                    "event_id": ticked.event_id,
                    "event_type": record.type_name,
                    "event_version": record.schema_version,
                    "aggregate_type": aggregate_type,
                    "aggregate_id": str(counter_id),
                    "aggregate_version": count,
                    "payload": record.payload,
                    "occurred_at": ticked.occurred_at,
                    "correlation_id": ticked.event_id,
                }
            )
    with engine.begin() as connection:
        connection.execute(outbox_table.insert(), rows)
    return ids


class TestCrashBetweenPublishAndMark:
    def test_duplicate_is_delivered_inbox_dedupes_nothing_lost(
        self, engine: sa.Engine, side: Side, broker: Broker, consumer_engine: sa.Engine
    ) -> None:
        """A relay dying after the broker confirmed a batch resends it; the effect happens once."""
        ids = commit_ticks(engine, counters=3, ticks=5)
        publisher = broker.publisher(broker.port, side=side)
        relay = side.relay(engine, publisher, batch_size=10)
        with crash_before_mark(relay_engine(side, engine)) as crashed, pytest.raises(RelayCrashed):
            relay.relay_once()
        assert crashed
        assert pending_positions(engine) == all_positions(engine)  # nothing was marked
        restarted = side.relay(engine, broker.publisher(broker.port, side=side), batch_size=10)
        while restarted.relay_once():
            pass
        assert pending_positions(engine) == []
        consume = broker.consumer(make_consumer(consumer_engine))
        assert consume() == 25  # 15 events, the first 10 twice
        assert mirrors(consumer_engine) == {i: [1, 2, 3, 4, 5] for i in ids}
        assert broker.unacknowledged("mirror") == 0  # every copy was acknowledged


class TestBrokerDown:
    def test_rows_stay_pending_while_the_broker_is_down_then_are_delivered(
        self,
        engine: sa.Engine,
        side: Side,
        broker: Broker,
        broker_proxy: TcpProxy,
        consumer_engine: sa.Engine,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Events committed while the broker is unreachable wait in the outbox, then all arrive."""
        broker_proxy.stop()
        caplog.set_level(logging.WARNING, logger="tactical.outbox")
        publisher = broker.publisher(broker_proxy.port, side=side)
        with running_relays(engine, [publisher], side=side):
            ids = commit_ticks(engine, counters=2, ticks=2)
            tick(engine, ids[0], times=2)
            wait_until(lambda: len(relay_warnings(caplog)) >= 2)
            assert pending_positions(engine) == all_positions(engine)
            assert len(all_positions(engine)) == 6
            broker_proxy.start()
            wait_until(lambda: not pending_count(engine))
        assert "publishing failed" in relay_warnings(caplog)[0].getMessage()
        assert broker.consumer(make_consumer(consumer_engine))() == 6
        assert mirrors(consumer_engine) == {ids[0]: [1, 2, 3, 4], ids[1]: [1, 2]}

    def test_connection_cut_mid_stream_loses_nothing(
        self,
        engine: sa.Engine,
        side: Side,
        broker: Broker,
        broker_proxy: TcpProxy,
        consumer_engine: sa.Engine,
    ) -> None:
        """Cutting the relay's connection over and over while it works delays events, loses none."""
        publisher = broker.publisher(broker_proxy.port, side=side)
        with running_relays(engine, [publisher], side=side):
            ids = commit_ticks(engine, counters=4, ticks=1)
            for _ in range(5):
                for counter_id in ids:
                    tick(engine, counter_id)
                broker_proxy.drop()
            wait_until(lambda: not pending_count(engine))
        broker.consumer(make_consumer(consumer_engine))()
        assert mirrors(consumer_engine) == {i: [1, 2, 3, 4, 5, 6] for i in ids}


@pytest.mark.postgres
class TestSeveralRelaysOnPostgres:
    def test_two_relays_deliver_every_event_once_while_writers_commit(
        self, postgres_engine: sa.Engine, broker: Broker
    ) -> None:
        """Two relays racing while 2,000 events are committed: each event reaches the broker once."""
        publishers = [broker.publisher(broker.port) for _ in range(2)]
        with running_relays(postgres_engine, publishers):
            ids = commit_ticks(postgres_engine, counters=20, ticks=50)
            for counter_id in ids:
                tick(postgres_engine, counter_id, times=50)
            wait_until(lambda: not pending_count(postgres_engine))
        received = broker.read_all()
        assert len(received) == 2000
        assert sorted(m.position for m in received) == all_positions(postgres_engine)
        assert len({m.event_id for m in received}) == 2000
        assert counts_by_aggregate(received) == {str(i): list(range(1, 101)) for i in ids}

    @pytest.mark.slow
    def test_order_per_aggregate_holds_over_10000_events(
        self, postgres_engine: sa.Engine, broker: Broker
    ) -> None:
        """10,000 interleaved events of 50 aggregates, two relays: each aggregate's arrive in order."""
        ids = bulk_outbox(postgres_engine, aggregates=50, events_each=200)
        publishers = [broker.publisher(broker.port) for _ in range(2)]
        with running_relays(postgres_engine, publishers, batch_size=500):
            # About 12 s on a machine at load 9; the slow tests run side by side in CI.
            wait_until(lambda: not pending_count(postgres_engine), seconds=240)
        received = broker.read_all()
        assert len(received) == 10_000
        assert Tally(m.event_id for m in received).most_common(1)[0][1] == 1
        assert counts_by_aggregate(received) == {str(i): list(range(1, 201)) for i in ids}


class TestDeadLetters:
    def test_failing_aggregate_is_parked_while_others_flow_then_retried(
        self, sqlite_engine: sa.Engine, broker: Broker, consumer_engine: sa.Engine
    ) -> None:
        """X's events fail and are parked (not lost); Y's are handled; the queue drains; retry works."""
        x, y = commit_ticks(sqlite_engine, counters=2, ticks=3)
        OutboxRelay(sqlite_engine, broker.publisher(broker.port)).relay_once()
        handler = Flaky(failures=0)
        handler.fail_for = {x}
        inbox: InboxConsumer[SqlAlchemyUnitOfWork] = InboxConsumer(
            lambda: SqlAlchemyUnitOfWork(consumer_engine), "mirror", max_attempts=2, retry_delay=0
        )
        inbox.subscribe(CounterTicked, handler)
        assert broker.consumer(inbox)() == 6
        assert broker.unacknowledged("mirror") == 0
        assert mirrors(consumer_engine) == {y: [1, 2, 3]}
        parked = inbox.parked()
        assert [m.payload["count"] for m, _ in parked] == [1, 2, 3]
        assert "RuntimeError: refusing counter" in parked[0][1]
        assert all("held back" in error for _, error in parked[1:])
        handler.fail_for = set()
        assert inbox.retry_parked() == {Outcome.HANDLED: 3}
        assert mirrors(consumer_engine) == {x: [1, 2, 3], y: [1, 2, 3]}


class TestTracingThroughBrokers:
    def test_caused_events_carry_the_flow_through_the_broker(
        self, sqlite_engine: sa.Engine, broker: Broker, consumer_engine: sa.Engine
    ) -> None:
        """A consumer's events, relayed through the broker, keep the flow and name their cause."""
        commit_ticks(sqlite_engine, counters=1, ticks=2)
        origins = relayed(sqlite_engine)
        consumer = make_consumer(consumer_engine)
        for origin in origins:
            consumer.handle(origin)
        OutboxRelay(consumer_engine, broker.publisher(broker.port)).relay_once()
        received = broker.read_all()
        assert {m.event_type for m in received} == {codec.type_name(CounterMirrored)}
        assert [(m.correlation_id, m.causation_id) for m in received] == [
            (o.event_id, o.event_id) for o in origins
        ]
