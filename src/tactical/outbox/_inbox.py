"""InboxConsumer: handles each delivered event exactly once, parking those that keep failing."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._asyncness import discard_awaitable, is_async_callable
from tactical._commands import Command, CommandBus
from tactical._flow import run
from tactical._model import DomainEvent
from tactical.outbox._inbox_flow import (
    DEFAULT_INBOX_RETENTION,
    InboxCore,
    InboxOp,
    Outcome,
    purge_statement,
)
from tactical.outbox._message import OutboxMessage
from tactical.sqlalchemy._engine import sync_engine
from tactical.sqlalchemy._schema import with_schema_hint
from tactical.sqlalchemy._uow import SqlAlchemyUnitOfWork

__all__ = ["DEFAULT_INBOX_RETENTION", "InboxConsumer", "Outcome", "purge_inbox"]

U = TypeVar("U", bound=SqlAlchemyUnitOfWork)
E = TypeVar("E", bound=DomainEvent)


class InboxConsumer(InboxCore[U]):
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
    record carry the handled event's correlation id, and its id as causation id. A
    :class:`~tactical.ProcessManager` is fed the same way, in this one transaction, with
    :meth:`subscribe_process_manager`.

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

    def subscribe(self, event_type: type[E], handler: Callable[[E, U], object]) -> None:
        """Run ``handler(event, uow)`` for every delivered event that is an ``event_type``.

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` subclass, or
                ``handler`` is an ``async def`` function (use
                :class:`~tactical.outbox.AsyncInboxConsumer` for those).
        """
        if is_async_callable(handler):
            raise TypeError(
                f"{handler!r} is an async handler, which InboxConsumer cannot await: "
                "subscribe it to an AsyncInboxConsumer"
            )
        self._subscribe(event_type, handler)

    # -- handling --------------------------------------------------------------------------

    def handle(self, message: OutboxMessage) -> Outcome:
        """Handle ``message`` once: run its handlers with the inbox record, or park it.

        Returns:
            What was done; after any outcome the broker may be told the message is done.

        Raises:
            Exception: The message could be neither handled nor parked (the database is
                unreachable, say): leave it with the broker for redelivery.
        """
        return run(self._handling(message), self._perform)

    def _perform(self, op: InboxOp) -> object:
        try:
            raw = op.start(self)
        except exc.DBAPIError as error:
            with_schema_hint(error)
            raise
        if discard_awaitable(raw):
            raise TypeError(
                f"{op!r} gave an awaitable, which InboxConsumer cannot await: handlers that "
                "return one belong to an AsyncInboxConsumer"
            )
        return op.finish(raw)

    def _open(self) -> U:
        uow = self._unit_of_work()
        if not hasattr(uow, "__enter__"):
            raise TypeError(
                f"InboxConsumer {self.name!r}: its unit of work factory made "
                f"{type(uow).__name__}, which is not a sync unit of work (no `with`): give it "
                "a factory of sync units of work, or use an AsyncInboxConsumer"
            )
        uow.__enter__()
        return uow

    def _close(self, uow: U, error: BaseException | None) -> None:
        traceback: TracebackType | None = None if error is None else error.__traceback__
        uow.__exit__(None if error is None else type(error), error, traceback)

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _dispatch(self, commands: CommandBus, command: Command[Any]) -> object:
        return commands.dispatch(command)

    # -- dead letters and retention --------------------------------------------------------

    def parked(self) -> list[tuple[OutboxMessage, str]]:
        """This consumer's parked messages with their errors, in outbox position order."""
        return run(self._parked(), self._perform)

    def retry_parked(self) -> dict[Outcome, int]:
        """Take every parked message of this consumer out of the dead letters and handle it again.

        Messages are retried in outbox position order, so an aggregate's held-back messages
        follow the one that held them back; those that fail again are parked again.

        Returns:
            How many messages had each outcome.
        """
        return run(self._retry_parked(), self._perform)

    def purge_inbox(self, older_than: timedelta = DEFAULT_INBOX_RETENTION) -> int:
        """Delete this consumer's inbox rows older than ``older_than``; see :func:`purge_inbox`.

        Returns:
            How many rows were deleted.

        Raises:
            ValueError: ``older_than`` is negative.
        """
        return run(self._purge(older_than), self._perform)


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
    statement = purge_statement(older_than, consumer)
    sync_engine(engine, "use AsyncInboxConsumer.purge_inbox")
    with engine.begin() as connection:
        try:
            return connection.execute(statement).rowcount
        except exc.DBAPIError as error:
            with_schema_hint(error)
            raise
