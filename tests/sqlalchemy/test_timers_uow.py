"""Durable timers through the units of work: scheduled, replaced and cancelled at commit.

Every test runs on the in-memory units of work and the SQL ones (SQLite, PostgreSQL), sync
and async: a timer is stored by the commit of the transaction that scheduled it, with the
aggregates, and discarded with them on rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from tests.sqlalchemy.async_engines import async_url, make_async_engine

import sqlalchemy as sa
from tactical import (
    AsyncInMemoryUnitOfWork,
    ConcurrencyError,
    InMemoryStore,
    InMemoryUnitOfWork,
    JsonCodec,
    ScheduledMessage,
    SystemClock,
    UncommittedChangesWarning,
)
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork, scheduled_table
from tactical.testing import Counter, CounterTicked, MovableClock
from tactical.testing._async_driver import AsyncDriver, SyncView

NOW = datetime(2030, 6, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)


@dataclass
class Kind:
    """A kind of unit of work: how to make one, and how to read the timers it stored."""

    new: Callable[[], Any]
    stored: Callable[[], list[ScheduledMessage]]


def timers_of(uow: Any) -> Any:
    """The unit of work itself (an async one behind its sync view): schedule() is a plain call."""
    return uow.uow if isinstance(uow, SyncView) else uow


def _read_table(engine: sa.Engine) -> list[ScheduledMessage]:
    codec = JsonCodec()
    s = scheduled_table.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(s.key, s.due_at, s.message_type, s.message_version, s.payload).order_by(
                s.due_at, s.key
            )
        )
        return [
            ScheduledMessage(
                r.key,
                codec.event_from_record(r.message_type, r.message_version, r.payload),
                r.due_at,
            )
            for r in rows
        ]


KINDS = [
    "memory",
    "memory-async",
    "sqlite",
    "sqlite-async",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("postgres-async", marks=pytest.mark.postgres),
]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kind]:
    name: str = request.param
    driver = AsyncDriver()
    try:
        if name.startswith("memory"):
            store = InMemoryStore()
            if name == "memory":
                yield Kind(lambda: InMemoryUnitOfWork(store=store), lambda: list(store.scheduled()))
            else:
                new = driver.factory(lambda bus=None, **kw: AsyncInMemoryUnitOfWork(store=store))
                yield Kind(new, lambda: list(store.scheduled()))
            return
        database = name.removesuffix("-async")
        engine: sa.Engine = request.getfixturevalue(f"{database}_engine")
        if not name.endswith("-async"):
            yield Kind(lambda: SqlAlchemyUnitOfWork(engine), lambda: _read_table(engine))
            return
        async_driver = "aiosqlite" if database == "sqlite" else "psycopg"
        async_engine = make_async_engine(async_driver, async_url(request, async_driver, tmp_path))
        try:
            new = driver.factory(lambda bus=None, **kw: AsyncSqlAlchemyUnitOfWork(async_engine))
            yield Kind(new, lambda: _read_table(engine))
        finally:
            driver.run(async_engine.dispose())
    finally:
        driver.close()


def ticked(count: int = 1) -> CounterTicked:
    return CounterTicked(uuid4(), count)


class TestScheduling:
    """schedule() and cancel() take effect at commit, with the transaction's other writes."""

    def test_a_committed_timer_is_stored_with_its_message_and_time(self, kind: Kind) -> None:
        """The stored timer has the key, the message as scheduled and the due time in UTC."""
        message = ticked()
        later = (NOW + DAY).astimezone(timezone_plus_two())
        with kind.new() as uow:
            assert timers_of(uow).schedule(message, at=later, key="expire") == "expire"
            assert kind.stored() == []  # nothing before the commit
            uow.commit()
        assert kind.stored() == [ScheduledMessage("expire", message, NOW + DAY)]
        assert kind.stored()[0].due_at.tzinfo == UTC

    def test_the_key_defaults_to_the_message_id(self, kind: Kind) -> None:
        """Without a key, the event id names the timer."""
        message = ticked()
        with kind.new() as uow:
            key = timers_of(uow).schedule(message, at=NOW)
            uow.commit()
        assert key == str(message.event_id)
        assert [t.key for t in kind.stored()] == [key]

    def test_leaving_without_commit_or_rolling_back_stores_nothing(self, kind: Kind) -> None:
        """A timer shares the fate of its transaction."""
        with (
            pytest.warns(UncommittedChangesWarning, match="timer requests of keys 'dropped'"),
            kind.new() as uow,
        ):
            timers_of(uow).schedule(ticked(), at=NOW, key="dropped")

        def schedule_then_fail() -> None:
            with kind.new() as uow:
                timers_of(uow).schedule(ticked(), at=NOW, key="raised")
                raise KeyError

        with pytest.raises(KeyError):
            schedule_then_fail()
        with kind.new() as uow:
            timers_of(uow).schedule(ticked(), at=NOW, key="rolled-back")
            uow.rollback()
            kept = ticked()
            timers_of(uow).schedule(kept, at=NOW, key="kept")
            uow.commit()
        assert kind.stored() == [ScheduledMessage("kept", kept, NOW)]

    def test_a_failed_commit_stores_no_timer(self, kind: Kind) -> None:
        """Refused for a stale aggregate, the commit stores neither the aggregate nor the timer."""
        counter = Counter(uuid4(), "c")
        with kind.new() as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with kind.new() as first, kind.new() as second:
            first.repository(Counter).require(counter.id).tick()
            second.repository(Counter).require(counter.id).tick()
            timers_of(second).schedule(ticked(), at=NOW, key="lost")
            first.commit()
            with pytest.raises(ConcurrencyError):
                second.commit()
        assert kind.stored() == []

    def test_a_timer_commits_with_an_aggregate(self, kind: Kind) -> None:
        """An aggregate change and its timer are one transaction (the one-aggregate rule holds)."""
        counter = Counter(uuid4(), "c")
        message = ticked()
        with kind.new() as uow:
            uow.repository(Counter).add(counter)
            counter.tick()
            timers_of(uow).schedule(message, at=NOW, key=f"remind-{counter.id}")
            uow.commit()
        with kind.new() as uow:
            assert uow.repository(Counter).require(counter.id).count == 1
        assert kind.stored() == [ScheduledMessage(f"remind-{counter.id}", message, NOW)]

    def test_scheduling_a_key_again_replaces_its_message_and_time(self, kind: Kind) -> None:
        """In a later transaction, and within one: the last schedule of a key wins."""
        first, second, third = ticked(1), ticked(2), ticked(3)
        with kind.new() as uow:
            timers_of(uow).schedule(first, at=NOW, key="k")
            uow.commit()
        with kind.new() as uow:
            timers_of(uow).schedule(second, at=NOW + DAY, key="k")
            timers_of(uow).schedule(third, at=NOW + 2 * DAY, key="k")
            uow.commit()
        assert kind.stored() == [ScheduledMessage("k", third, NOW + 2 * DAY)]

    def test_cancel_deletes_a_stored_timer_and_ignores_an_unknown_key(self, kind: Kind) -> None:
        """Cancelling is idempotent: a key with no timer is no error."""
        kept = ticked()
        with kind.new() as uow:
            timers_of(uow).schedule(ticked(), at=NOW, key="gone")
            timers_of(uow).schedule(kept, at=NOW, key="kept")
            uow.commit()
        with kind.new() as uow:
            timers_of(uow).cancel("gone")
            timers_of(uow).cancel("never-scheduled")
            uow.commit()
        assert kind.stored() == [ScheduledMessage("kept", kept, NOW)]

    def test_cancel_then_schedule_in_one_transaction_keeps_the_new_timer(self, kind: Kind) -> None:
        """Requests for one key apply in order: the last one decides."""
        message = ticked()
        with kind.new() as uow:
            timers_of(uow).schedule(ticked(), at=NOW, key="a")
            timers_of(uow).cancel("a")
            timers_of(uow).cancel("b")
            timers_of(uow).schedule(message, at=NOW, key="b")
            uow.commit()
        assert kind.stored() == [ScheduledMessage("b", message, NOW)]

    def test_a_cancel_that_is_rolled_back_keeps_the_timer(self, kind: Kind) -> None:
        """Cancelling is a write like any other: undone by a rollback."""
        message = ticked()
        with kind.new() as uow:
            timers_of(uow).schedule(message, at=NOW, key="k")
            uow.commit()
        with (
            pytest.warns(
                UncommittedChangesWarning,
                match=r"rolled back \(and the timer requests of keys 'k'\)$",
            ),
            kind.new() as uow,
        ):
            timers_of(uow).cancel("k")
        assert kind.stored() == [ScheduledMessage("k", message, NOW)]

    def test_a_message_the_codec_cannot_store_is_refused_at_commit(self, kind: Kind) -> None:
        """A message with a NUL in a string stores nothing of its transaction."""
        counter = Counter(uuid4(), "c")
        with kind.new() as uow:
            uow.repository(Counter).add(counter)
            timers_of(uow).schedule(CounterTicked(uuid4(), 1), at=NOW, key="ok")
            timers_of(uow).schedule(_unstorable(), at=NOW, key="bad")
            with pytest.raises(ValueError, match="NUL"):
                uow.commit()
        with kind.new() as uow:
            assert uow.repository(Counter).get(counter.id) is None
        assert kind.stored() == []


