"""The timer worker fires due timers into the outbox once, on SQLite and PostgreSQL, sync and async."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from tests.outbox.sides import Side, make_side
from tests.postgres import postgres_url

import sqlalchemy as sa
from tactical import DomainEvent, EventBus, JsonCodec
from tactical.outbox import (
    TIMER_AGGREGATE_TYPE,
    EventBusPublisher,
    OutboxRelay,
    TimerWorker,
    partition_key,
)
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table, scheduled_table
from tactical.testing import Counter, CounterTicked, MovableClock

DAY = timedelta(days=1)


def schedule(
    engine: sa.Engine, clock: MovableClock, *timers: tuple[str, DomainEvent, timedelta]
) -> None:
    """Commit ``timers`` (key, message, due after the clock's now) in one unit of work."""
    with SqlAlchemyUnitOfWork(engine) as uow:
        for key, message, after in timers:
            uow.schedule(message, at=clock.now() + after, key=key)
        uow.commit()


def ticked(count: int = 1) -> CounterTicked:
    return CounterTicked(uuid4(), count)


def outbox_rows(engine: sa.Engine) -> list[sa.Row[tuple[object, ...]]]:
    t = outbox_table.c
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(t.event_id, t.event_type, t.aggregate_type, t.aggregate_id).order_by(
                    t.position
                )
            )
        )


def scheduled_keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.scalars(sa.select(scheduled_table.c.key).order_by(scheduled_table.c.key))
        )


