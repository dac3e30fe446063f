"""Cancellation and database_timeout in the middle of an async commit leave nothing half done.

A test subclass counts the unit of work's awaits on the database (connecting, beginning,
each statement, the commit, closing) and interrupts the k-th, for every k in turn: by
``task.cancel()`` and by an expiring ``asyncio.timeout``, in a block that updates, one that
inserts and one that deletes an aggregate. Whatever k, the database holds
all of the commit or none of it, the aggregate's version says which, no connection is left
in a transaction (on PostgreSQL: no session 'idle in transaction' in pg_stat_activity), and
the pool's only connection serves the next block. A silent proxy in front of PostgreSQL
shows database_timeout cutting a round trip that would never return.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.outbox.brokers import TcpProxy, postgres_proxy
from tests.postgres import postgres_url
from tests.sqlalchemy.async_engines import ASYNC_DRIVERS, async_engine_for, make_async_engine

import sqlalchemy as sa
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, outbox_table
from tactical.sqlalchemy._statements import Operation
from tactical.testing import Counter

__all__ = ["postgres_proxy"]

T = TypeVar("T")

LIVENESS = 15.0
"""Seconds within which a cut round trip must have failed: a liveness bound, not a speed claim."""


class InterruptedAt(AsyncSqlAlchemyUnitOfWork):
    """Interrupts its ``at``-th await on the database with ``interrupt()`` (0: never)."""

    def __init__(self, engine: AsyncEngine, at: int, interrupt: Callable[[], object]) -> None:
        super().__init__(engine)
        self.awaits = 0
        self.at = at
        self.interrupt = interrupt

    def _count(self) -> None:
        self.awaits += 1
        if self.awaits == self.at:
            # Takes effect at the first point where the task suspends next: in the driver.
            self.interrupt()

    async def _bounded(self, awaitable: Awaitable[T]) -> T:
        self._count()  # connecting, beginning, closing
        return await super()._bounded(awaitable)

    def _round_trip(self, connection: sa.Connection, operation: Operation) -> object:
        self._count()  # each operation of a storage flow (its statements, the commit)
        return super()._round_trip(connection, operation)


@pytest.fixture(params=ASYNC_DRIVERS)
async def driven(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, AsyncEngine, str]]:
    """(driver, AsyncEngine, its application name) whose pool has one connection."""
    name = f"tactical-cancel-{uuid4().hex[:8]}"
    driver, engine = await async_engine_for(
        request, tmp_path, application_name=name, pool_size=1, max_overflow=0
    )
    yield driver, engine, name
    await engine.dispose()


async def saved(engine: AsyncEngine) -> Counter:
    counter = Counter(uuid4(), "cancel")
    async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).add(counter)
        await uow.commit()
    return counter


State = tuple[int | None, int | None, int]
"""(stored version, stored count, outbox rows) of a counter; None, None when it is not stored."""


async def stored_state(engine: AsyncEngine, counter_id: UUID) -> State:
    """The counter's :data:`State`, read in a new block."""
    async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
        counter = await uow.repository(Counter).get(counter_id)
        rows = (
            await uow.connection.execute(
                sa.select(sa.func.count()).where(outbox_table.c.aggregate_id == str(counter_id))
            )
        ).scalar_one()
    if counter is None:
        return None, None, rows
    return counter.version, counter.count, rows


# What each kind of block writes: (the counter's state before, after its commit, the awaits
# on aiosqlite, on PostgreSQL). The awaits: connect, begin (SQLite's blocks begin at once;
# PostgreSQL's with the first write), the load (none for an insert), the write, the outbox
# insert (none for a delete: a removal records no event), the commit, the close.
WRITES: dict[str, tuple[State, State, int, int]] = {
    "update": ((1, 0, 0), (2, 1, 1), 7, 6),
    "insert": ((None, None, 0), (1, 1, 1), 6, 5),
    "remove": ((1, 0, 0), (None, None, 0), 6, 5),
}


async def to_write(engine: AsyncEngine, write: str) -> Counter:
    """The counter the block of kind ``write`` writes: stored, or (an insert) new and ticked."""
    if write != "insert":
        return await saved(engine)
    counter = Counter(uuid4(), "cancel")
    counter.tick()
    return counter


async def command(uow: InterruptedAt, write: str, counter: Counter, held: list[Counter]) -> None:
    """The block of kind ``write`` on ``counter``; ``held`` gets the object it committed."""
    async with uow:
        repository = uow.repository(Counter)
        if write == "insert":
            repository.add(counter)
            mine = counter
        else:
            mine = await repository.require(counter.id)
            if write == "update":
                mine.tick()
            else:
                repository.remove(mine)
        held.append(mine)
        await uow.commit()


def idle_in_transaction(application_name: str, *, settle: float = 5.0) -> int:
    """Sessions of ``application_name`` idle in a transaction (none within ``settle`` seconds?)."""
    engine = sa.create_engine(postgres_url(), poolclass=sa.NullPool)
    try:
        deadline = time.monotonic() + settle
        while True:
            with engine.connect() as connection:
                count = connection.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
                        "AND state LIKE 'idle in transaction%'"
                    ),
                    {"name": application_name},
                ).scalar_one()
            if count == 0 or time.monotonic() >= deadline:
                return int(count)
            time.sleep(0.05)
    finally:
        engine.dispose()


def cancel_current_task() -> None:
    task = asyncio.current_task()
    assert task is not None
    task.cancel()


