"""AsyncSqlAlchemyUnitOfWork on aiosqlite, psycopg async and asyncpg, next to the sync one.

The contract suite (test_async_uow_contract.py) proves the shared behaviour one block at a
time; these tests interleave tasks on one event loop, compare what is written with what the
sync unit of work writes, and share one database between a sync and an async program.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.sqlalchemy.async_engines import ASYNC_DRIVERS, async_engine_for, sync_url
from tests.sqlalchemy.counter_mapping import CounterMapper, mapped

import sqlalchemy as sa
from tactical import ConcurrencyError, EventBus, retry_on_conflict
from tactical.outbox import EventBusPublisher, OutboxRelay, partition_key
from tactical.sqlalchemy import (
    AsyncSqlAlchemyUnitOfWork,
    SqlAlchemyUnitOfWork,
    configure_engine,
    outbox_table,
)
from tactical.testing import Counter, CounterRenamed, CounterTicked


@pytest.fixture(params=ASYNC_DRIVERS)
async def driven(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """(driver name, AsyncEngine) on each asyncio driver, tactical's tables empty."""
    driver, engine = await async_engine_for(request, tmp_path)
    yield driver, engine
    await engine.dispose()


@pytest.fixture
def sync_twin(driven: tuple[str, AsyncEngine]) -> Any:
    """A sync Engine on the async engine's database."""
    driver, engine = driven
    twin = sa.create_engine(sync_url(driver, engine.url))
    yield twin
    twin.dispose()


async def saved(engine: AsyncEngine, name: str = "shared") -> Counter:
    counter = Counter(uuid4(), name)
    async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
        uow.repository(Counter).add(counter)
        await uow.commit()
    return counter


async def load(engine: AsyncEngine, counter_id: UUID) -> Counter | None:
    async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
        return await uow.repository(Counter).get(counter_id)