class TestFiring:
    """What one worker does with due and future timers."""

    def test_a_timer_fires_once_its_time_comes_and_not_before(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Nothing fires until the clock reaches the due time; then the message is in the outbox."""
        clock = MovableClock()
        message = ticked()
        schedule(engine, clock, ("expire-policy-1", message, 30 * DAY))
        worker = side.timer_worker(engine, clock=clock)
        assert worker.fire_due() == 0
        clock.advance(30 * DAY - timedelta(seconds=1))
        assert worker.fire_due() == 0
        assert outbox_rows(engine) == []
        clock.advance(timedelta(seconds=1))
        assert worker.fire_due() == 1
        assert [tuple(r) for r in outbox_rows(engine)] == [
            (
                message.event_id,
                "tactical.testing._contract.CounterTicked",
                TIMER_AGGREGATE_TYPE,
                "expire-policy-1",
            )
        ]
        assert scheduled_keys(engine) == []

    def test_a_fired_message_is_in_its_timer_key_s_partition(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """The outbox row carries the partition key of (timer aggregate type, key) for relays."""
        clock = MovableClock()
        schedule(engine, clock, ("expire-policy-7", ticked(), DAY))
        clock.advance(2 * DAY)
        assert side.timer_worker(engine, clock=clock).fire_due() == 1
        with engine.connect() as connection:
            keys = list(connection.scalars(sa.select(outbox_table.c.partition_key)))
        assert keys == [partition_key(TIMER_AGGREGATE_TYPE, "expire-policy-7")]

    def test_a_fired_timer_is_not_fired_again(self, side: Side, engine: sa.Engine) -> None:
        """The second round finds nothing: the row left with its fire."""
        clock = MovableClock()
        schedule(engine, clock, ("a", ticked(), DAY))
        worker = side.timer_worker(engine, clock=clock)
        clock.advance(2 * DAY)
        assert worker.fire_due() == 1
        assert worker.fire_due() == 0
        assert len(outbox_rows(engine)) == 1

    def test_the_relay_publishes_the_fired_message_as_scheduled(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """A handler on the bus receives the very event that was scheduled."""
        clock = MovableClock()
        message = ticked(7)
        schedule(engine, clock, ("k", message, DAY))
        received: list[CounterTicked] = []
        bus = EventBus()
        bus.subscribe(CounterTicked, received.append)
        clock.advance(DAY)
        side.timer_worker(engine, clock=clock).fire_due()
        OutboxRelay(engine, EventBusPublisher(bus, JsonCodec())).relay_once()
        assert received == [message]

    def test_due_timers_fire_soonest_first_in_batches(self, side: Side, engine: sa.Engine) -> None:
        """A batch takes at most batch_size timers, the soonest due first."""
        clock = MovableClock()
        messages = [ticked(n) for n in range(5)]
        schedule(engine, clock, *((f"t{n}", m, (5 - n) * DAY) for n, m in enumerate(messages)))
        worker = side.timer_worker(engine, clock=clock, batch_size=2)
        clock.advance(10 * DAY)
        assert [worker.fire_due(), worker.fire_due(), worker.fire_due()] == [2, 2, 1]
        assert [r.event_id for r in outbox_rows(engine)] == [m.event_id for m in reversed(messages)]

    def test_a_cancelled_timer_never_fires(self, side: Side, engine: sa.Engine) -> None:
        """Cancelled before it was due: the worker finds nothing."""
        clock = MovableClock()
        schedule(engine, clock, ("pickup-deadline", ticked(), DAY))
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.cancel("pickup-deadline")
            uow.commit()
        clock.advance(2 * DAY)
        assert side.timer_worker(engine, clock=clock).fire_due() == 0
        assert outbox_rows(engine) == []

    def test_a_replaced_timer_fires_its_new_message_at_its_new_time(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Scheduling again under a key replaces both the message and the time."""
        clock = MovableClock()
        first, second = ticked(1), ticked(2)
        schedule(engine, clock, ("k", first, DAY))
        schedule(engine, clock, ("k", second, 3 * DAY))
        worker = side.timer_worker(engine, clock=clock)
        clock.advance(2 * DAY)
        assert worker.fire_due() == 0
        clock.advance(DAY)
        assert worker.fire_due() == 1
        assert [r.event_id for r in outbox_rows(engine)] == [second.event_id]

    def test_one_event_scheduled_under_two_keys_is_put_in_the_outbox_once(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Its event id is already in the outbox: the second fire has no further effect."""
        clock = MovableClock()
        message = ticked()
        schedule(engine, clock, ("a", message, DAY), ("b", message, DAY))
        clock.advance(DAY)
        side.timer_worker(engine, clock=clock).fire_due()
        assert [r.event_id for r in outbox_rows(engine)] == [message.event_id]
        assert scheduled_keys(engine) == []

    def test_a_timer_scheduled_with_an_aggregate_change_fires_after_it_commits(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """The timer rides in the aggregate's transaction, and fires after its own events."""
        clock = MovableClock()
        counter = Counter(uuid4(), "policy")
        reminder = ticked(99)
        with SqlAlchemyUnitOfWork(engine) as uow:
            counter.tick()
            uow.repository(Counter).add(counter)
            uow.schedule(reminder, at=clock.now() + DAY, key=f"remind-{counter.id}")
            uow.commit()
        clock.advance(DAY)
        assert side.timer_worker(engine, clock=clock).fire_due() == 1
        rows = outbox_rows(engine)
        assert [r.aggregate_type for r in rows] == [
            "tactical.testing._contract.Counter",
            TIMER_AGGREGATE_TYPE,
        ]
        assert rows[1].event_id == reminder.event_id

    def test_a_clock_that_returns_a_naive_time_is_refused(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """The worker will not guess the time zone of its clock."""

        class NaiveClock:
            def now(self) -> object:
                return MovableClock().now().replace(tzinfo=None)

        worker = side.timer_worker(engine, clock=NaiveClock())
        with pytest.raises(TypeError, match="timezone-aware datetime, got datetime"):
            worker.fire_due()


class TestParking:
    """Rows that can never be fired are parked with their error; the others fire."""

    @staticmethod
    def damage(engine: sa.Engine, key: str, **values: object) -> None:
        with engine.begin() as connection:
            connection.execute(
                scheduled_table.update().where(scheduled_table.c.key == key).values(**values)
            )

    def test_an_unknown_type_is_parked_and_the_others_fire(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """The unknown row keeps its error; the next rows go to the outbox."""
        clock = MovableClock()
        good = ticked()
        schedule(engine, clock, ("bad", ticked(), DAY), ("good", good, 2 * DAY))
        self.damage(engine, "bad", message_type="no.such.Event")
        clock.advance(3 * DAY)
        worker = side.timer_worker(engine, clock=clock)
        assert worker.fire_due() == 1
        assert [r.event_id for r in outbox_rows(engine)] == [good.event_id]
        [parked] = worker.parked()
        assert parked.key == "bad"
        assert parked.message_type == "no.such.Event"
        assert "no.such.Event" in parked.error
        assert parked.parked_at == clock.now()
        assert worker.fire_due() == 0  # parked rows are not tried again

    def test_a_payload_that_is_not_json_is_parked(
        self, side: Side, sqlite_engine: sa.Engine
    ) -> None:
        """SQLite's text column can hold anything: the row is parked, not the batch failed.

        (PostgreSQL's JSONB column cannot hold text that is not JSON.)
        """
        engine = sqlite_engine
        clock = MovableClock()
        good = ticked()
        schedule(engine, clock, ("bad", ticked(), DAY), ("good", good, DAY))
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "UPDATE tactical_scheduled SET payload = ? WHERE key = ?", ("{not json", "bad")
            )
        clock.advance(DAY)
        worker = side.timer_worker(engine, clock=clock)
        assert worker.fire_due() == 1
        [parked] = worker.parked()
        assert parked.error.startswith("cannot be read: payload is not JSON")

    def test_retry_parked_fires_a_row_once_its_cause_is_fixed(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Un-parked, the repaired row fires at the next round."""
        clock = MovableClock()
        message = ticked()
        schedule(engine, clock, ("bad", message, DAY))
        self.damage(engine, "bad", message_type="no.such.Event")
        clock.advance(DAY)
        worker = side.timer_worker(engine, clock=clock)
        assert worker.fire_due() == 0
        self.damage(engine, "bad", message_type="tactical.testing._contract.CounterTicked")
        assert worker.retry_parked(key="other") == 0
        assert worker.retry_parked() == 1
        assert worker.parked() == []
        assert worker.fire_due() == 1
        assert [r.event_id for r in outbox_rows(engine)] == [message.event_id]

    def test_scheduling_a_parked_key_again_un_parks_it(self, side: Side, engine: sa.Engine) -> None:
        """The new message replaces the unreadable one."""
        clock = MovableClock()
        schedule(engine, clock, ("k", ticked(), DAY))
        self.damage(engine, "k", message_type="no.such.Event")
        clock.advance(DAY)
        worker = side.timer_worker(engine, clock=clock)
        worker.fire_due()
        replacement = ticked(2)
        schedule(engine, clock, ("k", replacement, timedelta(0)))
        assert worker.parked() == []
        assert worker.fire_due() == 1
        assert [r.event_id for r in outbox_rows(engine)] == [replacement.event_id]


class TestSqliteWriters:
    """On SQLite a round takes the write lock first, so a concurrent writer makes it wait, not fail."""

    def test_a_round_waits_for_a_writer_and_then_fires_what_it_committed(
        self, side: Side, sqlite_engine: sa.Engine
    ) -> None:
        """A writer holding the lock commits a new due timer; the waiting round fires both."""
        engine = sqlite_engine
        clock = MovableClock()
        first, second = ticked(1), ticked(2)
        schedule(engine, clock, ("first", first, DAY))
        clock.advance(DAY)
        worker = side.timer_worker(engine, clock=clock)
        fired: list[int] = []
        with SqlAlchemyUnitOfWork(engine) as writer:
            writer.schedule(second, at=clock.now(), key="second")
            thread = threading.Thread(target=lambda: fired.append(worker.fire_due()))
            writer.connection.execute(  # a write: the writer holds SQLite's write lock
                scheduled_table.update().where(scheduled_table.c.key == "none").values(error="x")
            )
            thread.start()
            # Give the round time to read (deferred) or to wait for the lock (immediate).
            threading.Event().wait(0.5)
            writer.commit()
        thread.join(timeout=30)
        assert fired == [2]
        assert sorted(r.event_id for r in outbox_rows(engine)) == sorted(
            [first.event_id, second.event_id]
        )


class TestLoop:
    """run() fires due timers as the clock moves, and stops when asked."""

    def test_run_fires_what_becomes_due_and_stops_on_request(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Moving the clock is all it takes; the loop ends once stop is set."""
        clock = MovableClock()
        schedule(engine, clock, ("k", ticked(), DAY))
        stop = threading.Event()
        worker = side.timer_worker(engine, clock=clock)
        thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"poll_interval": 0.02})
        thread.start()
        try:
            clock.advance(DAY)
            _wait_until(lambda: len(outbox_rows(engine)) == 1)
        finally:
            stop.set()
            thread.join(timeout=30)
        assert not thread.is_alive()
        assert scheduled_keys(engine) == []

    def test_run_logs_a_failing_database_and_keeps_trying(
        self, side: Side, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """No tactical_scheduled table: each round fails, is logged, and the loop goes on."""
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite3'}")
        worker = side.timer_worker(engine, clock=MovableClock())
        stop = threading.Event()
        thread = threading.Thread(
            target=worker.run, args=(stop,), kwargs={"initial_backoff": 0.01, "max_backoff": 0.02}
        )
        with caplog.at_level(logging.WARNING, logger="tactical.outbox"):
            thread.start()
            try:
                _wait_until(lambda: len(_failures(caplog)) >= 2)
            finally:
                stop.set()
                thread.join(timeout=30)
                engine.dispose()
        assert not thread.is_alive()
        first = _failures(caplog)[0]
        assert "timer worker: the database at" in first
        assert "empty.sqlite3 failed (OperationalError" in first
        assert "no such table: tactical_scheduled" in first
        assert "(attempt 1); nothing was fired, retrying in" in first
        engine.dispose()


def _failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "timer worker:" in r.getMessage()]


def _wait_until(condition: Callable[[], bool], attempts: int = 1500) -> None:
    stopped = threading.Event()
    for _ in range(attempts):
        if condition():
            return
        stopped.wait(0.02)
    raise AssertionError("the condition never held")


@pytest.mark.postgres
class TestSeveralWorkers:
    """Workers in parallel on PostgreSQL share the due rows and never fire one twice."""

    def test_concurrent_workers_fire_each_timer_exactly_once(
        self, postgres_engine: sa.Engine
    ) -> None:
        """Four workers, sync and async, race over 200 due timers in batches of 3."""
        clock = MovableClock()
        messages = [ticked(n) for n in range(200)]
        schedule(postgres_engine, clock, *((f"t{n:03}", m, DAY) for n, m in enumerate(messages)))
        clock.advance(DAY)
        sides = [make_side("sync"), make_side("sync"), make_side("async"), make_side("asyncpg")]
        workers = [s.timer_worker(postgres_engine, clock=clock, batch_size=3) for s in sides]
        fired = [0] * len(workers)
        start = threading.Barrier(len(workers))

        def drain(index: int) -> None:
            start.wait(timeout=30)
            while (count := workers[index].fire_due()) or scheduled_keys(postgres_engine):
                fired[index] += count

        threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(workers))]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=120)
        finally:
            for s in sides:
                s.close()
        assert not any(t.is_alive() for t in threads)
        assert sum(fired) == len(messages)
        assert sorted(r.event_id for r in outbox_rows(postgres_engine)) == sorted(
            m.event_id for m in messages
        )


