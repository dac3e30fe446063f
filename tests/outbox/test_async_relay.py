"""What is particular to AsyncOutboxRelay: its engine, cancellation, and sharing the lock with sync relays.

Everything else it promises is tested by the relay, parking, publisher, dead-peer and
crash-injection suites, which run over the sync and the async API alike (``side``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.outbox.helpers import (
    RecordingPublisher,
    all_positions,
    commit_ticks,
    pending_positions,
    published_positions,
)
from tests.outbox.sides import AsyncSide, Relay, SyncSide

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


class TestSyncAndAsyncRelaysOnPostgres:
    @pytest.mark.postgres
    def test_sync_and_async_relays_share_the_lock_and_publish_every_row_once_in_order(
        self, postgres_engine: sa.Engine
    ) -> None:
        """Two sync and two async relays racing over 1,000 rows publish each once, in order."""
        commit_ticks(postgres_engine, counters=10, ticks=100)
        publisher = RecordingPublisher()
        sync_side, async_side = SyncSide(), AsyncSide()
        relays: list[Relay] = [
            side.relay(postgres_engine, publisher, batch_size=40)
            for side in (sync_side, async_side, sync_side, async_side)
        ]

        def drain(relay: Relay) -> None:
            idle = 0
            while idle < 20:
                idle = 0 if relay.relay_once() else idle + 1

        threads = [threading.Thread(target=drain, args=(r,)) for r in relays]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        async_side.close()
        positions = [m.position for m in publisher.published]
        assert sorted(positions) == all_positions(postgres_engine)
        assert len(set(positions)) == len(positions) == 1000
        by_aggregate: dict[str, list[int]] = {}
        for message in publisher.published:
            by_aggregate.setdefault(message.aggregate_id, []).append(message.payload["count"])
        assert all(counts == list(range(1, 101)) for counts in by_aggregate.values())
