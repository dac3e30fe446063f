"""AsyncProjectionRunner: the projection runner on asyncio, over a SQLAlchemy ``AsyncEngine``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tactical._codec import JsonCodec
from tactical._flow import Flow, run_async
from tactical.outbox._async_relay import _deadline, _wait  # pyright: ignore[reportPrivateUsage]
from tactical.outbox._relay_flow import DEFAULT_DATABASE_TIMEOUT, Wait
from tactical.projections._flow import (
    READ_COMMITTED,
    Apply,
    Batch,
    Clear,
    LoopOp,
    ProjectionCore,
    RunnerOp,
)
from tactical.projections._projection import AsyncProjection
from tactical.sqlalchemy._engine import configure_engine, engine_refusal
from tactical.sqlalchemy._shared import _default_codec  # pyright: ignore[reportPrivateUsage]
from tactical.sqlalchemy._watchdog import cut_connection

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncProjectionRunner"]

R = TypeVar("R")


class AsyncProjectionRunner(ProjectionCore[AsyncProjection]):
    """:class:`ProjectionRunner` on asyncio: the same batches, order, checkpoints and loop.

    It reads the outbox through a SQLAlchemy ``AsyncEngine`` (aiosqlite for SQLite,
    psycopg's async mode or asyncpg for PostgreSQL) and awaits each
    :class:`AsyncProjection`'s handlers with the ``AsyncConnection`` of the batch's
    transaction. Every decision is the one :class:`ProjectionRunner` takes (the two run the
    same code), and they share checkpoints: a sync and an async runner of one projection
    never apply an event twice.

    **Cancellation.** Cancelling the task that awaits a batch rolls its transaction back:
    neither the read model's changes nor the checkpoint are kept.

    Args:
        engine: The ``AsyncEngine`` of the database holding the outbox and the read models.
        projections: The projections to keep up to date (distinct names).
        codec: The codec the outbox was written with; the units of work's default if omitted.
        batch_size: The most outbox rows a projection reads per transaction.
        database_timeout: Seconds a statement, commit or rollback of the runner's own may
            take on PostgreSQL before the connection is cut; None for no limit. (A
            handler's statements are the handler's to bound.)

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``AsyncEngine``.
        ValueError: As for :class:`ProjectionRunner`.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        engine: AsyncEngine,
        projections: Sequence[AsyncProjection],
        *,
        codec: JsonCodec | None = None,
        batch_size: int = 100,
        database_timeout: float | None = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        from sqlalchemy.ext.asyncio import AsyncEngine  # greenlet is needed only once used

        candidate: object = engine
        if not isinstance(candidate, AsyncEngine):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(engine_refusal(candidate, asynchronous=True))
        configure_engine(engine)
        super().__init__(
            engine.dialect.name,
            projections,
            codec if codec is not None else _default_codec,
            batch_size,
            database_timeout,
        )
        self._engine = engine

    async def run_once(self) -> int:
        """Give every projection one batch; return how many outbox rows they read in all.

        Raises:
            ProjectionError: As :meth:`ProjectionRunner.run_once`.
        """
        return await run_async(self._run_once(), self._perform_batch)

    async def catch_up(
        self, projection: AsyncProjection | str, *, batches: int | None = None
    ) -> int:
        """As :meth:`ProjectionRunner.catch_up`.

        Args:
            projection: The projection, or its name.
            batches: Stop after this many batches; None for until a batch reads nothing.

        Raises:
            ValueError: The runner has no such projection.
            ProjectionError: Its handler failed on an event.
        """
        return await run_async(self._catch_up(projection, batches), self._perform_batch)

    async def rebuild(self, projection: AsyncProjection | str) -> None:
        """As :meth:`ProjectionRunner.rebuild`: clear, back to the start, in one transaction.

        Raises:
            ValueError: The runner has no such projection, or it has no clear hook.
        """
        await self._on_connection(self._rebuild(self._named(projection)))

    async def run(
        self,
        stop: asyncio.Event,
        *,
        idle_interval: float = 0.5,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        """As :meth:`ProjectionRunner.run`: catch up, then follow the outbox until ``stop``.

        Args:
            stop: Set it to end the loop (or cancel the task running it).
            idle_interval: Seconds to wait when no projection had a full batch.
            initial_backoff: Seconds to wait before retrying a failing projection.
            max_backoff: The longest wait between retries of a failing projection.
        """

        async def perform(op: LoopOp) -> object:
            if isinstance(op, Batch):
                return await self._perform_batch(op)
            if isinstance(op, Wait):
                return await _wait(stop, op.seconds)
            return stop.is_set()

        await run_async(self._loop(idle_interval, initial_backoff, max_backoff), perform)

    async def _perform_batch(self, op: Batch[AsyncProjection]) -> int:
        return await self._on_connection(self._batch(op.projection, self._batch_size))

    async def _on_connection(self, flow: Flow[RunnerOp, R]) -> R:
        async with self._connect() as (connection, cut):

            async def perform(op: RunnerOp) -> object:
                if isinstance(op, Apply):
                    return await op.handler(op.event, connection)
                if isinstance(op, Clear):
                    return await op.hook(connection)
                with _deadline(self._database_timeout if cut else None, cut):
                    return op.finish(await op.start(connection))

            return await run_async(flow, perform)

    @contextlib.asynccontextmanager
    async def _connect(
        self,
    ) -> AsyncGenerator[tuple[AsyncConnection, Callable[[], None] | None], None]:
        async with self._engine.connect() as connection:
            if self._postgres:
                await connection.execution_options(isolation_level=READ_COMMITTED)
            if not self._postgres or self._database_timeout is None:
                yield connection, None
                return
            raw = await connection.get_raw_connection()
            driver: Any = raw.driver_connection

            def cut() -> None:
                cut_connection(driver)

            yield connection, cut
