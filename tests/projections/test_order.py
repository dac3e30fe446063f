"""On PostgreSQL, events committed in any order reach a projection once each, in each aggregate's order.

Outbox positions come from a sequence at insert and become visible at commit, so they appear
out of order whenever transactions commit out of order. These tests commit in the orders
that break the naive readers (the highest position seen; the writer's transaction id) and
check that the runner misses nothing and keeps each aggregate's order.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from tests.outbox.sides import AsyncSide, SyncSide
from tests.projections.views import (
    DrivenRunner,
    applied,
    applied_event_ids,
    checkpoint,
    counter_projection,
    counts_in_view,
    counts_of_aggregates,
    create_views,
    tick,
    ticked_event_ids,
)

import sqlalchemy as sa
from tactical import retry_on_conflict
from tactical.projections import AsyncProjection, Projection, ProjectionRunner
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table
from tactical.sqlalchemy._schema import TRANSACTION_ORDER_POSTGRESQL
from tactical.testing import Counter, CounterTicked

pytestmark = pytest.mark.postgres

CommitHook = Callable[[], None]


@pytest.fixture
def writers(postgres_engine: sa.Engine) -> Iterator[tuple[sa.Engine, dict[int, CommitHook]]]:
    """An engine on the test database whose commits first call the hook of their thread.

    The hook runs after the unit of work's INSERTs and before its COMMIT reaches the
    server: that is where a writer is held (or made to sleep) to commit out of order.
    """
    create_views(postgres_engine)
    engine = sa.create_engine(postgres_engine.url, pool_size=12, max_overflow=4)
    hooks: dict[int, CommitHook] = {}

    @sa.event.listens_for(engine, "commit")
    def before_commit(_connection: sa.Connection) -> None:
        hook = hooks.get(threading.get_ident())
        if hook is not None:
            hook()

    yield engine, hooks
    engine.dispose()


def _outbox_positions(engine: sa.Engine, after: int) -> list[int]:
    t = outbox_table
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(t.c.position).where(t.c.position > after).order_by(t.c.position)
            ).scalars()
        )


class TestOutOfOrderCommits:
    def test_the_highest_position_reader_skips_what_the_runner_applies(
        self, writers: tuple[sa.Engine, dict[int, CommitHook]]
    ) -> None:
        """A commits after B although its position is lower: "position > last seen" loses it."""
        engine, hooks = writers
        inserted, release = threading.Event(), threading.Event()
        first, second = uuid4(), uuid4()

        def hold() -> None:
            inserted.set()
            assert release.wait(30)

        def write_first() -> None:
            hooks[threading.get_ident()] = hold
            tick(engine, first)

        runner = ProjectionRunner(engine, [counter_projection(SyncSide())])
        writer = threading.Thread(target=write_first)
        writer.start()
        try:
            assert inserted.wait(30)
            tick(engine, second)  # a higher position, committed first
            naive_seen = _outbox_positions(engine, after=0)
            runner.catch_up("counters")  # must not move past the open transaction's row
        finally:
            release.set()
            writer.join(30)
        naive_seen += _outbox_positions(engine, after=max(naive_seen))
        runner.catch_up("counters")

        assert len(ticked_event_ids(engine)) == 2
        assert len(naive_seen) == 1  # the first writer's event was never seen by it
        assert applied(engine) == {first: [1], second: [1]}

    def test_an_aggregates_order_holds_when_its_writer_got_a_transaction_id_early(
        self, writers: tuple[sa.Engine, dict[int, CommitHook]]
    ) -> None:
        """B took its xid before A, then loaded the counter A had changed: B's event is last.

        Ordered by the writers' transaction ids (the xmin of the rows) the counter's events
        would come as 1, 3, 2; the runner applies 1, 2, 3.
        """
        engine, _ = writers
        counter_id = uuid4()
        tick(engine, counter_id)  # count 1
        with SqlAlchemyUnitOfWork(engine) as late:
            late.connection.execute(sa.select(sa.func.pg_current_xact_id()))
            tick(engine, counter_id)  # count 2, by a transaction with a higher xid
            late.repository(Counter).require(counter_id).tick()  # count 3
            late.commit()
        t = outbox_table
        with engine.connect() as connection:
            by_xid = connection.execute(
                sa.text(
                    "SELECT payload->>'count' FROM tactical_outbox "
                    "ORDER BY xmin::text::bigint, position"
                )
            ).scalars()
            assert [int(c) for c in by_xid] == [1, 3, 2]
            orders = connection.execute(
                sa.select(t.c.transaction_order, sa.literal_column("xmin::text::bigint"))
            ).all()
        assert all(order >= xid for order, xid in orders)
        ProjectionRunner(engine, [counter_projection(SyncSide())]).catch_up("counters")
        assert applied(engine) == {counter_id: [1, 2, 3]}

    def test_an_open_transaction_that_has_not_written_to_the_outbox_holds_nothing_back(
        self, writers: tuple[sa.Engine, dict[int, CommitHook]]
    ) -> None:
        """Only the outbox's open writers bound the horizon, not every transaction with an id."""
        engine, _ = writers
        counter_id = uuid4()
        with engine.connect() as elsewhere:
            elsewhere.execute(sa.select(sa.func.pg_current_xact_id()))  # open, with an xid
            tick(engine, counter_id, times=2)
            runner = ProjectionRunner(engine, [counter_projection(SyncSide())])
            runner.catch_up("counters")
            assert applied(engine) == {counter_id: [1, 2]}
            elsewhere.rollback()