_CRASHING_WORKER = """
import asyncio, sys, time
from datetime import UTC, datetime
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
import tactical.testing  # the module of the scheduled messages' type, as in a real worker
from tactical.outbox import AsyncTimerWorker, TimerWorker

class Clock:
    def now(self):
        return datetime(2100, 1, 1, tzinfo=UTC)

def stop_before_commit(connection):
    print("taken", flush=True)
    time.sleep(600)  # killed here, with the rows deleted and the outbox written

url, api = sa.make_url(sys.argv[1]), sys.argv[2]
if api == "sync":
    engine = sa.create_engine(url)
    sa.event.listen(engine, "commit", stop_before_commit)
    TimerWorker(engine, clock=Clock()).fire_due()
else:
    driver = "aiosqlite" if url.get_backend_name() == "sqlite" else "psycopg"
    engine = create_async_engine(url.set(drivername=f"{url.get_backend_name()}+{driver}"))
    sa.event.listen(engine.sync_engine, "commit", stop_before_commit)
    asyncio.run(AsyncTimerWorker(engine, clock=Clock()).fire_due())
"""


@pytest.mark.slow
class TestCrash:
    """A worker killed between taking the rows and committing fires nothing; the next fires once."""

    @pytest.mark.parametrize("api", ["sync", "async"])
    def test_a_worker_killed_before_its_commit_leaves_every_timer_to_fire_once(
        self, engine: sa.Engine, tmp_path: Path, api: str
    ) -> None:
        """SIGKILL between the delete/insert and the commit: rolled back, then fired once."""
        clock = MovableClock()
        messages = [ticked(n) for n in range(5)]
        schedule(engine, clock, *((f"t{n}", m, DAY) for n, m in enumerate(messages)))
        url = (
            postgres_url().render_as_string(hide_password=False)
            if engine.dialect.name == "postgresql"
            else engine.url.render_as_string(hide_password=False)
        )
        script = tmp_path / "crashing_worker.py"
        script.write_text(_CRASHING_WORKER)
        with subprocess.Popen(
            [sys.executable, str(script), url, api], stdout=subprocess.PIPE, text=True
        ) as process:
            try:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == "taken"
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert outbox_rows(engine) == []
        assert len(scheduled_keys(engine)) == 5
        clock.advance(DAY)
        worker = TimerWorker(engine, clock=clock)
        assert worker.fire_due() == 5
        assert worker.fire_due() == 0
        assert sorted(r.event_id for r in outbox_rows(engine)) == sorted(
            m.event_id for m in messages
        )