def _unstorable() -> Any:
    from tactical.testing import CounterRenamed

    return CounterRenamed(uuid4(), "bad\x00name")


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


class TestRefusals:
    """Bad arguments are refused when scheduling, naming the value."""

    @pytest.fixture
    def uow(self) -> Iterator[InMemoryUnitOfWork]:
        with InMemoryUnitOfWork() as uow:
            yield uow

    def test_a_naive_time_is_refused(self, uow: InMemoryUnitOfWork) -> None:
        """Its time zone would be a guess."""
        with pytest.raises(ValueError, match="timezone-aware, got the naive 2030-06-01T12:00:00"):
            uow.schedule(ticked(), at=NOW.replace(tzinfo=None))

    @pytest.mark.parametrize(
        "at",
        [
            datetime.min.replace(tzinfo=timezone(timedelta(hours=5))),
            datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
        ],
    )
    def test_a_time_with_no_utc_time_is_refused(
        self, uow: InMemoryUnitOfWork, at: datetime
    ) -> None:
        """An offset that takes it out of years 1 to 9999 in UTC: a ValueError naming it, not
        the OverflowError of astimezone()."""
        with pytest.raises(ValueError, match=r"between years 1 and 9999, got (0001|9999)-"):
            uow.schedule(ticked(), at=at)

    def test_a_time_that_is_not_a_datetime_is_refused(self, uow: InMemoryUnitOfWork) -> None:
        """A date or a number is not a due time."""
        with pytest.raises(TypeError, match="must be a datetime, got 3600"):
            uow.schedule(ticked(), at=3600)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    def test_a_message_that_is_not_an_event_is_refused(self, uow: InMemoryUnitOfWork) -> None:
        """Only events are scheduled (for now)."""
        with pytest.raises(TypeError, match="takes a DomainEvent to publish, got 'expire'"):
            uow.schedule("expire", at=NOW)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    @pytest.mark.parametrize(
        ("key", "error", "match"),
        [
            ("", ValueError, "must not be empty"),
            ("k" * 256, ValueError, "256 characters, over the 255"),
            ("a\x00b", ValueError, "holds a NUL character at index 1"),
            (7, TypeError, "must be a str, got 7"),
        ],
    )
    def test_a_key_no_column_holds_is_refused(
        self, uow: InMemoryUnitOfWork, key: Any, error: type[Exception], match: str
    ) -> None:
        """Both by schedule() and by cancel()."""
        with pytest.raises(error, match=match):
            uow.schedule(ticked(), at=NOW, key=key)
        with pytest.raises(error, match=match):
            uow.cancel(key)

    def test_scheduling_outside_a_block_is_refused(self) -> None:
        """As any use of a unit of work outside its transaction."""
        uow = InMemoryUnitOfWork()
        with pytest.raises(RuntimeError, match="cannot schedule a message"):
            uow.schedule(ticked(), at=NOW)
        with pytest.raises(RuntimeError, match="cannot cancel a timer"):
            uow.cancel("k")
        with uow:
            uow.commit()
            with pytest.raises(RuntimeError, match="already ended with commit"):
                uow.schedule(ticked(), at=NOW)


