"""Shared helpers of the outbox tests: fill the outbox, read it back, record publications."""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import field
from typing import Any
from uuid import UUID, uuid4

from sqlalchemy.dialects import postgresql
from tests.outbox.sides import Inbox, Side, sync_handler

import sqlalchemy as sa
from tactical import AggregateRoot, DomainEvent, JsonCodec, retry_on_conflict
from tactical._flow import Flow
from tactical.outbox import InboxConsumer, OutboxMessage, OutboxRelay, UndeliverableError
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


def mirroring(event: CounterTicked, uow: Any) -> Flow[Any, None]:
    """The consumer's handler, for either side: add the tick to the counter's mirror."""
    mirrors = uow.repository(Mirror)
    mirror = yield mirrors.get(event.counter_id)
    if mirror is None:
        mirror = Mirror(event.counter_id)
        mirrors.add(mirror)
    mirror.observe(event.count)


mirror_tick = sync_handler(mirroring)
"""The consumer's sync handler: add the tick to the counter's mirror (created on first use)."""


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


def side_consumer(side: Side, engine: sa.Engine, name: str = "mirror", **options: Any) -> Inbox:
    """The side's inbox consumer on ``engine`` with the mirroring handler subscribed."""
    consumer = side.inbox(engine, name, **options)
    consumer.subscribe(CounterTicked, side.handler(mirroring))
    return consumer


class Flaky:
    """A handler that fails a number of times, or always for some counters, else mirrors."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.fail_for: set[UUID] = set()
        self.calls = 0

    def __call__(self, event: CounterTicked, uow: SqlAlchemyUnitOfWork) -> None:
        sync_handler(self.flow)(event, uow)

    def flow(self, event: CounterTicked, uow: Any) -> Flow[Any, None]:
        """The handler written once, for either side."""
        self.calls += 1
        if event.counter_id in self.fail_for:
            raise RuntimeError(f"refusing counter {event.counter_id}")
        if self.failures:
            self.failures -= 1
            raise RuntimeError(f"ledger unavailable while handling count {event.count}")
        yield from mirroring(event, uow)


def ticked_row(counter_id: UUID, count: int) -> dict[str, Any]:
    """The outbox row columns of a valid ``CounterTicked`` of a counter, as the writer stores them."""
    codec = JsonCodec()
    event = CounterTicked(counter_id, count)
    record = codec.event_to_record(event)
    return {
        "event_id": event.event_id,
        "event_type": record.type_name,
        "event_version": record.schema_version,
        "aggregate_type": codec.type_name(Counter),
        "aggregate_id": str(counter_id),
        "aggregate_version": count,
        "payload": record.payload,
        "occurred_at": event.occurred_at,
    }


def insert_row(engine: sa.Engine, row: dict[str, Any], **columns: Any) -> int:
    """INSERT ``row`` (with ``columns`` overriding it) straight into the outbox; its position.

    The way to write rows the unit of work would refuse: ``columns`` may hold SQL
    expressions, such as a text-typed bound parameter for the JSON payload column.
    """
    with engine.begin() as connection:
        inserted = connection.execute(
            outbox_table.insert().values({**row, **columns}).returning(outbox_table.c.position)
        )
        return int(inserted.scalar_one())


def update_row(engine: sa.Engine, position: int, **columns: Any) -> None:
    """UPDATE the outbox row at ``position`` (to repair it, say)."""
    with engine.begin() as connection:
        connection.execute(
            outbox_table.update().where(outbox_table.c.position == position).values(**columns)
        )


def raw_payload(engine: sa.Engine, text: str | bytes) -> sa.ColumnElement[Any]:
    """``text`` as the payload column's value, bypassing JSON encoding (bytes: SQLite only).

    On PostgreSQL the text is cast to JSONB (so it must be JSON PostgreSQL accepts); on
    SQLite it is bound as text, or bytes cast to TEXT (invalid UTF-8 in a text column).
    """
    if engine.dialect.name == "postgresql":
        return sa.cast(sa.bindparam("raw", text, type_=sa.Text), postgresql.JSONB)
    if isinstance(text, bytes):
        return sa.cast(sa.bindparam("raw", text, type_=sa.LargeBinary), sa.Text)
    return sa.bindparam("raw", text, type_=sa.Text)


def published_positions(engine: sa.Engine) -> list[int]:
    """Positions of the outbox rows marked published, in order."""
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(outbox_table.c.position)
                .where(outbox_table.c.published_at.is_not(None))
                .order_by(outbox_table.c.position)
            ).scalars()
        )


class RefusingPublisher(RecordingPublisher):
    """An in-memory publisher that keeps the Publisher contract for messages it cannot send.

    Messages whose event type starts with ``refused_prefix`` are refused for good, with
    :class:`~tactical.outbox.UndeliverableError`, before anything of the batch is kept.
    """

    def __init__(self, refused_prefix: str = "poison.", *, failures: int = 0) -> None:
        super().__init__(failures=failures)
        self.refused_prefix = refused_prefix
        self.batches: list[list[int]] = []

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        self.batches.append([m.position for m in messages])
        refused = {
            m.position: f"type {m.event_type!r} is refused (injected)"
            for m in messages
            if m.event_type.startswith(self.refused_prefix)
        }
        if refused:
            raise UndeliverableError(refused)
        super().publish(messages)


class Line:
    """Good rows of two aggregates around a poison row of a third, then that third's next row.

    Positions, in commit order: ``before`` (one tick each of x and y), ``poison`` (p's
    first event), ``behind`` (p's second event, a good row), ``after`` (x and y again).
    """

    def __init__(self, engine: sa.Engine, **poison: object) -> None:
        (self.x,) = commit_ticks(engine, counters=1, ticks=1)  # one aggregate per transaction
        (self.y,) = commit_ticks(engine, counters=1, ticks=1)
        self.before = pending_positions(engine)
        self.p = uuid4()
        self.repaired = ticked_row(self.p, 1)
        self.poison = insert_row(engine, self.repaired, **poison)
        self.behind = insert_row(engine, ticked_row(self.p, 2))
        tick(engine, self.x)
        tick(engine, self.y)
        self.after = [p for p in pending_positions(engine) if p > self.behind]
        self.good = [*self.before, *self.after]
        self.spoiled = list(poison)

    def repair(self, engine: sa.Engine) -> None:
        """Give the poison row back the good values its spoiled columns replaced."""
        update_row(engine, self.poison, **{name: self.repaired[name] for name in self.spoiled})
