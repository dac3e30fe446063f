"""Guarding round trips never changes an engine's listeners while other threads dispatch them.

SQLAlchemy calls an event's listeners by iterating a deque; ``event.listen`` on the engine
appends to it, and an iteration that resumes after the append raises "RuntimeError: deque
mutated during iteration" in whichever thread was dispatching (a commit in progress). The
listeners that bound the round trips a unit of work does not issue itself (``uow.connection``'s,
a mapper's) used to be added to the engine the first time they were needed, whatever other
threads were doing on it.

Each test makes that moment certain instead of likely: an application's own listener on the
engine (an instrumentation's, say) holds committing threads inside the dispatch of their commit
while the unit of work takes ``uow.connection`` for the first time (or a relay is made), then
lets them go on. Nothing is timed; the waits are liveness bounds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from tests.postgres import postgres_url
from tests.sqlalchemy.counter_mapping import CounterMapper, mapped

import sqlalchemy as sa
from sqlalchemy import event, exc
from tactical import EventBus, JsonCodec
from tactical.outbox import EventBusPublisher, OutboxRelay, TimerWorker
from tactical.projections import Projection, ProjectionRunner
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork
from tactical.testing import Counter

LIVENESS = 30.0
"""Seconds within which a paused or released thread must get on: a liveness bound."""

COMMITTERS = 3


class HeldCommits:
    """An application's listener on ``commit`` that holds each committing thread inside the dispatch.

    Each of the first ``COMMITTERS`` commits on the engine waits there (its thread in the
    middle of iterating the engine's ``commit`` listeners) until :meth:`release`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held = 0
        self.all_held = threading.Barrier(COMMITTERS + 1, timeout=LIVENESS)
        self._released = threading.Event()

    def __call__(self, _connection: object) -> None:
        with self._lock:
            hold = self._held < COMMITTERS
            self._held += 1
        if hold:
            self.all_held.wait()
            assert self._released.wait(LIVENESS), "never released"

    def release(self) -> None:
        self._released.set()


def commit_in_threads(engine: sa.Engine, while_held: Callable[[], None]) -> list[BaseException]:
    """Commit a counter in each of ``COMMITTERS`` threads, run ``while_held`` while every one is
    inside its commit's dispatch; the errors the committing threads raised."""
    held = HeldCommits()
    event.listen(engine, "commit", held)
    errors: list[BaseException] = []

    def commit() -> None:
        try:
            with SqlAlchemyUnitOfWork(engine, database_timeout=30.0) as uow:
                uow.repository(Counter).add(Counter(uuid4(), "racing"))
                uow.commit()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=commit, daemon=True) for _ in range(COMMITTERS)]
    for thread in threads:
        thread.start()
    held.all_held.wait()
    try:
        while_held()
    finally:
        held.release()
        for thread in threads:
            thread.join(LIVENESS)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.fixture
def fresh_engine(postgres_engine: sa.Engine) -> Iterator[sa.Engine]:
    """An engine on the PostgreSQL test database that no unit of work has watched yet."""
    fresh = sa.create_engine(postgres_engine.url)
    yield fresh
    fresh.dispose()


EVENTS = ("before_cursor_execute", "after_cursor_execute", "commit", "rollback")


def listeners_of(engine: sa.Engine) -> list[int]:
    counts = [len(getattr(engine.dispatch, name)) for name in EVENTS]
    return [*counts, len(engine.dialect.dispatch.handle_error)]


def test_on_sqlite_the_engine_s_listeners_never_change(sqlite_engine: sa.Engine) -> None:
    """SQLite's round trips are not cut (no socket): taking uow.connection adds no listener.

    So nothing can race with threads committing there; they commit while it is taken.
    """
    fresh = sa.create_engine(sqlite_engine.url)
    before = listeners_of(fresh)
    stop = threading.Event()
    errors: list[BaseException] = []
    commits = [0] * COMMITTERS

    def commit(index: int) -> None:
        try:
            while not stop.is_set():
                with SqlAlchemyUnitOfWork(fresh, database_timeout=30.0) as uow:
                    uow.repository(Counter).add(Counter(uuid4(), "racing"))
                    uow.commit()
                commits[index] += 1
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=commit, args=(index,), daemon=True) for index in range(COMMITTERS)
    ]
    for thread in threads:
        thread.start()
    try:
        for _ in range(20):
            uow = SqlAlchemyUnitOfWork(fresh, database_timeout=30.0)
            with uow:
                assert uow.connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(LIVENESS)
    fresh.dispose()
    assert errors == []
    assert listeners_of(fresh) == before


