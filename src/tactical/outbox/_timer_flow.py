"""What a timer worker does, written once: flows that :class:`TimerWorker` and
:class:`AsyncTimerWorker` drive.

A round takes the due rows of ``tactical_scheduled`` and, in the same transaction, deletes
each (checking it is still the message that was read) and inserts its message into
``tactical_outbox``, whence the relay publishes it. Either both happen or neither, so a
worker that dies mid-round leaves the rows to the next round: fired once in effect. A row
that can never be fired (its payload unreadable, its type unknown to the codec) is parked
with its error and the others go on. On PostgreSQL the rows are taken ``FOR UPDATE SKIP
LOCKED``, so several workers share the due rows without firing one twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.dialects import postgresql, sqlite

import sqlalchemy as sa
from tactical._backoff import check_loop_waits
from tactical._clock import Clock, SystemClock
from tactical._codec import DeserializationError, JsonCodec, UnknownTypeError
from tactical._codec_values import show
from tactical._flow import Flow
from tactical._partitions import partition_key
from tactical._telemetry import current_trace_context
from tactical.outbox._parking import read_payload, storable_error
from tactical.outbox._relay_flow import (
    BEGIN,
    BEGIN_FOR_WRITING,
    BatchOp,
    _execute,  # pyright: ignore[reportPrivateUsage]
    _fetch,  # pyright: ignore[reportPrivateUsage]
    _transaction,  # pyright: ignore[reportPrivateUsage]
)
from tactical.outbox._telemetry import firing_timers
from tactical.outbox._worker import LoopOp, LoopWords, WorkerCore
from tactical.sqlalchemy._engine import configure_engine
from tactical.sqlalchemy._schema import outbox_table, scheduled_table

__all__ = [
    "TIMER_AGGREGATE_TYPE",
    "ParkedTimer",
    "TimerCore",
]

_log = logging.getLogger("tactical.outbox")

TIMER_AGGREGATE_TYPE: str = "tactical_scheduled"
"""The ``aggregate_type`` of the outbox rows of fired timers (their ``aggregate_id`` is the key)."""

_s = scheduled_table.c


@dataclass(frozen=True, slots=True)
class ParkedTimer:
    """A scheduled message a timer worker could never fire, kept with its error until retried.

    Attributes:
        key: The timer's key.
        message_id: The scheduled event's id.
        message_type: Its type name, as stored.
        due_at: When it was due.
        parked_at: When the worker parked it.
        error: Why it could not be fired.

    .. versionadded:: 0.2.0
    """

    key: str
    message_id: UUID
    message_type: str
    due_at: datetime
    parked_at: datetime
    error: str


@dataclass(frozen=True, slots=True)
class _Due:
    """A due row read back: what to fire, or why it cannot be."""

    key: str
    message_id: UUID
    outbox_row: dict[str, Any] | None
    error: str | None


class TimerCore(WorkerCore):
    """What the sync and the async timer worker share: their settings and every decision.

    Raises:
        TypeError: ``clock`` has no ``now()`` or ``codec`` is not a JsonCodec.
        ValueError: ``batch_size`` is below 1 or ``database_timeout`` is not positive.
    """

    def __init__(
        self,
        engine: sa.Engine,
        clock: Clock | None,
        codec: JsonCodec | None,
        batch_size: int,
        database_timeout: float | None,
    ) -> None:
        configure_engine(engine)
        super().__init__(engine.url, batch_size, database_timeout)
        candidate: object = clock
        if candidate is not None and not isinstance(candidate, Clock):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"clock must have a now() method (a Clock), got {show(candidate)}")
        candidate = codec
        if candidate is not None and not isinstance(candidate, JsonCodec):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(f"codec must be a JsonCodec or None, got {show(candidate)}")
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._codec = codec if codec is not None else JsonCodec()
        insert = postgresql.insert if self._postgres else sqlite.insert
        # A message already in the outbox (the same event scheduled under two keys) is not
        # inserted twice: its effect happened.
        self._insert_outbox = insert(outbox_table).on_conflict_do_nothing(
            index_elements=[outbox_table.c.event_id]
        )
        raw = sa.cast(_s.payload, sa.Text if self._postgres else sa.LargeBinary)
        self._raw_payload = raw.label("raw_payload")

    @property
    def clock(self) -> Clock:
        """The clock that says which timers are due."""
        return self._clock

    @property
    def batch_size(self) -> int:
        """The most messages fired per transaction."""
        return self._batch_size

    # -- one batch ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        now: object = self._clock.now()
        if not isinstance(now, datetime) or now.utcoffset() is None:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"the timer worker's clock must return a timezone-aware datetime, got {show(now)}"
            )
        return now.astimezone(UTC)

    def _due_rows(self, now: datetime) -> sa.Select[*tuple[Any, ...]]:
        query = (
            sa.select(
                _s.key,
                _s.message_id,
                _s.message_type,
                _s.message_version,
                _s.occurred_at,
                _s.correlation_id,
                _s.causation_id,
                self._raw_payload,
            )
            .where(_s.due_at <= now, _s.parked_at.is_(None))
            .order_by(_s.due_at, _s.key)
            .limit(self._batch_size)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        return query

    def _fire_batch(self) -> Flow[BatchOp, int]:
        """Fire the due messages of one batch in one transaction; how many were fired."""
        # SQLite: the write lock first, so that no writer commits between the read and the
        # delete (a deferred transaction could then not write at all).
        begin = BEGIN if self._postgres else BEGIN_FOR_WRITING
        return (yield from _transaction(self._fire(self._now()), begin))

    def _fire(self, now: datetime) -> Flow[BatchOp, int]:
        rows = yield from _fetch(self._due_rows(now))
        fired: list[dict[str, Any]] = []
        for due in (self._read(row) for row in rows):
            # Only if it is still the message read, not one that replaced it since (SQLite
            # has no row locks; on PostgreSQL the row is locked and this always holds).
            is_row = (_s.key == due.key, _s.message_id == due.message_id)
            if due.outbox_row is not None:
                if (yield from _execute(scheduled_table.delete().where(*is_row))):
                    fired.append(due.outbox_row)
                continue
            error = storable_error(due.error or "")
            update = scheduled_table.update().where(*is_row).values(parked_at=now, error=error)
            if (yield from _execute(update)):
                _log.warning(
                    "timer worker parked the timer %r, which can never be fired: %s "
                    "(TimerWorker.retry_parked tries it again)",
                    due.key,
                    due.error,
                )
        if fired:
            with firing_timers([str(row["aggregate_id"]) for row in fired]):
                # The fired messages continue the firing's trace, as a commit's events do.
                trace_context = current_trace_context()
                if trace_context is not None:
                    fired = [{**row, "trace_context": trace_context} for row in fired]
                yield from _execute(self._insert_outbox.values(fired))
        return len(fired)

    def _read(self, row: sa.Row[Any]) -> _Due:
        """What to do with a due row: its outbox row, or why it can never be fired."""
        problem = self._unreadable(row)
        if isinstance(problem, str):
            return _Due(row.key, row.message_id, None, f"cannot be read: {problem}")
        return _Due(
            row.key,
            row.message_id,
            {
                "event_id": row.message_id,
                "event_type": row.message_type,
                "event_version": row.message_version,
                "aggregate_type": TIMER_AGGREGATE_TYPE,
                "aggregate_id": row.key,
                "aggregate_version": 1,
                # Keyed like a unit of work's rows, so that a partitioned relay reads it
                # through its partitions, not as a row written before partitions existed.
                "partition_key": partition_key(TIMER_AGGREGATE_TYPE, row.key),
                "payload": problem,
                "occurred_at": row.occurred_at,
                "correlation_id": row.correlation_id,
                "causation_id": row.causation_id,
            },
            None,
        )

    def _unreadable(self, row: sa.Row[Any]) -> dict[str, Any] | str:
        """The row's payload, or why it cannot be read back as its message."""
        payload = read_payload(row.raw_payload)
        if isinstance(payload, str):
            return payload
        try:
            self._codec.event_from_record(
                row.message_type,
                row.message_version,
                payload,
                context=f"timer {row.key!r} in {scheduled_table.name}",
            )
        except (UnknownTypeError, DeserializationError) as error:
            return str(error)
        return payload

    # -- parked rows -------------------------------------------------------------------------

    def _parked(self) -> Flow[BatchOp, list[ParkedTimer]]:
        rows = yield from _fetch(
            sa.select(_s.key, _s.message_id, _s.message_type, _s.due_at, _s.parked_at, _s.error)
            .where(_s.parked_at.is_not(None))
            .order_by(_s.due_at, _s.key)
        )
        return [
            ParkedTimer(
                key=row.key,
                message_id=row.message_id,
                message_type=row.message_type,
                due_at=row.due_at,
                parked_at=row.parked_at,
                error=row.error or "",
            )
            for row in rows
        ]

    def _retry_parked(self, key: str | None) -> Flow[BatchOp, int]:
        update = scheduled_table.update().where(_s.parked_at.is_not(None))
        if key is not None:
            update = update.where(_s.key == key)
        count = yield from _transaction(_execute(update.values(parked_at=None, error=None)))
        if count:
            _log.info("timer worker: %d parked timer(s) will be tried again", count)
        return count

    # -- the loop ----------------------------------------------------------------------------

    def _loop(
        self, poll_interval: float, initial_backoff: float, max_backoff: float
    ) -> Flow[LoopOp, None]:
        """Fire due timers until stopped, backing off and logging while the database fails."""
        check_loop_waits("poll_interval", poll_interval, initial_backoff, max_backoff)
        _log.info("timer worker started on the database at %s", self._database)
        words = LoopWords("timer worker", "nothing was fired", "firing", "fired")
        yield from self._polling_loop(
            words, self._round, poll_interval, initial_backoff, max_backoff
        )
        _log.info("timer worker stopped")

    def _round(self) -> Flow[BatchOp, int]:
        """The next batch of :meth:`_loop`, a cut of the last one forgotten (before it connects)."""
        self._cut.clear()
        return self._fire_batch()