class TestConstruction:
    def test_a_sync_engine_is_refused_naming_the_sync_unit_of_work(self) -> None:
        """A sync Engine is refused at once, saying which unit of work takes it."""
        engine = sa.create_engine("sqlite://")
        with pytest.raises(
            TypeError,
            match=r"expected a SQLAlchemy AsyncEngine, got Engine\(sqlite://\): "
            r"use SqlAlchemyUnitOfWork for it",
        ):
            AsyncSqlAlchemyUnitOfWork(engine)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        engine.dispose()

    async def test_an_async_engine_is_refused_by_the_sync_unit_of_work(self) -> None:
        """The sync unit of work refuses an AsyncEngine, naming the async one."""
        engine = create_async_engine("sqlite+aiosqlite://")
        with pytest.raises(TypeError, match="use AsyncSqlAlchemyUnitOfWork for it"):
            SqlAlchemyUnitOfWork(engine)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        await engine.dispose()

    def test_a_url_is_refused_with_the_fix(self) -> None:
        """A URL string is refused, saying to make an AsyncEngine of it."""
        with pytest.raises(
            TypeError,
            match=r"make one with sqlalchemy.ext.asyncio.create_async_engine\('sqlite\+aiosqlite://'\)",
        ):
            AsyncSqlAlchemyUnitOfWork("sqlite+aiosqlite://")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    @pytest.mark.parametrize("timeout", [0, -1.0])
    async def test_a_database_timeout_that_is_not_positive_is_refused(self, timeout: float) -> None:
        """database_timeout must be positive (or None)."""
        engine = create_async_engine("sqlite+aiosqlite://")
        with pytest.raises(ValueError, match=f"database_timeout must be positive, got {timeout}"):
            AsyncSqlAlchemyUnitOfWork(engine, database_timeout=timeout)
        await engine.dispose()

    async def test_two_mappers_for_one_type_are_refused(self) -> None:
        """Two relational mappers of Counter are refused when the unit of work is made."""
        engine = create_async_engine("sqlite+aiosqlite://")
        with pytest.raises(ValueError, match="two relational mappers for Counter"):
            AsyncSqlAlchemyUnitOfWork(engine, mappers=[CounterMapper(), CounterMapper()])
        await engine.dispose()

    async def test_configure_engine_prepares_aiosqlite_connections(self, tmp_path: Path) -> None:
        """aiosqlite gets WAL, foreign keys, the busy timeout and a real BEGIN."""
        engine = configure_engine(create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"))
        async with engine.begin() as connection:
            pragma = connection.exec_driver_sql
            assert (await pragma("PRAGMA journal_mode")).scalar_one() == "wal"
            assert (await pragma("PRAGMA foreign_keys")).scalar_one() == 1
            assert (await pragma("PRAGMA busy_timeout")).scalar_one() == 10_000
            raw = await connection.get_raw_connection()
            assert raw.driver_connection is not None
            assert raw.driver_connection.in_transaction  # the listener's BEGIN
        await engine.dispose()


class TestInterleavedTasks:
    async def test_of_two_tasks_updating_one_aggregate_exactly_one_conflicts(
        self, driven: tuple[str, AsyncEngine]
    ) -> None:
        """Both load, both change, both commit: one commit stands, the other raises ConcurrencyError."""
        _, engine = driven
        counter = await saved(engine)
        loaded = asyncio.Barrier(2)

        async def rename(name: str) -> str:
            async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
                mine = await uow.repository(Counter).require(counter.id)
                await loaded.wait()
                mine.rename(name)
                await uow.commit()
            return name

        outcomes = await asyncio.gather(rename("a"), rename("b"), return_exceptions=True)
        (winner,) = [o for o in outcomes if isinstance(o, str)]
        (conflict,) = [o for o in outcomes if isinstance(o, ConcurrencyError)]
        assert conflict.actual_version == 2
        stored = await load(engine, counter.id)
        assert stored is not None
        assert (stored.name, stored.version) == (winner, 2)

    async def test_tasks_changing_different_aggregates_never_conflict(
        self, driven: tuple[str, AsyncEngine]
    ) -> None:
        """Eight tasks load at once and commit at once, each its own counter: all commit (no false conflict on SQLite)."""
        _, engine = driven
        counters = [await saved(engine, f"c{i}") for i in range(8)]
        loaded = asyncio.Barrier(len(counters))

        async def tick(counter_id: UUID) -> None:
            async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
                mine = await uow.repository(Counter).require(counter_id)
                await loaded.wait()
                mine.tick()
                await uow.commit()

        await asyncio.gather(*(tick(c.id) for c in counters))
        for counter in counters:
            stored = await load(engine, counter.id)
            assert stored is not None
            assert (stored.count, stored.version) == (1, 2)

    async def test_trace_ids_follow_each_task_across_awaits(
        self, driven: tuple[str, AsyncEngine]
    ) -> None:
        """An async handler's events carry its own task's correlation and causation ids while tasks interleave."""
        _, engine = driven
        bus = EventBus()

        async def rename_on_tick(event: CounterTicked) -> None:
            await asyncio.sleep(0)  # let the other task run in between
            async with AsyncSqlAlchemyUnitOfWork(engine, bus) as uow:
                counter = await uow.repository(Counter).require(event.counter_id)
                await asyncio.sleep(0)
                counter.rename(f"after {event.event_id}")
                await uow.commit()

        bus.subscribe(CounterTicked, rename_on_tick)
        counters = [await saved(engine, f"t{i}") for i in range(4)]
        ticks: dict[UUID, UUID] = {}

        async def tick(counter_id: UUID) -> None:
            async with AsyncSqlAlchemyUnitOfWork(engine, bus) as uow:
                counter = await uow.repository(Counter).require(counter_id)
                counter.tick()
                ticks[counter_id] = counter.pending_events[0].event_id
                await asyncio.sleep(0)
                await uow.commit()

        await asyncio.gather(*(tick(c.id) for c in counters))
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(
                        outbox_table.c.aggregate_id,
                        outbox_table.c.correlation_id,
                        outbox_table.c.causation_id,
                    ).where(outbox_table.c.event_type.endswith("CounterRenamed"))
                )
            ).all()
        assert sorted((UUID(a), c, k) for a, c, k in rows) == sorted(
            (counter_id, tick_id, tick_id) for counter_id, tick_id in ticks.items()
        )


class TestRetriedTasks:
    async def test_tasks_retrying_on_conflict_lose_no_update(
        self, driven: tuple[str, AsyncEngine]
    ) -> None:
        """Eight tasks tick one counter ten times each, retried on conflict: 80 ticks, 80 outbox rows."""
        _, engine = driven
        counter = await saved(engine)
        conflicts: list[int] = []

        async def tick_once() -> None:
            async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
                (await uow.repository(Counter).require(counter.id)).tick()
                await asyncio.sleep(0)  # let the other tasks load the same version
                try:
                    await uow.commit()
                except ConcurrencyError:
                    conflicts.append(1)
                    raise

        tick = retry_on_conflict(tick_once, attempts=1000, base_delay=0.001, max_delay=0.02)

        async def worker() -> None:
            for _ in range(10):
                await tick()

        await asyncio.gather(*(worker() for _ in range(8)))
        stored = await load(engine, counter.id)
        assert stored is not None
        assert (stored.count, stored.version) == (80, 81)
        assert conflicts  # the tasks did collide, and were retried
        async with engine.connect() as connection:
            outbox = (
                await connection.execute(
                    sa.select(sa.func.count()).where(outbox_table.c.aggregate_id == str(counter.id))
                )
            ).scalar_one()
        assert outbox == 80


