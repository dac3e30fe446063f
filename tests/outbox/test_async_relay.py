"""What is particular to AsyncOutboxRelay: the engine it takes, and cancellation.

Everything else it promises is tested by the relay, parking, publisher, log, dead-peer and
crash-injection suites, which run over the sync and the async API alike (``side``); sync and
async relays racing for the lock are in ``test_relay.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.outbox.helpers import (
    all_positions,
    commit_ticks,
    pending_positions,
    published_positions,
)

import sqlalchemy as sa
from tactical.outbox import AsyncOutboxRelay, OutboxMessage


class Stalling:
    """An async publisher that hangs (a broker that never confirms) until cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        self.started.set()
        await asyncio.Event().wait()


class Recording:
    """An async publisher that keeps every message."""

    def __init__(self) -> None:
        self.published: list[OutboxMessage] = []

    async def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        self.published.extend(messages)


@pytest.fixture
async def async_engine(engine: sa.Engine) -> AsyncIterator[AsyncEngine]:
    """An AsyncEngine on ``engine``'s database (aiosqlite, or psycopg's async mode)."""
    url = engine.url
    driver = "aiosqlite" if url.get_backend_name() == "sqlite" else "psycopg"
    made = create_async_engine(url.set(drivername=f"{url.get_backend_name()}+{driver}"))
    yield made
    await made.dispose()


async def open_transactions(engine: AsyncEngine) -> int:
    """Connections to this PostgreSQL database left inside a transaction (0 on SQLite)."""
    if engine.dialect.name != "postgresql":
        return 0
    async with engine.connect() as connection:
        count = await connection.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state LIKE 'idle in transaction%'"
            )
        )
    return int(count or 0)


class TestEngine:
    def test_a_sync_engine_is_refused_saying_how_to_make_an_async_one(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """A sync Engine where an AsyncEngine belongs is a TypeError naming create_async_engine."""
        with pytest.raises(TypeError, match="create_async_engine"):
            AsyncOutboxRelay(sqlite_engine, Recording())  # type: ignore[arg-type]


class TestCancellation:
    async def test_cancelled_batch_marks_nothing_and_leaves_no_transaction_open(
        self, engine: sa.Engine, async_engine: AsyncEngine
    ) -> None:
        """A relay cancelled while its publish hangs marks nothing; the next relay sends it all."""
        commit_ticks(engine, counters=2, ticks=2)
        stalling = Stalling()
        batch = asyncio.create_task(AsyncOutboxRelay(async_engine, stalling).relay_once())
        await asyncio.wait_for(stalling.started.wait(), 10)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        assert published_positions(engine) == []
        assert await open_transactions(async_engine) == 0
        recording = Recording()
        assert await AsyncOutboxRelay(async_engine, recording).relay_once() == 4
        assert [m.position for m in recording.published] == all_positions(engine)

    async def test_cancelled_run_returns_at_once(
        self, engine: sa.Engine, async_engine: AsyncEngine
    ) -> None:
        """Cancelling run() ends it, even in the middle of a hanging publish."""
        commit_ticks(engine, counters=1, ticks=1)
        stalling = Stalling()
        loop = asyncio.create_task(AsyncOutboxRelay(async_engine, stalling).run(asyncio.Event()))
        await asyncio.wait_for(stalling.started.wait(), 10)
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(loop, 10)
        assert pending_positions(engine) == all_positions(engine)
