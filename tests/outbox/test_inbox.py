"""InboxConsumer: exactly-once effect per consumer, retries, parking, retention."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from tests.outbox.helpers import (
    CounterMirrored,
    Flaky,
    commit_ticks,
    mirroring,
    mirrors,
    relayed,
    side_consumer,
    tick,
)
from tests.outbox.sides import AsyncSide, Inbox, Side

import sqlalchemy as sa
from tactical import ConcurrencyError, EventBus
from tactical.outbox import (
    InboxConsumer,
    OutboxMessage,
    Outcome,
    dead_letters_table,
    inbox_table,
    purge_inbox,
)
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import Counter, CounterRenamed, CounterTicked


def inbox_rows(engine: sa.Engine) -> list[tuple[str, object]]:
    with engine.connect() as connection:
        return [
            (row.consumer, row.event_id) for row in connection.execute(sa.select(inbox_table)).all()
        ]


def dead_letters(engine: sa.Engine) -> list[sa.Row[tuple[object, ...]]]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(dead_letters_table).order_by(dead_letters_table.c.position)
            ).all()
        )


def flaky_consumer(
    side: Side, engine: sa.Engine, failures: int, **options: object
) -> tuple[Inbox, Flaky]:
    handler = Flaky(failures)
    consumer = side.inbox(engine, "mirror", retry_delay=0.001, **options)
    consumer.subscribe(CounterTicked, side.handler(handler.flow))
    return consumer, handler


class TestExactlyOnce:
    def test_redelivered_event_has_its_effect_once(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """The second delivery of an event finds its inbox row and changes nothing."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=2)
        first, second = relayed(sqlite_engine)
        consumer = side_consumer(side, consumer_engine)
        assert [consumer.handle(m) for m in (first, first, second, first, second)] == [
            Outcome.HANDLED,
            Outcome.DUPLICATE,
            Outcome.HANDLED,
            Outcome.DUPLICATE,
            Outcome.DUPLICATE,
        ]
        assert mirrors(consumer_engine) == {counter_id: [1, 2]}
        assert sorted(str(e) for _, e in inbox_rows(consumer_engine)) == sorted(
            str(m.event_id) for m in (first, second)
        )

    def test_each_consumer_name_handles_the_event_once(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Inbox rows are per consumer: two consumers each handle the same event once."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        seen: list[str] = []
        for name in ("billing", "audit"):
            consumer = side.inbox(consumer_engine, name)
            consumer.subscribe(CounterTicked, lambda e, uow, n=name: seen.append(n))
            assert consumer.handle(message) is Outcome.HANDLED
            assert consumer.handle(message) is Outcome.DUPLICATE
        assert seen == ["billing", "audit"]

    def test_a_failing_subscriber_of_the_consumers_bus_does_not_fail_the_message(
        self,
        side: Side,
        sqlite_engine: sa.Engine,
        consumer_engine: sa.Engine,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """The handling committed before its bus dispatched: handled once, nothing parked."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        bus, mirrored = EventBus(), list[int]()

        def broken(event: CounterMirrored) -> None:
            mirrored.append(event.count)
            raise RuntimeError("the read model is down")

        bus.subscribe(CounterMirrored, broken)
        consumer = side.inbox(consumer_engine, "mirror", bus)
        consumer.subscribe(CounterTicked, side.handler(mirroring))
        with caplog.at_level(logging.ERROR, logger="tactical.bus"):
            assert consumer.handle(message) is Outcome.HANDLED
        assert consumer.handle(message) is Outcome.DUPLICATE
        assert mirrored == [1]  # dispatched once, after the commit
        assert mirrors(consumer_engine) == {counter_id: [1]}
        assert dead_letters(consumer_engine) == []
        assert any("broken" in r.getMessage() for r in caplog.records)

    def test_event_without_a_handler_is_ignored(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A known event type nobody subscribed to is acknowledged with nothing written."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=0)
        with SqlAlchemyUnitOfWork(sqlite_engine) as uow:
            uow.repository(Counter).require(counter_id).rename("renamed")
            uow.commit()
        tick(sqlite_engine, counter_id)
        renamed, ticked = relayed(sqlite_engine)
        assert renamed.event_type.endswith(CounterRenamed.__qualname__)
        consumer = side_consumer(side, consumer_engine)
        assert consumer.handle(renamed) is Outcome.IGNORED
        assert consumer.handle(ticked) is Outcome.HANDLED
        assert [e for _, e in inbox_rows(consumer_engine)] == [ticked.event_id]

    @pytest.mark.postgres
    def test_concurrent_copies_on_postgres_take_effect_once(
        self, side: Side, postgres_engine: sa.Engine
    ) -> None:
        """Eight deliveries of the same event at once: one handles it, seven see a duplicate."""
        (counter_id,) = commit_ticks(postgres_engine, counters=1, ticks=1)
        (message,) = relayed(postgres_engine)
        consumer = side_consumer(side, postgres_engine)
        barrier = threading.Barrier(8)
        outcomes: list[Outcome] = []

        def deliver() -> None:
            barrier.wait()
            outcomes.append(consumer.handle(message))

        threads = [threading.Thread(target=deliver) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(o.value for o in outcomes) == ["duplicate"] * 7 + ["handled"]
        assert mirrors(postgres_engine) == {counter_id: [1]}


class TestRetriesAndParking:
    def test_transient_failure_is_retried_within_handle(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A handler that fails fewer than max_attempts times ends up handled, once."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        consumer, handler = flaky_consumer(side, consumer_engine, failures=2, max_attempts=3)
        assert consumer.handle(message) is Outcome.HANDLED
        assert handler.calls == 3
        assert mirrors(consumer_engine) == {counter_id: [1]}
        assert dead_letters(consumer_engine) == []

    def test_message_failing_every_attempt_is_parked_with_its_error(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """After max_attempts failures the message is a dead letter; the handler's writes are undone."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        consumer, handler = flaky_consumer(side, consumer_engine, failures=99, max_attempts=3)
        assert consumer.handle(message) is Outcome.PARKED
        assert handler.calls == 3
        assert mirrors(consumer_engine) == {}
        assert inbox_rows(consumer_engine) == []
        (row,) = dead_letters(consumer_engine)
        assert (row.consumer, row.event_id, row.attempts) == ("mirror", message.event_id, 3)
        assert "RuntimeError: ledger unavailable while handling count 1" in row.error
        assert OutboxMessage.from_wire(row.body, row.headers) == message
        assert consumer.parked()[0][0] == message

    def test_parked_message_redelivered_stays_parked(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A redelivered parked message is reported parked again, without trying it or a second row."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        consumer, handler = flaky_consumer(side, consumer_engine, failures=99, max_attempts=2)
        consumer.handle(message)
        assert consumer.handle(message) is Outcome.PARKED
        assert handler.calls == 2
        assert len(dead_letters(consumer_engine)) == 1

    def test_undecodable_message_is_parked_at_once(
        self, side: Side, consumer_engine: sa.Engine
    ) -> None:
        """An unknown event type is parked on the first attempt with an error naming the type."""
        message = OutboxMessage(
            position=1,
            event_id=uuid4(),
            event_type="nowhere.Vanished",
            event_version=1,
            aggregate_type="nowhere.Thing",
            aggregate_id="t-1",
            aggregate_version=1,
            payload={},
            occurred_at=datetime.now(UTC),
        )
        consumer = side_consumer(side, consumer_engine)
        assert consumer.handle(message) is Outcome.PARKED
        (row,) = dead_letters(consumer_engine)
        assert row.attempts == 1
        assert "cannot decode the event" in row.error
        assert "unknown type name 'nowhere.Vanished'" in row.error

    def test_later_events_of_a_parked_aggregate_are_held_back_not_others(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Once X's event is parked, X's later events are parked behind it; Y's are handled."""
        x, y = commit_ticks(sqlite_engine, counters=2, ticks=2)
        messages = relayed(sqlite_engine)
        x1, x2 = (m for m in messages if m.aggregate_id == str(x))
        y1, y2 = (m for m in messages if m.aggregate_id == str(y))
        consumer, _ = flaky_consumer(side, consumer_engine, failures=1, max_attempts=1)
        assert [consumer.handle(m) for m in (x1, y1, x2, y2)] == [
            Outcome.PARKED,
            Outcome.HANDLED,
            Outcome.PARKED,
            Outcome.HANDLED,
        ]
        assert mirrors(consumer_engine) == {y: [1, 2]}
        first, second = dead_letters(consumer_engine)
        assert (first.event_id, second.event_id) == (x1.event_id, x2.event_id)
        assert f"held back: event {x1.event_id}" in second.error
        assert (first.attempts, second.attempts) == (1, 0)

    def test_a_failure_after_the_commit_neither_parks_nor_redoes_the_message(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """An error closing the unit of work after its commit leaves the outcome HANDLED."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        handler = Flaky(0)
        consumer = side.inbox(consumer_engine, "mirror", release_fails=True, max_attempts=1)
        consumer.subscribe(CounterTicked, side.handler(handler.flow))
        assert consumer.handle(message) is Outcome.HANDLED
        assert consumer.handle(message) is Outcome.DUPLICATE
        assert mirrors(consumer_engine) == {counter_id: [1]}
        assert dead_letters(consumer_engine) == []
        assert inbox_rows(consumer_engine) == [("mirror", message.event_id)]

    def test_retry_parked_handles_them_in_order_once_the_cause_is_fixed(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """retry_parked re-handles dead letters in position order and empties the table."""
        (x,) = commit_ticks(sqlite_engine, counters=1, ticks=3)
        messages = relayed(sqlite_engine)
        consumer, _ = flaky_consumer(side, consumer_engine, failures=1, max_attempts=1)
        assert [consumer.handle(m) for m in messages] == [Outcome.PARKED] * 3
        assert consumer.retry_parked() == {Outcome.HANDLED: 3}
        assert mirrors(consumer_engine) == {x: [1, 2, 3]}
        assert dead_letters(consumer_engine) == []

    def test_retry_parked_parks_again_what_still_fails(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A dead letter that fails again is parked again, and so are the ones it holds back."""
        commit_ticks(sqlite_engine, counters=1, ticks=2)
        messages = relayed(sqlite_engine)
        consumer, _ = flaky_consumer(side, consumer_engine, failures=99, max_attempts=1)
        for message in messages:
            consumer.handle(message)
        assert consumer.retry_parked() == {Outcome.PARKED: 2}
        assert [row.event_id for row in dead_letters(consumer_engine)] == [
            m.event_id for m in messages
        ]

    def test_invalid_settings_are_refused(self, side: Side, consumer_engine: sa.Engine) -> None:
        """A consumer needs a name and at least one attempt; subscribe takes event classes."""
        with pytest.raises(ValueError, match="max_attempts must be at least 1, got 0"):
            side.inbox(consumer_engine, "c", max_attempts=0)
        with pytest.raises(ValueError, match="consumer_name must be 1 to 255 characters"):
            side.inbox(consumer_engine, "")
        with pytest.raises(TypeError, match="takes a DomainEvent subclass, got <class 'int'>"):
            side.inbox(consumer_engine, "c").subscribe(int, print)
        with pytest.raises(ValueError, match="conflict_attempts must be at least 1, got 0"):
            side.inbox(consumer_engine, "c", conflict_attempts=0)
        with pytest.raises(ValueError, match="delays must not be negative"):
            side.inbox(consumer_engine, "c", conflict_max_delay=-1.0)

    def test_a_conflict_that_persists_gives_up_on_the_delivery_without_parking(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Conflicts are retried conflict_attempts times in a row, then raised; nothing is parked or stored."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        calls: list[int] = []

        def always_conflicts(event: CounterTicked, uow: object) -> None:
            calls.append(event.count)
            raise ConcurrencyError(f"Mirror {event.counter_id} was changed concurrently")

        consumer = side.inbox(
            consumer_engine, "mirror", max_attempts=1, conflict_attempts=5, conflict_delay=0.0
        )
        consumer.subscribe(CounterTicked, always_conflicts)
        with pytest.raises(ConcurrencyError, match=str(counter_id)):
            consumer.handle(message)
        assert calls == [1] * 5  # max_attempts=1, yet five tries: none counted as a failure
        assert dead_letters(consumer_engine) == []
        assert inbox_rows(consumer_engine) == []


class TestAsyncHandlers:
    def test_sync_consumer_refuses_an_async_handler_at_subscribe(
        self, consumer_engine: sa.Engine
    ) -> None:
        """An ``async def`` handler given to InboxConsumer is refused, naming AsyncInboxConsumer."""

        async def mirror(event: CounterTicked, uow: SqlAlchemyUnitOfWork) -> None:
            del event, uow

        consumer = InboxConsumer(lambda: SqlAlchemyUnitOfWork(consumer_engine), "mirror")
        with pytest.raises(TypeError, match="subscribe it to an AsyncInboxConsumer"):
            consumer.subscribe(CounterTicked, mirror)

    def test_sync_consumer_parks_a_handler_returning_an_awaitable_unawaited(
        self, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A plain handler returning a coroutine fails each attempt (closed, never left pending), then parks."""

        async def mirror() -> None:
            raise AssertionError("never awaited")

        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        consumer = InboxConsumer(
            lambda: SqlAlchemyUnitOfWork(consumer_engine), "mirror", max_attempts=1
        )
        consumer.subscribe(CounterTicked, lambda event, uow: mirror())
        assert consumer.handle(message) is Outcome.PARKED
        (row,) = dead_letters(consumer_engine)
        assert "InboxConsumer cannot await" in row.error
        assert inbox_rows(consumer_engine) == []

    def test_async_consumer_awaits_async_handlers_and_calls_plain_ones(
        self, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """AsyncInboxConsumer runs an async and a plain handler of one event, in order, once."""
        side = AsyncSide()
        try:
            (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
            (message,) = relayed(sqlite_engine)
            seen: list[str] = []

            async def first(event: CounterTicked, uow: object) -> None:
                seen.append(f"async {event.count}")

            consumer = side.inbox(consumer_engine)
            consumer.subscribe(CounterTicked, first)
            consumer.subscribe(CounterTicked, lambda event, uow: seen.append("plain"))
            assert [consumer.handle(message) for _ in range(2)] == [
                Outcome.HANDLED,
                Outcome.DUPLICATE,
            ]
            assert seen == ["async 1", "plain"]
            assert [e for _, e in inbox_rows(consumer_engine)] == [message.event_id]
            assert mirrors(consumer_engine) == {}
            assert counter_id
        finally:
            side.close()

    def test_cancelled_async_handling_stores_nothing_and_the_next_delivery_handles_it(
        self, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Cancelling handle() inside a handler rolls back inbox row and changes; a redelivery applies it once."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        side = AsyncSide()
        try:
            entered = asyncio.Event()
            release = asyncio.Event()

            async def mirror_when_released(event: CounterTicked, uow: Any) -> None:
                entered.set()
                await release.wait()
                await side.handler(mirroring)(event, uow)

            inbox = side.inbox(consumer_engine).inbox
            inbox.subscribe(CounterTicked, mirror_when_released)

            async def cancel_then_redeliver() -> tuple[bool, Outcome]:
                first = asyncio.create_task(inbox.handle(message))
                await entered.wait()
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await first
                release.set()
                return first.cancelled(), await inbox.handle(message)

            assert side.call(cancel_then_redeliver()) == (True, Outcome.HANDLED)
        finally:
            side.close()
        assert mirrors(consumer_engine) == {counter_id: [1]}
        assert [e for _, e in inbox_rows(consumer_engine)] == [message.event_id]
        assert dead_letters(consumer_engine) == []


class TestRetention:
    def test_purge_deletes_only_rows_older_than_the_window(
        self, side: Side, consumer_engine: sa.Engine
    ) -> None:
        """purge_inbox removes rows past the retention window, for one consumer or all."""
        now = datetime.now(UTC)
        rows = [
            ("billing", uuid4(), now - timedelta(days=8)),
            ("billing", uuid4(), now - timedelta(days=1)),
            ("audit", uuid4(), now - timedelta(days=30)),
            ("audit", uuid4(), now),
        ]
        with consumer_engine.begin() as connection:
            connection.execute(
                inbox_table.insert(),
                [{"consumer": c, "event_id": e, "processed_at": t} for c, e, t in rows],
            )
        billing = side_consumer(side, consumer_engine, "billing")
        assert billing.purge_inbox() == 1
        assert sorted(inbox_rows(consumer_engine)) == sorted([(c, e) for c, e, _ in rows[1:]])
        assert purge_inbox(consumer_engine, timedelta(hours=1)) == 2
        assert inbox_rows(consumer_engine) == [("audit", rows[3][1])]
        with pytest.raises(ValueError, match="older_than must not be negative"):
            purge_inbox(consumer_engine, timedelta(days=-1))

    def test_purged_event_would_be_handled_again(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Retention is a real window: after purging, a late copy takes effect a second time."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        consumer = side_consumer(side, consumer_engine)
        consumer.handle(message)
        assert consumer.purge_inbox(timedelta(0)) == 1
        assert consumer.handle(message) is Outcome.HANDLED
        assert mirrors(consumer_engine) == {counter_id: [1, 1]}
