"""The unit of work's prepared statements and storage flows, run unchanged on the asyncio drivers.

The async unit of work is built on these: the same SQL compiled for each dialect, the same
bind processing, the same flows; only the driver loop awaits. Each test runs on aiosqlite,
psycopg's async mode and asyncpg (real PostgreSQL), and reads back through SQLAlchemy Core
what the prepared statements wrote, so the rows are exactly Core's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from tests.postgres import postgres_url

import sqlalchemy as sa
from tactical import ConcurrencyError
from tactical._codec import JsonCodec
from tactical._flow import run_async
from tactical._uow import Change
from tactical.outbox import partition_key
from tactical.sqlalchemy import aggregates_table, outbox_table
from tactical.sqlalchemy._statements import (
    OUTBOX_COLUMNS,
    Commit,
    Execute,
    Operation,
    ReadAlone,
    Rollback,
    document_statements,
)
from tactical.sqlalchemy._storage import DocumentStorage
from tactical.testing import Counter


@pytest.fixture(
    params=[
        "aiosqlite",
        pytest.param("psycopg", marks=pytest.mark.postgres),
        pytest.param("asyncpg", marks=pytest.mark.postgres),
    ]
)
async def async_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    """tactical's tables, emptied, behind an AsyncEngine of each asyncio driver."""
    if request.param == "aiosqlite":
        url = sa.make_url(f"sqlite+aiosqlite:///{tmp_path / 'async.sqlite3'}")
    else:
        request.getfixturevalue("postgres_engine")  # the tables, emptied
        url = postgres_url().set(drivername=f"postgresql+{request.param}")
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(aggregates_table.create, checkfirst=True)
        await connection.run_sync(outbox_table.create, checkfirst=True)
    yield engine
    await engine.dispose()


async def perform(connection: AsyncConnection, operation: Operation) -> object:
    """The whole async driver of a document flow: each operation, awaited."""
    if isinstance(operation, ReadAlone):  # here always in the connection's transaction
        operation = operation.execute
    if isinstance(operation, Execute):
        return operation.outcome(
            await connection.exec_driver_sql(operation.sql, operation.parameters)
        )  # type: ignore[arg-type]
    if isinstance(operation, Commit):
        await connection.commit()
    elif isinstance(operation, Rollback):
        await connection.rollback()
    else:
        raise AssertionError(f"not a document operation: {operation!r}")
    return None


async def execute(connection: AsyncConnection, operation: Execute) -> Any:
    return await perform(connection, operation)


TRACE_CONTEXT = '{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}'


class TestPreparedStatementsOnAsyncDrivers:
    async def test_document_statements_write_and_check_versions_as_core_reads_them(
        self, async_engine: AsyncEngine
    ) -> None:
        """Insert, conflicting insert, select and version-checked updates of a document row."""
        state = {"id": "1", "name": "ada", "nested": {"ok": [1, 2.5, None]}}
        now = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        async with async_engine.connect() as connection:
            statements = document_statements(connection.dialect)
            insert = statements.insert_document("Doc", "1", 1, state, now)
            assert await execute(connection, insert) == 1
            assert await execute(connection, insert) == 0  # ON CONFLICT DO NOTHING
            assert [
                list(r) for r in await execute(connection, statements.select_document("Doc", "1"))
            ] == [[1, state]]
            newer = {**state, "name": "grace"}
            update = statements.update_document("Doc", "1", 1, 2, newer, now)
            assert await execute(connection, update) == 1
            assert await execute(connection, update) == 0  # the version moved to 2
            rows = await execute(connection, statements.document_version("Doc", "1"))
            assert [list(r) for r in rows] == [[2]]
            await connection.commit()
            stored = (await connection.execute(sa.select(aggregates_table))).one()
        assert tuple(stored) == ("Doc", "1", 2, newer, now)

    @pytest.mark.parametrize("count", [2, 11])
    async def test_outbox_rows_are_stored_as_core_stores_them(
        self, async_engine: AsyncEngine, count: int
    ) -> None:
        """Outbox rows read back through Core, in order, with UUIDs, JSON, UTC times, keys.

        Several rows are one executemany on every driver.
        """
        rows = [
            (
                uuid4(),
                "Ticked",
                1,
                "Counter",
                "7",
                version,
                {"count": version, "text": "é \u2028 \\"},
                datetime(2026, 1, 2, 3, 4, version % 60, tzinfo=UTC),
                uuid4(),
                None,
                partition_key("Counter", "7"),
                None if version == 1 else TRACE_CONTEXT,
            )
            for version in range(1, count + 1)
        ]
        async with async_engine.connect() as connection:
            statements = document_statements(connection.dialect)
            await execute(connection, statements.insert_outbox.many(rows))
            await connection.commit()
            stored = (
                await connection.execute(
                    sa.select(*(outbox_table.c[name] for name in OUTBOX_COLUMNS)).order_by(
                        outbox_table.c.position
                    )
                )
            ).all()
            published = (await connection.execute(sa.select(outbox_table.c.published_at))).all()
        assert [tuple(row) for row in stored] == rows
        assert [tuple(row) for row in published] == [(None,)] * count


class TestStorageFlowsOnAsyncDrivers:
    async def test_the_store_and_load_flows_run_on_an_async_connection(
        self, async_engine: AsyncEngine
    ) -> None:
        """The sync unit of work's flows, awaited: a stored aggregate loads back; a second insert conflicts."""
        codec = JsonCodec()
        counter = Counter(uuid4(), "async")
        counter.tick()
        (event,) = counter.pending_events
        async with async_engine.connect() as connection:
            storage = DocumentStorage(connection.dialect, codec, {})

            async def driver(operation: Operation) -> object:
                return await perform(connection, operation)

            insert = Change("insert", Counter, counter, None, 1, (event,))
            await run_async(storage.store([insert]), driver)
            loaded = await run_async(storage.load(Counter, counter.id), driver)
            assert loaded is not None
            assert (loaded.name, loaded.count, loaded.version) == ("async", 1, 1)
            await connection.rollback()
            twin = Counter(counter.id, "twin")
            with pytest.raises(ConcurrencyError, match="at version 1") as raised:
                await run_async(
                    storage.store([Change("insert", Counter, twin, None, 1, ())]), driver
                )
            assert twin.version == 0
            outbox = (await connection.execute(sa.select(outbox_table.c.event_id))).all()
        assert raised.value.actual_version == 1
        assert outbox == [(event.event_id,)]
