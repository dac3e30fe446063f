"""InboxConsumer: handles each delivered event exactly once, parking those that keep failing."""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._bus import EventHandlerError, Subscriptions
from tactical._codec import DeserializationError, JsonCodec
from tactical._model import DomainEvent
from tactical._tracing import handling
from tactical.outbox._inbox_retry import InboxRetries, Next
from tactical.outbox._message import OutboxMessage
from tactical.sqlalchemy._schema import dead_letters_table, inbox_table
from tactical.sqlalchemy._uow import SqlAlchemyUnitOfWork

__all__ = ["DEFAULT_INBOX_RETENTION", "InboxConsumer", "Outcome", "purge_inbox"]

_log = logging.getLogger("tactical.outbox")

U = TypeVar("U", bound=SqlAlchemyUnitOfWork)
E = TypeVar("E", bound=DomainEvent)

DEFAULT_INBOX_RETENTION = timedelta(days=7)
"""How long inbox rows are worth keeping by default (see :func:`purge_inbox`)."""


class Outcome(enum.Enum):
    """What :meth:`InboxConsumer.handle` did with a message; every outcome may be acknowledged.

    .. versionadded:: 0.1.0
    """

    HANDLED = "handled"
    """The handlers ran and their changes were committed with the inbox record."""
    DUPLICATE = "duplicate"
    """This consumer had already handled the event, so nothing was done again."""
    IGNORED = "ignored"
    """No handler is subscribed to the event's type, so nothing was done."""
    PARKED = "parked"
    """The message is (now, or already) in the dead letters, with its error."""


class _Unprocessable(Exception):
    """Retrying cannot help: park at once (the message's cause is attached)."""

    def __init__(self, reason: str, *, tried: bool) -> None:
        super().__init__(reason)
        self.tried = tried


