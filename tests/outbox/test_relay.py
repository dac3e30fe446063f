"""The sync and the async relay with an in-memory publisher, on SQLite and PostgreSQL (each driver)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from tests.outbox.helpers import (
    RecordingPublisher,
    all_positions,
    commit_ticks,
    pending_positions,
    tick,
)
from tests.outbox.sides import Relay, Side, make_side

import sqlalchemy as sa
from tactical import JsonCodec
from tactical.outbox import OutboxMessage
from tactical.sqlalchemy import outbox_table
from tactical.testing import CounterTicked


class TestRelayOnce:
    def test_rows_are_published_in_position_order_and_marked(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """One batch publishes every pending row in position order and marks each one."""
        ids = commit_ticks(engine, counters=3, ticks=4)
        publisher = RecordingPublisher()
        relay = side.relay(engine, publisher)
        assert relay.relay_once() == 12
        assert [m.position for m in publisher.published] == all_positions(engine)
        assert {m.aggregate_id for m in publisher.published} == {str(i) for i in ids}
        assert pending_positions(engine) == []
        assert relay.relay_once() == 0
        assert len(publisher.published) == 12

    def test_message_carries_the_outbox_row(self, side: Side, engine: sa.Engine) -> None:
        """A message holds the row's type, version, aggregate and payload as stored."""
        (counter_id,) = commit_ticks(engine, counters=1, ticks=2)
        publisher = RecordingPublisher()
        side.relay(engine, publisher).relay_once()
        first, second = publisher.published
        assert first.event_type == JsonCodec().type_name(CounterTicked)
        assert first.event_version == 1
        assert first.aggregate_id == str(counter_id)
        assert (first.aggregate_version, second.aggregate_version) == (1, 1)
        assert first.payload["count"] == 1
        assert second.payload["count"] == 2
        assert first.occurred_at.tzinfo is not None

    def test_batches_are_bounded_by_batch_size(self, side: Side, engine: sa.Engine) -> None:
        """No batch holds more than batch_size rows; later batches continue where it stopped."""
        commit_ticks(engine, counters=1, ticks=7)
        publisher = RecordingPublisher()
        relay = side.relay(engine, publisher, batch_size=3)
        assert [relay.relay_once() for _ in range(4)] == [3, 3, 1, 0]
        assert [m.position for m in publisher.published] == all_positions(engine)

    def test_failed_publish_marks_nothing(self, side: Side, engine: sa.Engine) -> None:
        """When the publisher raises, every row stays pending and is published on the next try."""
        commit_ticks(engine, counters=2, ticks=2)
        publisher = RecordingPublisher(failures=1)
        relay = side.relay(engine, publisher)
        with pytest.raises(ConnectionError, match="injected"):
            relay.relay_once()
        assert pending_positions(engine) == all_positions(engine)
        assert relay.relay_once() == 4
        assert pending_positions(engine) == []

    def test_rows_committed_later_are_published_by_the_next_batch(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """The relay keeps no cursor in memory: it resumes from what the outbox says."""
        (counter_id,) = commit_ticks(engine, counters=1, ticks=1)
        publisher = RecordingPublisher()
        side.relay(engine, publisher).relay_once()
        tick(engine, counter_id, times=2)
        assert side.relay(engine, publisher).relay_once() == 2
        assert [m.payload["count"] for m in publisher.published] == [1, 2, 3]

    def test_outbox_table_has_no_published_rows_before_relaying(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """Committing writes rows with published_at NULL: nothing is published by the commit."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        with sqlite_engine.connect() as connection:
            assert (
                connection.execute(
                    sa.select(sa.func.count()).where(outbox_table.c.published_at.is_not(None))
                ).scalar_one()
                == 0
            )

    def test_batch_size_must_be_positive(self, side: Side, sqlite_engine: sa.Engine) -> None:
        """A batch size below 1 is refused, naming the value."""
        with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
            side.relay(sqlite_engine, RecordingPublisher(), batch_size=0)


class TestRun:
    @pytest.mark.parametrize(
        ("worker", "options", "match"),
        [
            ("relay", {"idle_interval": 0}, "idle_interval must be positive, got 0"),
            ("relay", {"initial_backoff": -1.0}, "initial_backoff must be positive, got -1.0"),
            ("relay", {"max_backoff": 0.0}, "max_backoff must be positive, got 0.0"),
            ("timer worker", {"poll_interval": 0.0}, "poll_interval must be positive, got 0.0"),
        ],
    )
    def test_waits_that_would_spin_are_refused(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        worker: str,
        options: dict[str, float],
        match: str,
    ) -> None:
        """run() refuses a zero idle or poll interval (a busy loop) and backoffs that are not positive."""
        running = (
            side.relay(sqlite_engine, RecordingPublisher())
            if worker == "relay"
            else side.timer_worker(sqlite_engine)
        )
        with pytest.raises(ValueError, match=match):
            running.run(threading.Event(), **options)

    def test_run_backs_off_while_publishing_fails_then_delivers(
        self, side: Side, engine: sa.Engine, caplog: pytest.LogCaptureFixture
    ) -> None:
        """run() retries with growing delays, logs each failure, and delivers once it succeeds."""
        commit_ticks(engine, counters=1, ticks=3)
        publisher = RecordingPublisher(failures=3)
        relay = side.relay(engine, publisher)
        stop = threading.Event()
        caplog.set_level(logging.INFO, logger="tactical.outbox")
        thread = threading.Thread(
            target=relay.run,
            args=(stop,),
            kwargs={"idle_interval": 0.01, "initial_backoff": 0.02, "max_backoff": 0.05},
        )
        thread.start()
        try:
            deadline = time.monotonic() + 5
            while pending_positions(engine) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join(5)
        assert not thread.is_alive()
        assert pending_positions(engine) == []
        assert publisher.attempts >= 4
        assert len(publisher.published) == 3
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 3
        assert "attempt 3" in warnings[-1].getMessage()
        assert any("again after 3 failed" in r.getMessage() for r in caplog.records)

    def test_run_returns_when_stop_is_set(self, side: Side, sqlite_engine: sa.Engine) -> None:
        """A stopped relay leaves its loop even while it is idle."""
        stop = threading.Event()
        thread = threading.Thread(
            target=side.relay(sqlite_engine, RecordingPublisher()).run,
            args=(stop,),
            kwargs={"idle_interval": 10.0},
        )
        thread.start()
        time.sleep(0.05)
        stop.set()
        thread.join(2)
        assert not thread.is_alive()


class TestSeveralRelaysOnPostgres:
    @pytest.mark.postgres
    @pytest.mark.parametrize(
        "apis",
        [
            pytest.param(("sync",) * 4, id="sync"),
            pytest.param(("async",) * 4, id="async"),
            pytest.param(("sync", "async", "sync", "asyncpg"), id="sync-and-async"),
        ],
    )
    def test_parallel_relays_publish_every_row_once_in_order(
        self, apis: tuple[str, ...], postgres_engine: sa.Engine
    ) -> None:
        """Four relays (sync, async or both) racing over 2,000 rows publish each once, in order."""
        commit_ticks(postgres_engine, counters=20, ticks=100)
        publisher = RecordingPublisher()
        sides = {api: make_side(api) for api in set(apis)}
        relays = [sides[api].relay(postgres_engine, publisher, batch_size=50) for api in apis]

        # Until the outbox is empty (a relay that lost the lock 20 times in a row is not
        # done: on a loaded machine they all could), bounded by a deadline; every thread
        # ends before the sides close, so that no batch is cut mid-transaction.
        deadline = time.monotonic() + 120

        def drain(relay: Relay) -> None:
            while pending_positions(postgres_engine) and time.monotonic() < deadline:
                relay.relay_once()

        threads = [threading.Thread(target=drain, args=(r,)) for r in relays]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(150)
        assert not any(thread.is_alive() for thread in threads)
        for side in sides.values():
            side.close()
        positions = [m.position for m in publisher.published]
        assert sorted(positions) == all_positions(postgres_engine)
        assert len(set(positions)) == len(positions) == 2000
        by_aggregate: dict[str, list[int]] = {}
        for message in publisher.published:
            by_aggregate.setdefault(message.aggregate_id, []).append(message.payload["count"])
        assert all(counts == list(range(1, 101)) for counts in by_aggregate.values())


class TestOutboxMessage:
    def test_wire_form_round_trips(self) -> None:
        """from_wire(body, headers) rebuilds the message that produced them."""
        message = OutboxMessage(
            position=7,
            event_id=uuid4(),
            event_type="billing.Invoiced",
            event_version=2,
            aggregate_type="billing.Invoice",
            aggregate_id="inv-1",
            aggregate_version=3,
            payload={"amount": "12.50", "lines": [1, 2], "note": "é"},
            occurred_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
            correlation_id=uuid4(),
            causation_id=uuid4(),
        )
        assert OutboxMessage.from_wire(message.body, message.headers) == message
        raw = {k: v.encode() for k, v in message.headers.items()}
        assert OutboxMessage.from_wire(message.body.decode(), raw) == message

    def test_missing_header_is_named(self) -> None:
        """A message without a required header is refused with the header's name."""
        with pytest.raises(ValueError, match="header 'position' is missing"):
            OutboxMessage.from_wire(b"{}", {"event_id": str(uuid4())})

    def test_body_must_be_a_json_object(self) -> None:
        """A body that is not a JSON object is refused, naming the event."""
        event_id = uuid4()
        with pytest.raises(ValueError, match=f"body of event {event_id} is not a JSON object"):
            OutboxMessage.from_wire(b"[1]", {"event_id": str(event_id)})


class TestImports:
    def test_broker_clients_are_imported_only_by_their_modules(self) -> None:
        """tactical imports no SQL or broker client; tactical.outbox imports neither pika nor redis."""
        script = (
            "import sys, tactical; a = {m for m in ('sqlalchemy', 'pika', 'redis') if m in sys.modules}; "
            "import tactical.outbox; b = {m for m in ('pika', 'redis') if m in sys.modules}; "
            "print(sorted(a), sorted(b))"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert result.stdout.strip() == "[] []"
