"""AsyncProjectionRunner: the projection runner on asyncio, over a SQLAlchemy ``AsyncEngine``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from tactical._codec import JsonCodec
from tactical._flow import run_async
from tactical.outbox._relay_flow import DEFAULT_DATABASE_TIMEOUT
from tactical.outbox._worker import AsyncIdlingWorker
from tactical.projections._flow import READ_COMMITTED, Apply, Clear, ProjectionCore, RunnerOp
from tactical.projections._projection import AsyncProjection
from tactical.sqlalchemy._engine import async_engine, configure_engine
from tactical.sqlalchemy._shared import _default_codec  # pyright: ignore[reportPrivateUsage]

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncProjectionRunner"]


class AsyncProjectionRunner(ProjectionCore[AsyncProjection], AsyncIdlingWorker[RunnerOp]):
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

    _isolation_level = READ_COMMITTED

    def __init__(
        self,
        engine: AsyncEngine,
        projections: Sequence[AsyncProjection],
        *,
        codec: JsonCodec | None = None,
        batch_size: int = 100,
        database_timeout: float | None = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        self._engine = configure_engine(async_engine(engine))
        codec = codec if codec is not None else _default_codec
        super().__init__(engine.url, projections, codec, batch_size, database_timeout)

    async def run_once(self) -> int:
        """Give every projection one batch; return how many outbox rows they read in all.

        Raises:
            ProjectionError: As :meth:`ProjectionRunner.run_once`.
        """
        return await run_async(self._run_once(), self._connected)

    async def catch_up(
        self, projection: AsyncProjection | str, *, batches: int | None = None
    ) -> int:
        """As :meth:`ProjectionRunner.catch_up`: batches until one finds nothing new; rows read.

        Args:
            projection: The projection, or its name.
            batches: Stop after this many batches; None for until a batch reads nothing.

        Raises:
            ValueError: The runner has no such projection.
            ProjectionError: The projection's handler failed on an event (the batches before
                it are kept).
        """
        return await run_async(self._catch_up(projection, batches), self._connected)

    async def rebuild(self, projection: AsyncProjection | str) -> None:
        """As :meth:`ProjectionRunner.rebuild`: clear, back to the start, in one transaction.

        Raises:
            ValueError: The runner has no such projection, or it has no clear hook.
        """
        await self._on_connection(self._rebuild(self._named(projection)))

    # run() is AsyncIdlingWorker's; this is its documentation on this class.
    _run_doc = """As :meth:`ProjectionRunner.run`: catch up, then follow the outbox until ``stop``.

    Args:
        stop: Set it to end the loop (or cancel the task running it).
        idle_interval: Seconds to wait when no projection had a full batch.
        initial_backoff: Seconds to wait before retrying a failing projection.
        max_backoff: The longest wait between retries of a failing projection.
    """

    async def _perform(
        self, connection: AsyncConnection, cut: Callable[[], None] | None, op: RunnerOp
    ) -> object:
        if isinstance(op, Apply):
            return await op.handler(op.event, connection)
        if isinstance(op, Clear):
            return await op.hook(connection)
        return await super()._perform(connection, cut, op)