class InboxConsumer(Generic[U]):
    """Runs event handlers in a unit of work with an inbox record, so each event counts once.

    :meth:`handle` takes a delivered :class:`OutboxMessage`, decodes its event with the
    codec, and runs every handler subscribed to its type inside one unit of work from
    ``unit_of_work``, together with an insert of ``(consumer_name, event_id)`` into
    ``tactical_inbox``; then it commits. A redelivered event finds its inbox row and is
    skipped, so its effect happens exactly once per consumer, however often the broker or
    the relay delivers it. (On PostgreSQL a copy handled concurrently by a second
    instance waits on the first's inbox row and is then skipped.)

    A handler receives the event and the unit of work; it changes aggregates through
    ``uow.repository(...)`` and must not commit (the consumer does). Events its aggregates
    record carry the handled event's correlation id, and its id as causation id.

    A failing handler is retried (``max_attempts`` in all, with a short growing delay);
    after the last failure the message is *parked*: written to ``tactical_dead_letters``
    with its body, headers, error and attempt count, and reported as handled so the broker
    moves on. A message that cannot be decoded (unknown type, malformed payload) is parked
    at once. A transient refusal is not the message's fault and never counts toward
    parking: a :class:`~tactical.ConcurrencyError` (a competing consumer or writer changed
    the aggregate first), SQLite's "database is locked" and PostgreSQL's serialization
    failures and deadlocks are retried after a jittered pause that doubles from
    ``conflict_delay`` up to ``conflict_max_delay``, up to ``conflict_attempts`` times in a
    row; then :meth:`handle` raises the last one, so the broker redelivers the message
    later instead of it being parked. Later messages of the same aggregate are parked behind it ("held back",
    with 0 attempts),
    keeping per-aggregate order for :meth:`retry_parked`; other aggregates' messages are
    not blocked. If parking itself fails (the database is down), :meth:`handle` raises and
    the broker should redeliver.

    Args:
        unit_of_work: Makes a fresh unit of work (one per attempt), e.g.
            ``lambda: SqlAlchemyUnitOfWork(engine, codec=codec)``.
        consumer_name: A stable name for this consumer (one per subscribing service or
            read model); inbox and dead-letter rows are kept per name.
        codec: Decodes the events; the unit of work's codec if omitted.
        max_attempts: Tries before a failing message is parked (at least 1).
        retry_delay: Seconds before the second attempt; doubled for each further one.
        conflict_attempts: Transient refusals in a row before :meth:`handle` gives up on
            the delivery and raises (at least 1).
        conflict_delay: Upper bound in seconds of the first pause after a transient
            refusal; doubled for each further one.
        conflict_max_delay: Upper bound in seconds of any such pause.

    Raises:
        ValueError: ``consumer_name`` is empty or longer than 255 characters (the inbox
            column's size), ``max_attempts`` or ``conflict_attempts`` is below 1, or a
            delay is negative.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Transient refusals are retried apart from failures (``conflict_attempts``,
       ``conflict_delay``, ``conflict_max_delay``) and never park a message.
    """

    def __init__(
        self,
        unit_of_work: Callable[[], U],
        consumer_name: str,
        *,
        codec: JsonCodec | None = None,
        max_attempts: int = 3,
        retry_delay: float = 0.05,
        conflict_attempts: int = 50,
        conflict_delay: float = 0.01,
        conflict_max_delay: float = 1.0,
    ) -> None:
        if not consumer_name or len(consumer_name) > 255:
            raise ValueError(f"consumer_name must be 1 to 255 characters, got {consumer_name!r}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if conflict_attempts < 1:
            raise ValueError(f"conflict_attempts must be at least 1, got {conflict_attempts}")
        if min(retry_delay, conflict_delay, conflict_max_delay) < 0:
            raise ValueError(
                f"delays must not be negative, got {retry_delay=}, {conflict_delay=} "
                f"and {conflict_max_delay=}"
            )
        self._conflict_attempts = conflict_attempts
        self._conflict_delay = conflict_delay
        self._conflict_max_delay = conflict_max_delay
        self._unit_of_work = unit_of_work
        self._name = consumer_name
        self._codec = codec
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._subscriptions: Subscriptions[Callable[[Any, U], object]] = Subscriptions()

    @property
    def name(self) -> str:
        """The consumer's name, the key of its inbox and dead-letter rows."""
        return self._name

    def subscribe(self, event_type: type[E], handler: Callable[[E, U], object]) -> None:
        """Run ``handler(event, uow)`` for every delivered event that is an ``event_type``.

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` subclass.
        """
        self._subscriptions.add(event_type, handler)

    # -- handling --------------------------------------------------------------------------

    def handle(self, message: OutboxMessage) -> Outcome:
        """Handle ``message`` once: run its handlers with the inbox record, or park it.

        Returns:
            What was done; after any outcome the broker may be told the message is done.

        Raises:
            Exception: The message could be neither handled nor parked (the database is
                unreachable, say): leave it with the broker for redelivery.
        """
        retries = InboxRetries(
            self._max_attempts,
            self._retry_delay,
            self._conflict_attempts,
            self._conflict_delay,
            self._conflict_max_delay,
        )
        while True:
            uow = self._unit_of_work()
            try:
                return self._attempt(uow, message)
            except _Unprocessable as unprocessable:
                cause = unprocessable.__cause__
                reason = str(unprocessable) if cause is None else f"{unprocessable}: {cause}"
                attempts = retries.failures + 1 if unprocessable.tried else retries.failures
                return self._park(uow.engine, message, reason, attempts)
            except Exception as failure:
                # Jitter only spreads competing consumers apart: no security role.
                decision = retries.after(failure, random.random())  # noqa: S311
                if decision.transient:
                    _log.info(
                        "consumer %s: %s event %s refused for now (%s, %d in a row); %s",
                        self._name,
                        message.event_type,
                        message.event_id,
                        _first_line(failure),
                        retries.conflicts,
                        "giving up on this delivery, the broker redelivers it"
                        if decision.next is Next.GIVE_UP
                        else f"retrying in {decision.delay:.3f}s",
                    )
                    if decision.next is Next.GIVE_UP:
                        raise
                else:
                    _log.warning(
                        "consumer %s: attempt %d/%d at %s event %s failed: %s",
                        self._name,
                        decision.failures,
                        self._max_attempts,
                        message.event_type,
                        message.event_id,
                        failure,
                        exc_info=True,
                    )
                    if decision.next is Next.PARK:
                        return self._park(
                            uow.engine, message, _describe(failure), decision.failures
                        )
                time.sleep(decision.delay)

    def _attempt(self, uow: U, message: OutboxMessage) -> Outcome:
        with uow:
            connection = uow.connection
            codec = self._codec if self._codec is not None else uow.codec
            undecodable: DeserializationError | None = None
            event: DomainEvent | None = None
            handlers: tuple[Callable[[Any, U], object], ...] = ()
            try:
                event = codec.event_from_record(
                    message.event_type,
                    message.event_version,
                    message.payload,
                    context=f"message event_id={message.event_id} for consumer {self._name}",
                )
                handlers = self._subscriptions.for_type(type(event))
            except DeserializationError as error:
                undecodable = error
            if handlers:
                try:
                    # The first statement, so that a copy handled concurrently waits here
                    # for the first to commit and then finds the row (the inbox row lock on
                    # PostgreSQL, the write lock on SQLite, where only a transaction that
                    # has not read yet waits for it); the unit of work rolls back on the
                    # early returns below.
                    connection.execute(
                        inbox_table.insert().values(
                            consumer=self._name,
                            event_id=message.event_id,
                            processed_at=datetime.now(UTC),
                        )
                    )
                except exc.IntegrityError:
                    return Outcome.DUPLICATE
            parked = self._parked_before(connection, message)
            if parked is not None:
                if parked == message.event_id:
                    return Outcome.PARKED
                raise _Unprocessable(
                    f"held back: event {parked} of {message.aggregate_type} "
                    f"{message.aggregate_id}, delivered before it, is parked",
                    tried=False,
                )
            if undecodable is not None:
                raise _Unprocessable("cannot decode the event", tried=True) from undecodable
            if event is None or not handlers:
                return Outcome.IGNORED
            with handling(message.correlation_id or message.event_id, message.event_id):
                for handler in handlers:
                    handler(event, uow)
                # EventHandlerError means committed: only in-process subscribers of the unit
                # of work's bus failed, and the bus has logged them.
                with contextlib.suppress(EventHandlerError):
                    uow.commit()
        return Outcome.HANDLED

    def _parked_before(self, connection: sa.Connection, message: OutboxMessage) -> Any:
        """The event id of a parked message of this aggregate at or before this one, if any."""
        t = dead_letters_table
        return connection.execute(
            sa.select(t.c.event_id)
            .where(
                t.c.consumer == self._name,
                t.c.aggregate_type == message.aggregate_type,
                t.c.aggregate_id == message.aggregate_id,
                t.c.position <= message.position,
            )
            .order_by(t.c.position)
            .limit(1)
        ).scalar_one_or_none()

    def _park(
        self, engine: sa.Engine, message: OutboxMessage, error: str, attempts: int
    ) -> Outcome:
        t = dead_letters_table
        # Insert first, no read before: on SQLite only a transaction that has not read can
        # wait for the write lock. A row already there is this message, parked before.
        with contextlib.suppress(exc.IntegrityError), engine.begin() as connection:
            connection.execute(
                t.insert().values(
                    consumer=self._name,
                    event_id=message.event_id,
                    event_type=message.event_type,
                    aggregate_type=message.aggregate_type,
                    aggregate_id=message.aggregate_id,
                    position=message.position,
                    body=message.body.decode(),
                    headers=message.headers,
                    error=error,
                    attempts=attempts,
                    failed_at=datetime.now(UTC),
                )
            )
        _log.error(
            "consumer %s parked %s event %s (%s %s) after %d attempt(s): %s",
            self._name,
            message.event_type,
            message.event_id,
            message.aggregate_type,
            message.aggregate_id,
            attempts,
            error,
        )
        return Outcome.PARKED

    # -- dead letters and retention --------------------------------------------------------

    def parked(self) -> list[tuple[OutboxMessage, str]]:
        """This consumer's parked messages with their errors, in outbox position order."""
        t = dead_letters_table
        with self._unit_of_work().engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.c.body, t.c.headers, t.c.error)
                .where(t.c.consumer == self._name)
                .order_by(t.c.position)
            ).all()
        return [(OutboxMessage.from_wire(row.body, row.headers), row.error) for row in rows]

    def retry_parked(self) -> dict[Outcome, int]:
        """Take every parked message of this consumer out of the dead letters and handle it again.

        Messages are retried in outbox position order, so an aggregate's held-back messages
        follow the one that held them back; those that fail again are parked again.

        Returns:
            How many messages had each outcome.
        """
        counts: dict[Outcome, int] = {}
        engine = self._unit_of_work().engine
        t = dead_letters_table
        for message, _ in self.parked():
            with engine.begin() as connection:
                connection.execute(
                    t.delete().where(t.c.consumer == self._name, t.c.event_id == message.event_id)
                )
            outcome = self.handle(message)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def purge_inbox(self, older_than: timedelta = DEFAULT_INBOX_RETENTION) -> int:
        """Delete this consumer's inbox rows older than ``older_than``; see :func:`purge_inbox`.

        Returns:
            How many rows were deleted.

        Raises:
            ValueError: ``older_than`` is negative.
        """
        return purge_inbox(self._unit_of_work().engine, older_than, consumer=self._name)


