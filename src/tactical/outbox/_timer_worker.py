"""TimerWorker: fires due durable timers into the outbox, over a SQLAlchemy ``Engine``."""

from __future__ import annotations

import threading

import sqlalchemy as sa
from tactical._clock import Clock
from tactical._codec import JsonCodec
from tactical.outbox._relay_flow import DEFAULT_DATABASE_TIMEOUT, BatchOp
from tactical.outbox._timer_flow import ParkedTimer, TimerCore
from tactical.outbox._worker import SyncWorker
from tactical.sqlalchemy._engine import sync_engine

__all__ = ["TimerWorker"]


class TimerWorker(TimerCore, SyncWorker[BatchOp]):
    """Moves due scheduled messages (durable timers) from ``tactical_scheduled`` to the outbox.

    Units of work store timers with :meth:`~tactical.SchedulingUnitOfWork.schedule` in the
    transaction that scheduled them. Each :meth:`fire_due` takes up to
    ``batch_size`` rows due by ``clock.now()`` (soonest first) and, in one transaction,
    deletes each and inserts its message into ``tactical_outbox``; the
    :class:`OutboxRelay` then publishes it like any event. The delete and the insert commit
    together or not at all, so a worker killed mid-batch leaves its rows for the next
    round: each timer is fired **exactly once in effect** (and published at least once by
    the relay, deduplicated by event id in an :class:`InboxConsumer`). All state is in the
    database, so a restarted worker goes on where it was.

    The fired message keeps its ``event_id`` and ``occurred_at`` (the time it was built);
    its outbox row names the aggregate ``tactical_scheduled`` with the timer's key as id,
    so the relay publishes the fires of one key in order. A message whose event id is
    already in the outbox (one event scheduled under two keys) is fired once.

    **Parked timers.** A row that can never be fired (its payload is not JSON, its type
    name unknown to ``codec``, an upcaster missing) is parked with its error (columns
    ``parked_at`` and ``error``) and the others fire; :meth:`parked` lists them,
    :meth:`retry_parked` (or scheduling the key again) un-parks them.

    **Several workers.** On PostgreSQL the rows are taken ``FOR UPDATE SKIP LOCKED``: run
    as many workers (processes) as you like, each fires different rows. On SQLite run one
    worker per database file. A cancel or a replacement that commits while a worker fires
    the key is either before the fire (the new state fires, or nothing) or after it (the
    fired message stays published).

    **Time.** ``clock`` decides what is due; pass a :class:`tactical.testing.MovableClock`
    in tests and move it instead of sleeping. Each round trip on PostgreSQL is bounded by
    ``database_timeout`` as for :class:`OutboxRelay`.

    Args:
        engine: The engine of the database holding ``tactical_scheduled`` and
            ``tactical_outbox``.
        clock: What says the time; :class:`tactical.SystemClock` if omitted.
        codec: The codec whose type names the scheduled messages use, to check that each
            can be read back before it is fired; a default :class:`tactical.JsonCodec`
            if omitted (pass the one your units of work use if you register names).
        batch_size: The most timers fired per transaction.
        database_timeout: Seconds a database round trip may take on PostgreSQL before its
            connection is cut; None for no limit.

    Raises:
        TypeError: ``engine`` is not a SQLAlchemy ``Engine``, ``clock`` has no ``now()``
            or ``codec`` is not a :class:`~tactical.JsonCodec`.
        ValueError: ``batch_size`` is below 1, or ``database_timeout`` is not positive.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        clock: Clock | None = None,
        codec: JsonCodec | None = None,
        batch_size: int = 100,
        database_timeout: float | None = DEFAULT_DATABASE_TIMEOUT,
    ) -> None:
        sync_engine(engine, "use AsyncTimerWorker for it")
        super().__init__(engine, clock, codec, batch_size, database_timeout)
        self._use_engine(engine)

    def fire_due(self) -> int:
        """Fire one batch of due timers into the outbox; return how many were fired.

        Returns 0 when nothing is due (or, on PostgreSQL, when other workers hold every
        due row). Rows that can never be fired are parked instead (see :meth:`parked`).

        Raises:
            TypeError: The clock returned something other than an aware datetime.
            sqlalchemy.exc.SQLAlchemyError: The database failed; nothing was fired.
        """
        return self._on_connection(self._fire_batch())

    def parked(self) -> list[ParkedTimer]:
        """The timers this worker's database holds parked, soonest due first."""
        return self._on_connection(self._parked())

    def retry_parked(self, *, key: str | None = None) -> int:
        """Un-park timers (all, or the one of ``key``) so the next rounds try them; how many."""
        return self._on_connection(self._retry_parked(key))

    def run(
        self,
        stop: threading.Event,
        *,
        poll_interval: float = 1.0,
        initial_backoff: float = 0.1,
        max_backoff: float = 30.0,
    ) -> None:
        """Fire due timers until ``stop`` is set; never raises for database errors.

        A full batch is followed at once by the next; otherwise the worker waits
        ``poll_interval`` seconds (or until ``stop`` is set). While the database fails it
        waits with bounded, jittered exponential backoff and logs each failure on the
        ``tactical.outbox`` logger.

        Args:
            stop: Set it (from another thread or a signal handler) to end the loop.
            poll_interval: Seconds between rounds when nothing more is due; a timer fires
                at most this long after it is due (plus the relay's own interval).
            initial_backoff: Seconds to wait after the first failure.
            max_backoff: The longest wait between attempts while failures continue.
        """
        self._drive(self._loop(poll_interval, initial_backoff, max_backoff), stop)
