"""A read model of counters, its projection written once for the sync and the async runner.

The view keeps each counter's count and how many ticks it saw; the log keeps every event
each projection applied, in the order applied, so that tests can check "exactly once" and
"in each aggregate's order" against the outbox and the aggregates.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from tests.outbox.sides import AsyncSide, SyncSide

import sqlalchemy as sa
from tactical import DomainEvent
from tactical.projections import (
    AsyncProjection,
    AsyncProjectionRunner,
    Projection,
    ProjectionRunner,
)
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table, projection_checkpoints_table
from tactical.testing import Counter, CounterRenamed, CounterTicked

views = sa.MetaData()

counter_view = sa.Table(
    "test_counter_view",
    views,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("counter_id", sa.String(64), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("name", sa.String(64), nullable=True),
)

applied_log = sa.Table(
    "test_applied_log",
    views,
    sa.Column("seq", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("projection", sa.String(64), nullable=False),
    sa.Column("counter_id", sa.String(64), nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("event_id", sa.Uuid, nullable=False),
    sa.UniqueConstraint("projection", "event_id"),
)


def create_views(engine: sa.Engine) -> None:
    """The view's tables, created and emptied."""
    views.create_all(engine)
    with engine.begin() as connection:
        for table in views.sorted_tables:
            connection.execute(table.delete())


class Failing:
    """Makes the handler raise on the events it names (by counter and count) while set."""

    def __init__(self) -> None:
        self.on: set[tuple[UUID, int]] = set()


def _ticked(name: str, failing: Failing) -> Callable[[Any], list[sa.Executable]]:
    def statements(event: CounterTicked) -> list[sa.Executable]:
        if (event.counter_id, event.count) in failing.on:
            raise RuntimeError(f"cannot apply tick {event.count} of {event.counter_id}")
        key = str(event.counter_id)
        v = counter_view
        return [
            applied_log.insert().values(
                projection=name, counter_id=key, count=event.count, event_id=event.event_id
            ),
            v.delete().where(v.c.projection == name, v.c.counter_id == key),
            v.insert().values(projection=name, counter_id=key, count=event.count),
        ]

    return statements


def _renamed(name: str) -> Callable[[Any], list[sa.Executable]]:
    def statements(event: CounterRenamed) -> list[sa.Executable]:
        v = counter_view
        return [
            v.update()
            .where(v.c.projection == name, v.c.counter_id == str(event.counter_id))
            .values(name=event.name)
        ]

    return statements


def _cleared(name: str) -> list[sa.Executable]:
    return [
        counter_view.delete().where(counter_view.c.projection == name),
        applied_log.delete().where(applied_log.c.projection == name),
    ]


def counter_projection(
    side: SyncSide | AsyncSide,
    name: str = "counters",
    *,
    failing: Failing | None = None,
    renames: bool = False,
    clear: bool = True,
) -> Projection | AsyncProjection:
    """The counters' projection for ``side``: a Projection or an AsyncProjection."""
    handlers: dict[type[DomainEvent], Callable[[Any], list[sa.Executable]]] = {
        CounterTicked: _ticked(name, failing or Failing())
    }
    if renames:
        handlers[CounterRenamed] = _renamed(name)
    if isinstance(side, SyncSide):

        def run_sync(statements: Sequence[sa.Executable], connection: sa.Connection) -> None:
            for statement in statements:
                connection.execute(statement)

        projection = Projection(
            name, clear=(lambda c: run_sync(_cleared(name), c)) if clear else None
        )
        for event_type, make in handlers.items():
            projection.on(event_type)(lambda e, c, make=make: run_sync(make(e), c))
        return projection

    async def run_async(statements: Sequence[sa.Executable], connection: Any) -> None:
        for statement in statements:
            await connection.execute(statement)

    async def clear_async(connection: Any) -> None:
        await run_async(_cleared(name), connection)

    asynchronous = AsyncProjection(name, clear=clear_async if clear else None)
    for event_type, make in handlers.items():

        async def handler(event: Any, connection: Any, make: Any = make) -> None:
            await run_async(make(event), connection)

        asynchronous.on(event_type)(handler)
    return asynchronous