class TestSameRowsAsTheSyncUnitOfWork:
    async def test_outbox_rows_are_the_sync_ones_and_the_relay_delivers_them(
        self, driven: tuple[str, AsyncEngine], sync_twin: sa.Engine
    ) -> None:
        """The same command through each unit of work writes outbox rows alike; the sync relay publishes both."""
        _, engine = driven
        by_sync, by_async = Counter(uuid4(), "sync"), Counter(uuid4(), "async")
        for counter in (by_sync, by_async):
            counter.tick()
            counter.rename("renamed")
        with SqlAlchemyUnitOfWork(sync_twin) as uow:
            uow.repository(Counter).add(by_sync)
            uow.commit()
        async with AsyncSqlAlchemyUnitOfWork(engine) as async_uow:
            async_uow.repository(Counter).add(by_async)
            await async_uow.commit()
        # transaction_order is the server's, from each transaction's id: it differs too.
        differ = {"position", "event_id", "aggregate_id", "transaction_order"}
        columns = [c for c in outbox_table.c if c.name not in differ]
        with sync_twin.connect() as connection:
            rows = connection.execute(
                sa.select(outbox_table.c.aggregate_id, *columns).order_by(outbox_table.c.position)
            ).all()

        def written(counter: Counter) -> list[dict[str, Any]]:
            return [
                {
                    c.name: v
                    for c, v in zip(columns, row[1:], strict=True)
                    if c.name not in {"occurred_at", "correlation_id", "causation_id"}
                }
                for row in rows
                if row[0] == str(counter.id)
            ]

        assert [r["event_type"].rsplit(".")[-1] for r in written(by_async)] == [
            "CounterTicked",
            "CounterRenamed",
        ]

        # The payloads differ by ids and times (the event's, the counter's), the partition
        # keys by the counter's id (each is its aggregate's hash); their keys and every
        # other column are alike.
        def alike(rows: list[dict[str, Any]], counter: Counter) -> list[dict[str, Any]]:
            key = partition_key(rows[0]["aggregate_type"], str(counter.id))
            assert [row["partition_key"] for row in rows] == [key] * len(rows)
            return [{**row, "payload": sorted(row["payload"]), "partition_key": 0} for row in rows]

        assert alike(written(by_async), by_async) == alike(written(by_sync), by_sync)
        received: list[object] = []
        relayed_bus = EventBus()
        relayed_bus.subscribe(CounterTicked, received.append)
        relayed_bus.subscribe(CounterRenamed, received.append)
        relay = OutboxRelay(sync_twin, EventBusPublisher(relayed_bus, async_uow.codec))
        assert relay.relay_once() == 4
        assert [(type(e).__name__, getattr(e, "counter_id", None)) for e in received] == [
            ("CounterTicked", by_sync.id),
            ("CounterRenamed", by_sync.id),
            ("CounterTicked", by_async.id),
            ("CounterRenamed", by_async.id),
        ]

    async def test_a_relational_mapper_stores_through_run_sync(
        self, driven: tuple[str, AsyncEngine], sync_twin: sa.Engine
    ) -> None:
        """A mapper's sync methods run on the async connection: stored, loaded back, version-checked."""
        _, engine = driven
        mapped.create_all(sync_twin)
        with sync_twin.begin() as connection:
            for table in reversed(mapped.sorted_tables):
                connection.execute(table.delete())
        counter = Counter(uuid4(), "mapped")
        counter.mark(1)
        async with AsyncSqlAlchemyUnitOfWork(engine, mappers=[CounterMapper()]) as uow:
            uow.repository(Counter).add(counter)
            await uow.commit()
        stale = Counter(counter.id, "stale")
        async with AsyncSqlAlchemyUnitOfWork(engine, mappers=[CounterMapper()]) as uow:
            loaded = await uow.repository(Counter).require(counter.id)
            assert (loaded.name, loaded.version, len(loaded.tallies)) == ("mapped", 1, 1)
            loaded.tick()
            await uow.commit()
        async with AsyncSqlAlchemyUnitOfWork(engine, mappers=[CounterMapper()]) as uow:
            uow.repository(Counter).add(stale)
            with pytest.raises(ConcurrencyError):
                await uow.commit()
        with SqlAlchemyUnitOfWork(sync_twin, mappers=[CounterMapper()]) as sync_uow:
            stored = sync_uow.repository(Counter).require(counter.id)
        assert (stored.count, stored.version) == (1, 2)


