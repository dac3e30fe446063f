"""AsyncOutboxRelay: the outbox relay on asyncio, over a SQLAlchemy ``AsyncEngine``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tactical.outbox import _relay_flow as core
from tactical.outbox._leases import DEFAULT_LEASE_TTL
from tactical.outbox._message import AsyncPublisher
from tactical.outbox._parking import ParkedRow
from tactical.outbox._worker import AsyncIdlingWorker
from tactical.sqlalchemy._engine import async_engine

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["AsyncOutboxRelay"]


class AsyncOutboxRelay(core.RelayCore, AsyncIdlingWorker[core.BatchOp]):
    """:class:`OutboxRelay` on asyncio: the same batches, marks, parks and loop, awaited.

    It reads and marks the outbox through a SQLAlchemy ``AsyncEngine`` (aiosqlite for
    SQLite; psycopg's async mode or asyncpg for PostgreSQL) and publishes through an
    :class:`AsyncPublisher` (:class:`~tactical.outbox.rabbitmq.AsyncRabbitMQPublisher`,
    :class:`~tactical.outbox.redis_streams.AsyncRedisStreamPublisher`). Every decision is
    the one :class:`OutboxRelay` takes (the two run the same code): rows go out in outbox
    order and are marked published only after the publisher returned, rows that can never
    be published are parked with their error while the later rows of their aggregate wait,
    a transient failure marks and parks nothing, and on PostgreSQL the transaction-scoped
    advisory lock (``lock_key``) lets one relay publish at a time, sync and async relays of
    one outbox alike; with ``partitions`` the relays share the outbox's partitions as
    :class:`OutboxRelay`'s do, sync and async relays together. Its rows are the ones the sync and the async units of work write, so a
    sync service and an async relay share one database.

    **A database that stops answering.** On PostgreSQL each round trip (a statement, the
    commit, a rollback) that has not returned after ``database_timeout`` seconds has its
    connection's socket shut down (asyncpg's connection is terminated) from the event loop:
    the call fails at once, the connection is discarded, and :meth:`run` logs the
    database's address and tries again on a new one. The driver's own cancellation (which
    waits seconds for the server) is not relied on. The publish is bounded by the
    publisher's timeout. Connecting is bounded by the driver's connect timeout
    (``connect_args={"connect_timeout": 5}`` for psycopg, ``{"timeout": 5}`` for asyncpg).

    **Cancellation.** Cancelling the task that awaits :meth:`relay_once` or :meth:`run`
    rolls the batch's transaction back; rows the publisher may have sent stay unmarked and
    are sent again (at least once). :meth:`run` also ends, after its current batch, once
    ``stop`` is set.

    Args:
        engine: The ``AsyncEngine`` of the database holding ``tactical_outbox``.
        publisher: Where the messages go.
        batch_size: As for :class:`OutboxRelay`: the most rows per batch.
        lock_key: As for :class:`OutboxRelay`; sync and async relays of one outbox share it.
        database_timeout: As for :class:`OutboxRelay`, enforced from the event loop.
        partitions: As for :class:`OutboxRelay`: the partition count, None for one relay
            at a time.
        lease_ttl: As for :class:`OutboxRelay`: seconds a partition's lease lasts.
        name: As for :class:`OutboxRelay`: the relay's unique name.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``AsyncEngine`` (a sync ``Engine``, say),
            or ``partitions`` is not an ``int``.
        ValueError: As for :class:`OutboxRelay`.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: AsyncPublisher,
        *,
        batch_size: int = 100,
        lock_key: int = core.RELAY_LOCK_KEY,
        database_timeout: float | None = core.DEFAULT_DATABASE_TIMEOUT,
        partitions: int | None = None,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        name: str | None = None,
    ) -> None:
        self._engine = async_engine(engine, "an OutboxRelay")
        sync = engine.sync_engine
        super().__init__(
            sync, publisher, batch_size, lock_key, database_timeout, partitions, lease_ttl, name
        )
        self._publisher = publisher

    async def relay_once(self) -> int:
        """Publish one batch of unpublished rows and mark them; return how many were published.

        As :meth:`OutboxRelay.relay_once`.

        Raises:
            Exception: Whatever the publisher raised other than :class:`UndeliverableError`:
                no row of the batch was marked.
        """
        return await self._on_connection(self._relay_batch())

    async def parked(self, *, aggregate: tuple[str, str] | None = None) -> list[ParkedRow]:
        """The outbox rows held parked, oldest first, with their error.

        As :meth:`OutboxRelay.parked`.

        Args:
            aggregate: Only the rows of this aggregate, as ``(aggregate_type, aggregate_id)``.
        """
        return await self._on_connection(self._parked(aggregate))

    async def retry_parked(
        self, *, position: int | None = None, aggregate: tuple[str, str] | None = None
    ) -> int:
        """Un-park rows so that the next batches try them again; return how many.

        As :meth:`OutboxRelay.retry_parked`.

        Args:
            position: Only the row at this outbox position.
            aggregate: Only the rows of this aggregate, as ``(aggregate_type, aggregate_id)``.

        Raises:
            ValueError: Both ``position`` and ``aggregate`` were given.
        """
        return await self._on_connection(self._retry_parked(position, aggregate))

    # run() is AsyncIdlingWorker's; this is its documentation on this class.
    _run_doc = """Relay batches until ``stop`` is set; never raises for publisher or database errors.

    As :meth:`OutboxRelay.run`: the same waits, backoff and log lines.

    Args:
        stop: Set it to end the loop (or cancel the task running it).
        idle_interval: Seconds to wait when the outbox had less than a full batch.
        initial_backoff: Seconds to wait after the first failure.
        max_backoff: The longest wait between attempts while failures continue.

    Raises:
        ValueError: As for :meth:`OutboxRelay.run`.
    """

    async def _perform(
        self, connection: AsyncConnection, cut: Callable[[], None] | None, op: core.BatchOp
    ) -> object:
        if isinstance(op, core.Publish):
            await self._publisher.publish(op.messages)
            return None
        return await super()._perform(connection, cut, op)