class TestConcurrentWriters:
    def test_a_live_projection_sees_every_event_once_in_order(
        self, writers: tuple[sa.Engine, dict[int, CommitHook]], side: SyncSide | AsyncSide
    ) -> None:
        """Writers commit in random order with random delays; the projection misses nothing.

        Six writer threads, each with its own connection, tick five counters 25 times each;
        some take their transaction id before loading the counter, and every commit waits a
        random time after its INSERTs. Meanwhile two projections run live. Afterwards each
        projection applied every event exactly once, each counter's in order, and its view
        equals the counters loaded from their aggregates.
        """
        engine, hooks = writers
        ids = [uuid4() for _ in range(5)]
        for counter_id in ids:
            tick(engine, counter_id)
        seed = random.randrange(2**32)
        print(f"random seed {seed}")  # to replay a failure

        def write(number: int) -> None:
            rng = random.Random(seed + number)
            hooks[threading.get_ident()] = lambda: time.sleep(rng.uniform(0, 0.03))
            for _ in range(25):
                retry_on_conflict(functools.partial(_tick_one, engine, rng, ids), attempts=100)
                time.sleep(rng.uniform(0, 0.02))  # so that the projections catch up meanwhile

        # Two runners: one projection at the head of the outbox, one a few events at a time.
        runners = [
            DrivenRunner(side, engine, [counter_projection(side)], batch_size=50),
            DrivenRunner(side, engine, [counter_projection(side, "small batches")], batch_size=3),
        ]
        stop = threading.Event()
        followers = [
            threading.Thread(target=r.run, args=(stop,), kwargs={"idle_interval": 0.002})
            for r in runners
        ]
        naive_seen: list[int] = []

        def read_naively() -> None:
            while not stop.is_set():
                naive_seen.extend(_outbox_positions(engine, after=max(naive_seen, default=0)))
                time.sleep(0.002)

        followers.append(threading.Thread(target=read_naively))
        for follower in followers:
            follower.start()
        try:
            threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(300)
            expected = sorted(ticked_event_ids(engine))
            last = _last_row(engine)
            deadline = time.monotonic() + 120
            while checkpoint(engine) != last or checkpoint(engine, "small batches") != last:
                assert time.monotonic() < deadline, "the projections did not catch up in 120s"
                time.sleep(0.05)
        finally:
            stop.set()
            for follower in followers:
                follower.join(60)
        assert not any(follower.is_alive() for follower in followers)
        # What "the highest position seen" would have lost under the same schedule:
        print(f"a highest-position reader missed {len(expected) - len(naive_seen)} events")
        counts = counts_of_aggregates(engine, ids)
        assert len(expected) == sum(counts.values())
        for name in ("counters", "small batches"):
            assert sorted(applied_event_ids(engine, name)) == expected
            assert counts_in_view(engine, name) == counts
            assert applied(engine, name) == {i: list(range(1, counts[i] + 1)) for i in ids}


def _last_row(engine: sa.Engine) -> tuple[int, int]:
    """The outbox's last row in the order projections read it."""
    t = outbox_table
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(t.c.transaction_order, t.c.position)
            .order_by(t.c.transaction_order.desc(), t.c.position.desc())
            .limit(1)
        ).one()
    return row[0], row[1]


def _tick_one(engine: sa.Engine, rng: random.Random, ids: list[UUID]) -> None:
    with SqlAlchemyUnitOfWork(engine) as uow:
        if rng.random() < 0.3:  # the transaction id first, the aggregate later
            uow.connection.execute(sa.select(sa.func.pg_current_xact_id()))
            time.sleep(rng.uniform(0, 0.01))
        counter = uow.repository(Counter).require(rng.choice(ids))
        for _ in range(rng.randint(1, 3)):
            counter.tick()
        uow.commit()


class TestSchema:
    def test_an_outbox_without_tacticals_order_default_is_refused(
        self, postgres_engine: sa.Engine
    ) -> None:
        """A migration that made transaction_order 0 would read in position order: refused."""
        create_views(postgres_engine)
        alter = "ALTER TABLE tactical_outbox ALTER COLUMN transaction_order SET DEFAULT {}"
        with postgres_engine.begin() as connection:
            connection.exec_driver_sql(alter.format("0"))
        try:
            runner = ProjectionRunner(postgres_engine, [counter_projection(SyncSide())])
            with pytest.raises(RuntimeError, match="has the default '0'"):
                runner.catch_up("counters")
        finally:
            with postgres_engine.begin() as connection:
                connection.exec_driver_sql(alter.format(TRANSACTION_ORDER_POSTGRESQL))
        tick(postgres_engine, uuid4())
        assert (
            ProjectionRunner(postgres_engine, [counter_projection(SyncSide())]).catch_up("counters")
            == 1
        )

    def test_batches_run_at_read_committed_whatever_the_engines_isolation(
        self, postgres_engine: sa.Engine, side: SyncSide | AsyncSide
    ) -> None:
        """The horizon needs a fresh snapshot per statement, which REPEATABLE READ would not give."""
        create_views(postgres_engine)
        tick(postgres_engine, uuid4())
        engine = sa.create_engine(postgres_engine.url, isolation_level="REPEATABLE READ")
        seen: list[str] = []
        projection: Projection | AsyncProjection
        if isinstance(side, SyncSide):
            projection = Projection("isolation")

            @projection.on(CounterTicked)
            def ticked(_event: CounterTicked, connection: sa.Connection) -> None:
                seen.append(connection.exec_driver_sql("SHOW transaction_isolation").scalar_one())

        else:
            projection = AsyncProjection("isolation")

            @projection.on(CounterTicked)
            async def ticked_async(_event: CounterTicked, connection: Any) -> None:
                result = await connection.exec_driver_sql("SHOW transaction_isolation")
                seen.append(result.scalar_one())

        try:
            DrivenRunner(side, engine, [projection]).catch_up("isolation")
        finally:
            engine.dispose()
        assert seen == ["read committed"]