class TestInterruptedCommits:
    @pytest.mark.parametrize("write", list(WRITES))
    @pytest.mark.parametrize("how", ["task.cancel", "asyncio.timeout"])
    async def test_an_interruption_at_any_await_leaves_all_or_nothing(
        self, driven: tuple[str, AsyncEngine, str], how: str, write: str
    ) -> None:
        """For every await k of a commit: nothing stored before COMMIT, no transaction left, the pool usable."""
        driver, engine, name = driven
        if driver != "aiosqlite":  # a load before the first write opens no transaction
            async with AsyncSqlAlchemyUnitOfWork(engine) as reader:
                await reader.repository(Counter).get(uuid4())
                assert idle_in_transaction(name, settle=0) == 0
        before, after, sqlite_awaits, postgres_awaits = WRITES[write]
        probe, probed = InterruptedAt(engine, 0, lambda: None), list[Counter]()
        version_before = 0 if write == "insert" else 1
        await command(probe, write, await to_write(engine, write), probed)
        assert probe.awaits == (sqlite_awaits if driver == "aiosqlite" else postgres_awaits)
        version_after = probed[0].version
        commit_await = probe.awaits - 1

        for k in range(1, probe.awaits + 1):
            counter = await to_write(engine, write)
            held: list[Counter] = []
            if how == "task.cancel":
                uow = InterruptedAt(engine, k, cancel_current_task)
                task = asyncio.create_task(command(uow, write, counter, held))
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                bound = asyncio.timeout(None)
                expire = partial(bound.reschedule, asyncio.get_running_loop().time())
                try:
                    async with bound:
                        await command(InterruptedAt(engine, k, expire), write, counter, held)
                except TimeoutError:
                    pass
                else:
                    # Returning an idle connection may need no I/O (psycopg): nothing to cut.
                    assert k == probe.awaits, f"await {k} was not interrupted"

            state = await stored_state(engine, counter.id)
            if k < commit_await:
                assert state == before, f"await {k}"
                if held:
                    assert held[0].version == version_before, f"await {k}: version not restored"
            else:
                assert state in {before, after}, f"await {k}"
                if k > commit_await:
                    assert (state, held[0].version) == (after, version_after), f"await {k}"
            if driver != "aiosqlite":
                assert idle_in_transaction(name) == 0, f"await {k}"
            # The pool's only connection serves the next block, which writes.
            async with AsyncSqlAlchemyUnitOfWork(engine) as next_uow:
                next_uow.repository(Counter).add(Counter(uuid4(), "next"))
                await next_uow.commit()


def engine_via(proxy: TcpProxy, driver: str, connect_timeout: int = 2) -> AsyncEngine:
    url = postgres_url().set(drivername=f"postgresql+{driver}", host="127.0.0.1", port=proxy.port)
    connect_args: dict[str, Any] = (
        {"connect_timeout": connect_timeout}
        if driver == "psycopg"
        else {"timeout": connect_timeout}
    )
    return make_async_engine(driver, url, connect_args=connect_args)


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
class TestDatabaseTimeout:
    async def test_a_commit_meeting_silence_times_out_and_nothing_is_stored(
        self, postgres_proxy: TcpProxy, driver: str
    ) -> None:
        """A commit on a database that stopped answering fails with a noted TimeoutError; the next block reconnects."""
        engine = engine_via(postgres_proxy, driver)
        uow = AsyncSqlAlchemyUnitOfWork(engine, database_timeout=0.5)
        counter = Counter(uuid4(), "silenced")

        async def commit_on_a_silent_database() -> None:
            async with uow:
                uow.repository(Counter).add(counter)
                assert postgres_proxy.silence() >= 1
                await uow.commit()

        async with asyncio.timeout(LIVENESS):
            with pytest.raises(TimeoutError) as raised:
                await commit_on_a_silent_database()
            assert any("database_timeout (0.5s)" in note for note in raised.value.__notes__)
            assert counter.version == 0
            async with uow:
                assert await uow.repository(Counter).get(counter.id) is None
        await engine.dispose()

    async def test_a_load_meeting_silence_times_out(
        self, postgres_proxy: TcpProxy, driver: str
    ) -> None:
        """get() on a silent database fails within the bound instead of hanging."""
        engine = engine_via(postgres_proxy, driver)
        uow = AsyncSqlAlchemyUnitOfWork(engine, database_timeout=0.5)

        async def load_on_a_silent_database() -> None:
            async with uow:
                assert postgres_proxy.silence() >= 1
                await uow.repository(Counter).get(uuid4())

        async with asyncio.timeout(LIVENESS):
            with pytest.raises(TimeoutError):
                await load_on_a_silent_database()
        await engine.dispose()

    async def test_connecting_to_a_hung_database_times_out(
        self, postgres_proxy: TcpProxy, driver: str
    ) -> None:
        """Entering the block while the network holds every byte fails within database_timeout."""
        # The driver's own connect timeout is longer than the liveness bound: only
        # database_timeout can end the wait in time.
        engine = engine_via(postgres_proxy, driver, connect_timeout=60)
        uow = AsyncSqlAlchemyUnitOfWork(engine, database_timeout=0.5)
        postgres_proxy.pause()
        try:
            async with asyncio.timeout(LIVENESS):
                with pytest.raises(TimeoutError) as raised:
                    async with uow:
                        pass
            assert any("database_timeout (0.5s)" in note for note in raised.value.__notes__)
        finally:
            postgres_proxy.resume()
        await engine.dispose()