class TestInMemoryFiring:
    """InMemoryStore.take_due is the in-memory timer worker."""

    def test_take_due_returns_each_due_timer_once_soonest_first(self) -> None:
        """Moved past two due times, it hands out those two, once."""
        clock = MovableClock(NOW)
        store = InMemoryStore()
        soon, later, never = ticked(1), ticked(2), ticked(3)
        with InMemoryUnitOfWork(store=store) as uow:
            uow.schedule(later, at=NOW + 2 * DAY, key="later")
            uow.schedule(soon, at=NOW + DAY, key="soon")
            uow.schedule(never, at=NOW + 9 * DAY, key="never")
            uow.commit()
        assert store.take_due(clock.now()) == []
        clock.advance(2 * DAY)
        assert [t.message for t in store.take_due(clock.now())] == [soon, later]
        assert store.take_due(clock.now()) == []
        assert [t.key for t in store.scheduled()] == ["never"]

    def test_take_due_refuses_a_naive_time(self) -> None:
        """As schedule() does."""
        with pytest.raises(ValueError, match="timezone-aware"):
            InMemoryStore().take_due(NOW.replace(tzinfo=None))


class TestClocks:
    """The system clock tells UTC; the movable one moves only when told."""

    def test_the_system_clock_tells_aware_utc(self) -> None:
        """Its now() is timezone-aware, in UTC."""
        assert SystemClock().now().tzinfo == UTC
        assert repr(SystemClock()) == "SystemClock()"

    def test_a_movable_clock_stands_still_until_moved(self) -> None:
        """advance() and set() are the only ways its time changes."""
        clock = MovableClock(NOW)
        assert clock.now() == clock.now() == NOW
        assert clock.advance(DAY) == NOW + DAY
        clock.set(NOW - DAY)
        assert clock.now() == NOW - DAY
        assert repr(clock) == "MovableClock(2030-05-31T12:00:00+00:00)"
        assert MovableClock().now() == datetime(2025, 1, 1, tzinfo=UTC)

    def test_a_movable_clock_refuses_what_it_cannot_show(self) -> None:
        """Naive times, non-datetimes, going backwards through advance()."""
        with pytest.raises(ValueError, match="timezone-aware"):
            MovableClock(NOW.replace(tzinfo=None))
        with pytest.raises(TypeError, match="shows a datetime, got '2030'"):
            MovableClock().set("2030")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(ValueError, match="forward only"):
            MovableClock().advance(-DAY)
        with pytest.raises(TypeError, match="takes a timedelta, got 3600"):
            MovableClock().advance(3600)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
