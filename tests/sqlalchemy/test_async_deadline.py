"""database_timeout bounds the statements run on an async unit of work's connection too.

The async unit of work bounds its own awaits with ``asyncio.timeout``; a query the caller
runs on ``uow.connection`` is bounded through the sync engine's events (which SQLAlchemy
runs for every async statement), cutting the connection from its event loop: psycopg's
socket is shut down, asyncpg's connection terminated. A proxy in front of PostgreSQL goes
silent (the socket stays open, nothing comes back); the bound below only says "eventually".
"""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from tests.outbox.brokers import TcpProxy, postgres_proxy
from tests.sqlalchemy.test_async_interruptions import engine_via

import sqlalchemy as sa
from sqlalchemy import exc
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork
from tactical.testing import Counter

__all__ = ["postgres_proxy"]

LIVENESS = 15.0
"""Seconds within which a cut round trip must have failed: a liveness bound, not a speed claim."""

probes = sa.MetaData()
notes = sa.Table(
    "tactical_async_deadline_notes", probes, sa.Column("id", sa.String, primary_key=True)
)


@pytest.fixture
def notes_table(postgres_engine: sa.Engine) -> sa.Table:
    """An empty table of the caller's own, written through uow.connection."""
    probes.create_all(postgres_engine)
    with postgres_engine.begin() as connection:
        connection.execute(notes.delete())
    return notes


def stored_notes(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(notes.c.id)).scalars())


@pytest.mark.postgres
@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
class TestDeadlineOnAsyncConnectionStatements:
    async def test_a_query_on_uow_connection_meeting_silence_is_cut_and_nothing_is_stored(
        self,
        postgres_proxy: TcpProxy,
        postgres_engine: sa.Engine,
        notes_table: sa.Table,
        driver: str,
    ) -> None:
        """A query on uow.connection of a silent database fails with the timeout note; nothing is stored."""
        engine = engine_via(postgres_proxy, driver)
        uow = AsyncSqlAlchemyUnitOfWork(engine, database_timeout=0.5)
        counter = Counter(uuid4(), "silenced")

        async def query_on_a_silent_database() -> None:
            async with uow:
                uow.repository(Counter).add(counter)
                await uow.connection.execute(notes_table.insert().values(id="written"))
                assert postgres_proxy.silence() >= 1
                await uow.connection.execute(sa.select(notes_table.c.id))
                await uow.commit()

        async with asyncio.timeout(LIVENESS):
            with pytest.raises(exc.DBAPIError) as raised:
                await query_on_a_silent_database()
        assert any("database_timeout (0.5s)" in note for note in raised.value.__notes__)
        assert stored_notes(postgres_engine) == []
        assert counter.version == 0
        async with asyncio.timeout(LIVENESS), uow:
            assert await uow.repository(Counter).get(counter.id) is None
        await engine.dispose()

    async def test_the_next_block_reconnects_and_its_statements_work(
        self, postgres_proxy: TcpProxy, notes_table: sa.Table, driver: str
    ) -> None:
        """After a cut query, the next block's statements on uow.connection run and commit."""
        engine = engine_via(postgres_proxy, driver)
        uow = AsyncSqlAlchemyUnitOfWork(engine, database_timeout=0.5)

        async def query_on_a_silent_database() -> None:
            async with uow:
                assert postgres_proxy.silence() >= 1
                await uow.connection.execute(sa.text("SELECT 1"))

        async with asyncio.timeout(LIVENESS):
            with pytest.raises(exc.DBAPIError):
                await query_on_a_silent_database()
            async with uow:
                await uow.connection.execute(notes_table.insert().values(id="after"))
                await uow.commit()
            async with uow:
                rows = await uow.connection.execute(sa.select(notes_table.c.id))
                assert list(rows.scalars()) == ["after"]
        await engine.dispose()

    async def test_a_failed_statement_leaves_no_deadline_armed(
        self, postgres_proxy: TcpProxy, driver: str
    ) -> None:
        """A statement that fails on its own does not leave a deadline that later cuts the connection."""
        engine = engine_via(postgres_proxy, driver)
        uow = AsyncSqlAlchemyUnitOfWork(engine, database_timeout=0.5)
        async with asyncio.timeout(LIVENESS):
            async with uow:
                with pytest.raises(exc.DBAPIError):
                    await uow.connection.execute(sa.text("SELECT 1 / 0"))
                await asyncio.sleep(1.0)  # twice the deadline: an armed one would cut
            # The block's rollback found its connection whole; the pooled one serves on.
            async with uow:
                assert (await uow.connection.execute(sa.text("SELECT 2"))).scalar_one() == 2
        await engine.dispose()
