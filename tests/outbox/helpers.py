"""Shared helpers of the outbox tests: fill the outbox, read it back, record publications."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import field
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from tactical import AggregateRoot, DomainEvent, JsonCodec, retry_on_conflict
from tactical.outbox import InboxConsumer, OutboxMessage, OutboxRelay
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table, outbox_table
from tactical.testing import Counter, CounterTicked


def commit_ticks(engine: sa.Engine, counters: int, ticks: int) -> list[UUID]:
    """Create ``counters`` counters and tick each ``ticks`` times, one commit per counter."""
    ids = [uuid4() for _ in range(counters)]

    def transaction(counter_id: UUID) -> None:
        with SqlAlchemyUnitOfWork(engine) as uow:
            counter = Counter(counter_id, "c")
            for _ in range(ticks):
                counter.tick()
            uow.repository(Counter).add(counter)
            uow.commit()

    for counter_id in ids:
        retry_on_conflict(
            functools.partial(transaction, counter_id), attempts=10
        )  # see tick() for why
    return ids


def tick(engine: sa.Engine, counter_id: UUID, times: int = 1) -> None:
    """Tick an existing counter ``times`` times in one unit of work, as a service would.

    Through ``retry_on_conflict``: on SQLite a relay marking rows is a concurrent writer, and
    SQLite refuses a write from a transaction that read before another writer committed.
    """

    def transaction() -> None:
        with SqlAlchemyUnitOfWork(engine) as uow:
            counter = uow.repository(Counter).require(counter_id)
            for _ in range(times):
                counter.tick()
            uow.commit()

    retry_on_conflict(transaction, attempts=10)


def pending_positions(engine: sa.Engine) -> list[int]:
    """Positions of the outbox rows not yet marked published, in order."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(outbox_table.c.position)
                .where(outbox_table.c.published_at.is_(None))
                .order_by(outbox_table.c.position)
            ).scalars()
        )


def pending_count(engine: sa.Engine) -> int:
    """How many outbox rows are not yet marked published."""
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(outbox_table.c.published_at.is_(None))
        ).scalar_one()


def all_positions(engine: sa.Engine) -> list[int]:
    """Positions of every outbox row, in order."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(outbox_table.c.position).order_by(outbox_table.c.position)
            ).scalars()
        )


class RecordingPublisher:
    """An in-memory publisher: keeps every message it was given, optionally failing first."""

    def __init__(self, *, failures: int = 0) -> None:
        self.published: list[OutboxMessage] = []
        self.failures = failures
        self.attempts = 0
        self._lock = threading.Lock()

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        with self._lock:
            self.attempts += 1
            if self.failures:
                self.failures -= 1
                raise ConnectionError("broker unreachable (injected)")
            self.published.extend(messages)


class CounterMirrored(DomainEvent):
    """Recorded by the consumer side when it has taken a counter's tick into account."""

    mirror_id: UUID
    count: int


class Mirror(AggregateRoot[UUID]):
    """The consumer side's copy of a counter: every count it was told about, in order."""

    seen: list[int] = field(default_factory=list[int])

    def observe(self, count: int) -> None:
        """Take a tick into account, and record it."""
        self.seen.append(count)
        self.record(CounterMirrored(self.id, count))


def mirror_tick(event: CounterTicked, uow: SqlAlchemyUnitOfWork) -> None:
    """The consumer's handler: add the tick to the counter's mirror (created on first use)."""
    mirrors = uow.repository(Mirror)
    mirror = mirrors.get(event.counter_id)
    if mirror is None:
        mirror = Mirror(event.counter_id)
        mirrors.add(mirror)
    mirror.observe(event.count)


def mirrors(engine: sa.Engine) -> dict[UUID, list[int]]:
    """Every mirror's seen counts, by counter id."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(aggregates_table.c.aggregate_id, aggregates_table.c.state).where(
                aggregates_table.c.aggregate_type == JsonCodec().type_name(Mirror)
            )
        ).all()
    return {UUID(row.aggregate_id): list(row.state["seen"]) for row in rows}


def relayed(engine: sa.Engine) -> list[OutboxMessage]:
    """Every pending outbox message, published to memory (and marked)."""
    publisher = RecordingPublisher()
    relay = OutboxRelay(engine, publisher)
    while relay.relay_once():
        pass
    return publisher.published


def make_consumer(
    engine: sa.Engine, name: str = "mirror", **options: Any
) -> InboxConsumer[SqlAlchemyUnitOfWork]:
    """An inbox consumer on ``engine`` with :func:`mirror_tick` subscribed to CounterTicked."""
    consumer = InboxConsumer(lambda: SqlAlchemyUnitOfWork(engine), name, **options)
    consumer.subscribe(CounterTicked, mirror_tick)
    return consumer


class Flaky:
    """A handler that fails a number of times, or always for some counters, else mirrors."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.fail_for: set[UUID] = set()
        self.calls = 0

    def __call__(self, event: CounterTicked, uow: SqlAlchemyUnitOfWork) -> None:
        self.calls += 1
        if event.counter_id in self.fail_for:
            raise RuntimeError(f"refusing counter {event.counter_id}")
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"ledger unavailable while handling count {event.count}")
        mirror_tick(event, uow)