def purge_inbox(
    engine: sa.Engine,
    older_than: timedelta = DEFAULT_INBOX_RETENTION,
    *,
    consumer: str | None = None,
) -> int:
    """Delete inbox rows processed more than ``older_than`` ago; return how many.

    The inbox only has to remember an event for as long as a copy of it can still arrive: a
    relay that crashed between publish and mark sends its batch again within moments, and a
    broker redelivers unacknowledged messages when their consumer reconnects. So the retention
    window must exceed the longest time a copy can wait in a queue behind the first one (the
    consumer's worst backlog or outage); the default, 7 days
    (:data:`~tactical.outbox.DEFAULT_INBOX_RETENTION`), is generous. A copy arriving after its
    row was purged is handled again. Run this periodically (say daily).

    Args:
        engine: The database of the inbox.
        older_than: The retention window.
        consumer: Purge only this consumer's rows; all consumers' if None.

    Returns:
        How many rows were deleted.

    Raises:
        ValueError: ``older_than`` is negative.

    .. versionadded:: 0.1.0
    """
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    t = inbox_table
    statement = t.delete().where(t.c.processed_at < datetime.now(UTC) - older_than)
    if consumer is not None:
        statement = statement.where(t.c.consumer == consumer)
    with engine.begin() as connection:
        return connection.execute(statement).rowcount


def _first_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _describe(error: BaseException) -> str:
    notes = getattr(error, "__notes__", ())
    text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
    return "\n".join([text, *notes])