class DrivenRunner:
    """A ProjectionRunner, or an AsyncProjectionRunner driven from sync code."""

    def __init__(
        self,
        side: SyncSide | AsyncSide,
        engine: sa.Engine,
        projections: Sequence[Projection | AsyncProjection],
        **options: Any,
    ) -> None:
        self.side = side
        if isinstance(side, SyncSide):
            self.runner: Any = ProjectionRunner(engine, projections, **options)  # type: ignore[arg-type]
        else:
            self.runner = AsyncProjectionRunner(side.async_engine(engine), projections, **options)  # type: ignore[arg-type]

    def _call(self, result: Any) -> Any:
        return result if isinstance(self.side, SyncSide) else self.side.call(result)

    def run_once(self) -> int:
        return int(self._call(self.runner.run_once()))

    def catch_up(self, projection: str, batches: int | None = None) -> int:
        return int(self._call(self.runner.catch_up(projection, batches=batches)))

    def rebuild(self, projection: str) -> None:
        self._call(self.runner.rebuild(projection))

    def run(self, stop: threading.Event, **options: Any) -> None:
        """Run the runner's loop until ``stop`` is set (call it in a thread)."""
        if isinstance(self.side, SyncSide):
            self.runner.run(stop, **options)
            return

        async def loop() -> None:
            import asyncio

            done = asyncio.Event()
            waiter = asyncio.get_running_loop().run_in_executor(None, stop.wait)
            waiter.add_done_callback(lambda _: done.set())
            await self.runner.run(done, **options)

        self.side.call(loop())


def tick(engine: sa.Engine, counter_id: UUID, times: int = 1) -> None:
    """Tick (creating it if new) a counter ``times`` times in one unit of work."""
    with SqlAlchemyUnitOfWork(engine) as uow:
        counters = uow.repository(Counter)
        counter = counters.get(counter_id)
        if counter is None:
            counter = Counter(counter_id, "c")
            counters.add(counter)
        for _ in range(times):
            counter.tick()
        uow.commit()


def counts_in_view(engine: sa.Engine, projection: str = "counters") -> dict[UUID, int]:
    """The view's count of each counter."""
    v = counter_view
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(v.c.counter_id, v.c.count).where(v.c.projection == projection)
        ).all()
    return {UUID(counter_id): count for counter_id, count in rows}


def counts_of_aggregates(engine: sa.Engine, ids: Sequence[UUID]) -> dict[UUID, int]:
    """Each counter's count, loaded through a unit of work (the recomputation)."""
    with SqlAlchemyUnitOfWork(engine) as uow:
        return {i: uow.repository(Counter).require(i).count for i in ids}


def applied(engine: sa.Engine, projection: str = "counters") -> dict[UUID, list[int]]:
    """The counts each counter's applied events carried, in the order they were applied."""
    log = applied_log
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(log.c.counter_id, log.c.count)
            .where(log.c.projection == projection)
            .order_by(log.c.seq)
        ).all()
    seen: dict[UUID, list[int]] = defaultdict(list)
    for counter_id, count in rows:
        seen[UUID(counter_id)].append(count)
    return dict(seen)


def applied_event_ids(engine: sa.Engine, projection: str = "counters") -> list[UUID]:
    """The ids of the events ``projection`` applied, in order (duplicates kept)."""
    log = applied_log
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(log.c.event_id).where(log.c.projection == projection)
            ).scalars()
        )


def ticked_event_ids(engine: sa.Engine) -> list[UUID]:
    """The ids of every CounterTicked event in the outbox."""
    t = outbox_table
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(t.c.event_id).where(t.c.event_type.like("%CounterTicked"))
            ).scalars()
        )


def checkpoint(engine: sa.Engine, projection: str = "counters") -> tuple[int, int] | None:
    """``projection``'s stored checkpoint, or None if it has none."""
    c = projection_checkpoints_table
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(c.c.transaction_order, c.c.position).where(c.c.name == projection)
        ).first()
    return None if row is None else (row[0], row[1])
