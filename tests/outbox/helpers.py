"""Shared helpers of the outbox tests: fill the outbox, read it back, record publications."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from uuid import UUID, uuid4

import sqlalchemy as sa
from tactical.outbox import OutboxMessage
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table
from tactical.testing._contract import Counter


def commit_ticks(engine: sa.Engine, counters: int, ticks: int) -> list[UUID]:
    """Create ``counters`` counters and tick each ``ticks`` times, in one commit per counter batch."""
    ids = [uuid4() for _ in range(counters)]
    with SqlAlchemyUnitOfWork(engine) as uow:
        repository = uow.repository(Counter)
        for counter_id in ids:
            counter = Counter(counter_id, "c")
            for _ in range(ticks):
                counter.tick()
            repository.add(counter)
        uow.commit()
    return ids


def tick(engine: sa.Engine, counter_id: UUID, times: int = 1) -> None:
    """Tick an existing counter ``times`` times in one unit of work."""
    with SqlAlchemyUnitOfWork(engine) as uow:
        counter = uow.repository(Counter).require(counter_id)
        for _ in range(times):
            counter.tick()
        uow.commit()


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