@pytest.mark.postgres
class TestTheFirstGuardedStatementsOnAnEngine:
    def test_taking_uow_connection_leaves_other_threads_commits_alone(
        self, fresh_engine: sa.Engine
    ) -> None:
        """Threads committing on the engine go on unharmed while uow.connection is first taken."""
        uow = SqlAlchemyUnitOfWork(fresh_engine, database_timeout=30.0)

        def take_the_connection() -> None:
            with uow:
                assert uow.connection.exec_driver_sql("SELECT 1").scalar_one() == 1

        assert commit_in_threads(fresh_engine, take_the_connection) == []
        with fresh_engine.connect() as connection:
            counted = connection.exec_driver_sql(
                "SELECT count(*) FROM tactical_aggregates"
            ).scalar_one()
        assert counted >= COMMITTERS

    def test_making_a_unit_of_work_with_a_mapper_leaves_other_threads_commits_alone(
        self, fresh_engine: sa.Engine
    ) -> None:
        """A unit of work with a relational mapper, made while others commit, harms none of them."""
        mapped.create_all(fresh_engine)

        def make_and_use() -> None:
            uow = SqlAlchemyUnitOfWork(
                fresh_engine, mappers=[CounterMapper()], database_timeout=30.0
            )
            with uow:
                assert uow.connection.exec_driver_sql("SELECT 2").scalar_one() == 2

        assert commit_in_threads(fresh_engine, make_and_use) == []

    def test_making_workers_leaves_other_threads_commits_alone(
        self, fresh_engine: sa.Engine
    ) -> None:
        """A relay, a timer worker and a projection runner made while others commit harm none of them."""

        def make_workers() -> None:
            OutboxRelay(
                fresh_engine, EventBusPublisher(EventBus(), JsonCodec()), database_timeout=30.0
            )
            TimerWorker(fresh_engine, database_timeout=30.0)
            ProjectionRunner(fresh_engine, [Projection("race")], database_timeout=30.0)

        assert commit_in_threads(fresh_engine, make_workers) == []

    def test_the_caller_s_statements_are_guarded_from_the_first_block_on(
        self, fresh_engine: sa.Engine
    ) -> None:
        """A query on uow.connection outliving database_timeout is cut, in the first block and after.

        The first block's connection was taken before the listeners were needed, the next
        block's from the watched engine: the deadline reaches the caller's statements on both.
        """
        uow = SqlAlchemyUnitOfWork(fresh_engine, database_timeout=0.2)
        for _block in range(2):
            with pytest.raises(exc.OperationalError), uow:
                uow.connection.exec_driver_sql("SELECT pg_sleep(20)")
        with uow:
            assert uow.connection.exec_driver_sql("SELECT 3").scalar_one() == 3

    def test_units_of_work_that_never_need_the_listeners_do_not_run_them(
        self, fresh_engine: sa.Engine
    ) -> None:
        """The engine itself gets no listener: only connections that need them run them."""
        before = listeners_of(fresh_engine)
        watching = SqlAlchemyUnitOfWork(fresh_engine, database_timeout=30.0)
        with watching:
            watching.connection.exec_driver_sql("SELECT 1")
        with SqlAlchemyUnitOfWork(fresh_engine, database_timeout=30.0) as other:
            other.repository(Counter).add(Counter(uuid4(), "plain"))
            other.commit()
        assert listeners_of(fresh_engine)[:4] == before[:4]


@pytest.mark.postgres
class TestTheFirstGuardedStatementsOnAnAsyncEngine:
    @pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
    def test_taking_uow_connection_leaves_commits_in_other_threads_alone(
        self, driver: str, postgres_engine: sa.Engine
    ) -> None:
        """Event loops in other threads commit unharmed while a loop first takes uow.connection."""
        url = postgres_url().set(drivername=f"postgresql+{driver}")
        # One engine for several event loops: no connection may outlive its loop.
        engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)
        uow = AsyncSqlAlchemyUnitOfWork(engine, database_timeout=30.0)

        async def take_the_connection() -> None:
            async with uow:
                result = await uow.connection.exec_driver_sql("SELECT 1")
                assert result.scalar_one() == 1

        async def commit() -> None:
            async with AsyncSqlAlchemyUnitOfWork(engine, database_timeout=30.0) as other:
                other.repository(Counter).add(Counter(uuid4(), "racing"))
                await other.commit()

        # The engine's first connection initializes its dialect, once, in one event loop.
        asyncio.run(commit())
        held = HeldCommits()
        event.listen(engine.sync_engine, "commit", held)
        errors: list[BaseException] = []

        def in_its_own_loop() -> None:
            try:
                asyncio.run(commit())
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=in_its_own_loop, daemon=True) for _ in range(COMMITTERS)]
        for thread in threads:
            thread.start()
        try:
            held.all_held.wait()
            asyncio.run(take_the_connection())
        finally:
            held.release()
            for thread in threads:
                thread.join(LIVENESS)
        asyncio.run(engine.dispose())
        assert errors == []
        assert not any(thread.is_alive() for thread in threads)
        assert errors == []
