"""AsyncTimerWorker: the timer worker on asyncio, over a SQLAlchemy ``AsyncEngine``."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from tactical._clock import Clock
from tactical._codec import JsonCodec
from tactical.outbox._relay_flow import DEFAULT_DATABASE_TIMEOUT, BatchOp
from tactical.outbox._timer_flow import ParkedTimer, TimerCore
from tactical.outbox._worker import AsyncWorker
from tactical.sqlalchemy._engine import async_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["AsyncTimerWorker"]


class AsyncTimerWorker(TimerCore, AsyncWorker[BatchOp]):
    """:class:`TimerWorker` on asyncio: the same rounds, parks and loop, awaited.

    It reads and writes ``tactical_scheduled`` and ``tactical_outbox`` through a SQLAlchemy
    ``AsyncEngine`` (aiosqlite; psycopg's async mode or asyncpg). Every decision is the one
    :class:`TimerWorker` takes (the two run the same code), so sync and async workers of
    one database share its timers, and on PostgreSQL any number of them run side by side.
    Cancelling the task that awaits :meth:`fire_due` or :meth:`run` rolls the round back:
    its timers fire in a later round.

    Args:
        engine: The ``AsyncEngine`` of the database.
        clock: What says the time; :class:`tactical.SystemClock` if omitted.
        codec: As for :class:`TimerWorker`.
        batch_size: The most timers fired per transaction.
        database_timeout: As for :class:`TimerWorker`, enforced from the event loop.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``AsyncEngine``, ``clock`` has no
            ``now()`` or ``codec`` is not a :class:`~tactical.JsonCodec`.
        ValueError: ``batch_size`` is below 1, or ``database_timeout`` is not positive.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock | None = None,
        codec: JsonCodec | None = None,
        batch_size: int = 100,
        database_timeout: float | None = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        self._engine = async_engine(engine, "a TimerWorker")
        super().__init__(engine.sync_engine, clock, codec, batch_size, database_timeout)

    async def fire_due(self) -> int:
        """Fire one batch of due timers into the outbox; how many. As :meth:`TimerWorker.fire_due`.

        Raises:
            TypeError: The clock returned something other than an aware datetime.
            sqlalchemy.exc.SQLAlchemyError: The database failed; nothing was fired.
        """
        return await self._on_connection(self._fire_batch())

    async def parked(self) -> list[ParkedTimer]:
        """The timers held parked, soonest due first. As :meth:`TimerWorker.parked`."""
        return await self._on_connection(self._parked())

    async def retry_parked(self, *, key: str | None = None) -> int:
        """Un-park timers (all, or the one of ``key``); how many. As :meth:`TimerWorker.retry_parked`."""
        return await self._on_connection(self._retry_parked(key))

    async def run(
        self,
        stop: asyncio.Event,
        *,
        poll_interval: float = 1.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        """Fire due timers until ``stop`` is set; never raises for database errors.

        As :meth:`TimerWorker.run`: the same waits, backoff and log lines.

        Args:
            stop: Set it to end the loop (or cancel the task running it).
            poll_interval: Seconds between rounds when nothing more is due.
            initial_backoff: Seconds to wait after the first failure.
            max_backoff: The longest wait between attempts while failures continue.
        """
        await self._drive(self._loop(poll_interval, initial_backoff, max_backoff), stop)