class TestSyncAndAsyncShareOneDatabase:
    async def test_the_async_app_writes_and_the_sync_worker_reads_and_conflicts(
        self, driven: tuple[str, AsyncEngine], sync_twin: sa.Engine
    ) -> None:
        """What the async unit of work commits the sync one reads; a sync write it outdated conflicts."""
        _, engine = driven
        counter = await saved(engine, "from async")
        with SqlAlchemyUnitOfWork(sync_twin) as sync_uow:
            seen = sync_uow.repository(Counter).require(counter.id)
            assert (seen.name, seen.version) == ("from async", 1)
            async with AsyncSqlAlchemyUnitOfWork(engine) as async_uow:
                (await async_uow.repository(Counter).require(counter.id)).tick()
                await async_uow.commit()
            seen.rename("late")
            with pytest.raises(ConcurrencyError, match="at version 2"):
                sync_uow.commit()
        stored = await load(engine, counter.id)
        assert stored is not None
        assert (stored.name, stored.count, stored.version) == ("from async", 1, 2)

    async def test_the_sync_worker_writes_and_the_async_app_reads_and_conflicts(
        self, driven: tuple[str, AsyncEngine], sync_twin: sa.Engine
    ) -> None:
        """What the sync unit of work commits the async one reads; an async write it outdated conflicts."""
        _, engine = driven
        counter = Counter(uuid4(), "from sync")
        with SqlAlchemyUnitOfWork(sync_twin) as sync_uow:
            sync_uow.repository(Counter).add(counter)
            sync_uow.commit()
        async with AsyncSqlAlchemyUnitOfWork(engine) as async_uow:
            seen = await async_uow.repository(Counter).require(counter.id)
            assert (seen.name, seen.version) == ("from sync", 1)
            with SqlAlchemyUnitOfWork(sync_twin) as sync_uow:
                sync_uow.repository(Counter).require(counter.id).tick()
                sync_uow.commit()
            seen.rename("late")
            with pytest.raises(ConcurrencyError, match="at version 2"):
                await async_uow.commit()
        with SqlAlchemyUnitOfWork(sync_twin) as sync_uow:
            stored = sync_uow.repository(Counter).require(counter.id)
        assert (stored.name, stored.count, stored.version) == ("from sync", 1, 2)


class TestWhenTheTransactionBegins:
    async def test_the_connection_taken_is_in_the_block_s_transaction(
        self, driven: tuple[str, AsyncEngine]
    ) -> None:
        """uow.connection is in the transaction at once: what is written through it rolls back with the block."""
        _, engine = driven
        counter = await saved(engine)
        async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
            (await uow.repository(Counter).require(counter.id)).tick()
            await uow.commit()  # one outbox row
        async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
            assert uow.connection.in_transaction()
            await uow.connection.execute(
                outbox_table.delete().where(outbox_table.c.aggregate_id == str(counter.id))
            )
            (await uow.repository(Counter).require(counter.id)).tick()
            await uow.rollback()
        async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
            outbox = (
                await uow.connection.execute(
                    sa.select(sa.func.count()).where(outbox_table.c.aggregate_id == str(counter.id))
                )
            ).scalar_one()
        assert outbox == 1  # the delete was rolled back with the block

    async def test_the_connection_is_one_object_until_the_block_s_connection_ends(
        self, driven: tuple[str, AsyncEngine]
    ) -> None:
        """uow.connection is one AsyncConnection per connection of the block: a rollback or the block's end gives it up."""
        _, engine = driven
        uow = AsyncSqlAlchemyUnitOfWork(engine)
        async with uow:
            first = uow.connection
            assert (await first.execute(sa.select(sa.literal(1)))).scalar_one() == 1
            assert uow.connection is first
            await uow.rollback()  # the block goes on, on a connection of its own
            second = uow.connection
            assert second is not first
            assert first.closed
            assert (await second.execute(sa.select(sa.literal(2)))).scalar_one() == 2
        assert second.closed
        with pytest.raises(RuntimeError, match="not in a transaction"):
            _ = uow.connection
