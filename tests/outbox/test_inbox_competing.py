"""Competing inbox consumers (sync and async): conflicts and lock waits are retried as transient, never parked."""

from __future__ import annotations

import threading
from dataclasses import field
from typing import Any
from uuid import UUID, uuid4

import pytest
from tests.outbox.helpers import commit_ticks, relayed
from tests.outbox.sides import Inbox, Side

import sqlalchemy as sa
from tactical import AggregateRoot, ConcurrencyError
from tactical._flow import Flow
from tactical.outbox import OutboxMessage, Outcome, dead_letters_table
from tactical.outbox._inbox_retry import InboxRetries, Next, is_transient
from tactical.sqlalchemy import SqlAlchemyUnitOfWork
from tactical.testing import CounterTicked

pytestmark = pytest.mark.filterwarnings("error")

COUNTERS, TICKS = 4, 25


class Ledger(AggregateRoot[UUID]):
    """One aggregate every consumer updates: each counter's ticks as it took them in."""

    seen: dict[str, list[int]] = field(default_factory=dict[str, list[int]])

    def take(self, counter_id: UUID, count: int) -> None:
        """Append a tick; a tick out of its counter's order is refused."""
        ticks = self.seen.setdefault(str(counter_id), [])
        if count != len(ticks) + 1:
            raise RuntimeError(f"tick {count} of {counter_id} after {ticks[-1:] or 'none'}")
        ticks.append(count)


def competing_consumer(side: Side, engine: sa.Engine, ledger_id: UUID) -> Inbox:
    consumer = side.inbox(engine, "ledger", retry_delay=0.001)

    def take_tick(event: CounterTicked, uow: Any) -> Flow[Any, None]:
        ledger = yield uow.repository(Ledger).require(ledger_id)
        ledger.take(event.counter_id, event.count)

    consumer.subscribe(CounterTicked, side.handler(take_tick))
    return consumer


class TestCompetingConsumers:
    def test_two_consumers_of_the_same_events_apply_each_once_in_order_parking_none(
        self, side: Side, engine: sa.Engine
    ) -> None:
        """Two feeds (threads, or tasks on one loop) give every event, in different per-aggregate-ordered sequences, to one shared ledger."""
        ids = [commit_ticks(engine, counters=1, ticks=TICKS)[0] for _ in range(COUNTERS)]
        ledger_id = uuid4()
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Ledger).add(Ledger(ledger_id))
            uow.commit()
        messages = relayed(engine)
        # Each feed keeps every counter's order but interleaves the counters differently, so
        # the two consumers handle different events of the same ledger at the same time.
        by_counter = {i: [m for m in messages if m.aggregate_id == str(i)] for i in ids}
        round_robin = [by_counter[i][n] for n in range(TICKS) for i in ids]
        reversed_blocks = [m for i in reversed(ids) for m in by_counter[i]]
        outcomes: list[Outcome] = []
        errors: list[BaseException] = []
        lock = threading.Lock()

        def feed(sequence: list[OutboxMessage]) -> None:
            consumer = competing_consumer(side, engine, ledger_id)
            try:
                for message in sequence:
                    outcome = consumer.handle(message)
                    with lock:
                        outcomes.append(outcome)
            except BaseException as error:
                errors.append(error)

        threads = [
            threading.Thread(target=feed, args=(sequence,))
            for sequence in (round_robin, reversed_blocks)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with engine.connect() as connection:
            parked = connection.execute(sa.select(dead_letters_table.c.error)).scalars().all()
        assert parked == []
        assert outcomes.count(Outcome.HANDLED) == COUNTERS * TICKS
        assert outcomes.count(Outcome.DUPLICATE) == COUNTERS * TICKS
        with SqlAlchemyUnitOfWork(engine) as uow:
            ledger = uow.repository(Ledger).require(ledger_id)
            uow.rollback()
        assert ledger.seen == {str(i): list(range(1, TICKS + 1)) for i in ids}
        assert ledger.version == 1 + COUNTERS * TICKS


def retries(**overrides: float) -> InboxRetries:
    settings: dict[str, float] = {
        "max_attempts": 3,
        "retry_delay": 0.05,
        "conflict_attempts": 4,
        "conflict_delay": 0.01,
        "conflict_max_delay": 0.03,
    } | overrides
    return InboxRetries(**settings)  # type: ignore[arg-type]


class TestInboxRetries:
    def test_conflicts_and_locks_are_transient_failures_are_not(self) -> None:
        """ConcurrencyError and SQLite's lock are transient; a handler's own error is not."""
        import sqlite3

        locked = sa.exc.OperationalError(
            "INSERT", {}, sqlite3.OperationalError("database is locked")
        )
        assert is_transient(ConcurrencyError("moved"))
        assert is_transient(locked)
        assert is_transient(sqlite3.OperationalError("database is locked"))
        assert not is_transient(RuntimeError("database is locked"))
        assert not is_transient(
            sa.exc.OperationalError("x", {}, sqlite3.OperationalError("disk I/O error"))
        )

    def test_transient_refusals_never_count_toward_parking(self) -> None:
        """Conflicts between failures leave the failure count alone: parking comes at the third failure."""
        state = retries()
        steps = [
            state.after(RuntimeError("bug"), 0.5),
            state.after(ConcurrencyError("moved"), 0.5),
            state.after(ConcurrencyError("moved"), 0.5),
            state.after(RuntimeError("bug"), 0.5),
            state.after(ConcurrencyError("moved"), 0.5),
            state.after(RuntimeError("bug"), 0.5),
        ]
        assert [s.next for s in steps] == [Next.RETRY] * 5 + [Next.PARK]
        assert [s.failures for s in steps] == [1, 1, 1, 2, 2, 3]

    def test_transient_pauses_are_jittered_doubling_and_capped(self) -> None:
        """Pauses after conflicts: the jitter fraction of 10, 20, then the 30 ms cap."""
        state = retries(conflict_attempts=10)
        pauses = [state.after(ConcurrencyError("moved"), 0.5).delay for _ in range(4)]
        assert pauses == pytest.approx([0.005, 0.01, 0.015, 0.015])

    def test_too_many_transient_refusals_in_a_row_give_up_without_parking(self) -> None:
        """The fourth conflict in a row gives up on the delivery (the broker redelivers), not parks."""
        state = retries()
        steps = [state.after(ConcurrencyError("moved"), 0.0).next for _ in range(4)]
        assert steps == [Next.RETRY, Next.RETRY, Next.RETRY, Next.GIVE_UP]
        assert state.failures == 0
