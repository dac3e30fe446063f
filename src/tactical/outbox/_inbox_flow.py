"""What an inbox consumer does, written once: flows that the sync and the async consumer drive.

Every decision of :class:`~tactical.outbox.InboxConsumer` and
:class:`~tactical.outbox.AsyncInboxConsumer` lives here: the inbox row as the transaction's
first write, a duplicate told by it, the handlers run and committed with it, what to retry,
what to park and what to log. The flows yield the operations below (see
:mod:`tactical._flow`); each operation starts itself (``start``: its value, or the awaitable
of it for an async unit of work or handler) and reads what came back (``finish``). A driver
only supplies how to open and close a unit of work and how to sleep.
"""

from __future__ import annotations

import enum
import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeAlias, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc
from tactical._bus import EventHandlerError, Subscriptions
from tactical._codec import DeserializationError, JsonCodec
from tactical._commands import CommandBus
from tactical._flow import Flow
from tactical._model import DomainEvent
from tactical._process import ProcessManager, check_feeding
from tactical._telemetry import NOOP, handler_span, tracer
from tactical._tracing import handling
from tactical.outbox._inbox_process import Dispatch, LoadManager, ProcessFeed
from tactical.outbox._inbox_retry import InboxRetries, Next
from tactical.outbox._message import OutboxMessage
from tactical.outbox._telemetry import consuming, count_inbox_parked, count_inbox_retry
from tactical.sqlalchemy._schema import dead_letters_table, inbox_table

__all__ = [
    "DEFAULT_INBOX_RETENTION",
    "InboxCore",
    "InboxOp",
    "Outcome",
    "purge_statement",
]

_log = logging.getLogger("tactical.outbox")

U = TypeVar("U")
E = TypeVar("E", bound=DomainEvent)
R = TypeVar("R")

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


# -- operations ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Open:
    """Make a unit of work and begin its transaction; the result is the unit of work."""

    def start(self, driver: Any) -> Any:
        return driver._open()

    def finish(self, raw: object) -> object:
        return raw


@dataclass(frozen=True, slots=True)
class Close:
    """End the unit of work's block, with the exception that ended it (None: it ended well)."""

    uow: Any
    error: BaseException | None

    def start(self, driver: Any) -> Any:
        return driver._close(self.uow, self.error)

    def finish(self, _raw: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Execute:
    """Run a statement on the unit of work's connection: every row, or how many it changed."""

    uow: Any
    statement: sa.Executable
    rows: bool

    def start(self, _driver: Any) -> Any:
        return self.uow.connection.execute(self.statement)

    def finish(self, raw: sa.CursorResult[Any]) -> list[sa.Row[Any]] | int:
        return list(raw.all()) if self.rows else raw.rowcount


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit the unit of work."""

    uow: Any

    def start(self, _driver: Any) -> Any:
        return self.uow.commit()

    def finish(self, _raw: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class CallHandler:
    """Run one handler of the event (its awaitable, for an ``async def`` handler)."""

    handler: Callable[[Any, Any], object]
    event: DomainEvent
    uow: Any

    def start(self, _driver: Any) -> Any:
        return self.handler(self.event, self.uow)

    def finish(self, _raw: object) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before the next attempt."""

    seconds: float

    def start(self, driver: Any) -> Any:
        return driver._sleep(self.seconds)

    def finish(self, _raw: object) -> None:
        return None


InboxOp: TypeAlias = Open | Close | Execute | Commit | CallHandler | LoadManager | Dispatch | Sleep


class _Unprocessable(Exception):
    """Retrying cannot help: park at once (the message's cause is attached)."""

    def __init__(self, reason: str, *, tried: bool) -> None:
        super().__init__(reason)
        self.tried = tried


def purge_statement(older_than: timedelta, consumer: str | None) -> sa.Delete:
    """The DELETE of inbox rows older than ``older_than`` (of one consumer, or all).

    Raises:
        ValueError: ``older_than`` is negative.
    """
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    t = inbox_table
    statement = t.delete().where(t.c.processed_at < datetime.now(UTC) - older_than)
    if consumer is not None:
        statement = statement.where(t.c.consumer == consumer)
    return statement


class InboxCore(Generic[U]):
    """What the sync and the async inbox consumer share: settings, handlers, every decision.

    The constructor's arguments are documented on :class:`~tactical.outbox.InboxConsumer`.
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
        self._subscriptions: Subscriptions[Callable[[Any, U], object] | ProcessFeed[Any]] = (
            Subscriptions()
        )

    @property
    def name(self) -> str:
        """The consumer's name, the key of its inbox and dead-letter rows."""
        return self._name

    def _subscribe(
        self, event_type: type[DomainEvent], handler: Callable[[Any, U], object]
    ) -> None:
        self._subscriptions.add(event_type, handler)

    def subscribe_process_manager(
        self, manager_type: type[ProcessManager[Any]], commands: CommandBus
    ) -> None:
        """Feed ``manager_type`` every event it handles, in the inbox's own transaction.

        For each delivered event of a type the manager's methods handle: in the unit of
        work the consumer opened for the message, right after its inbox row, load the
        manager under the event's key (or start it), :meth:`~tactical.ProcessManager.handle`
        the event; the consumer's one commit then stores the inbox row, the manager's
        state, the events it recorded (in the outbox) and its timers together. A
        redelivered event is a ``DUPLICATE`` and changes nothing; a handler failure rolls
        all of it back, and a message parked after its last attempt leaves no trace of the
        manager. Conflicts (two copies or two events of one process at once) are retried as
        the consumer retries any.

        Once that commit is over (and the unit of work's block has ended), the commands the
        manager asked for are dispatched through ``commands``, in order, with the handled
        event's correlation id: :meth:`CommandBus.dispatch <tactical.CommandBus.dispatch>`
        by :class:`InboxConsumer`, awaited :meth:`CommandBus.dispatch_async
        <tactical.CommandBus.dispatch_async>` by :class:`AsyncInboxConsumer` (whose
        command handlers may be ``async def``). They are dispatched once per handled
        event, never for a duplicate. A command handler that raises is logged at ERROR on
        the ``tactical.outbox`` logger, the commands after it are dispatched all the same,
        and the message is still ``HANDLED`` (its effect is committed; a redelivery would be a
        duplicate). A crash between the commit and the dispatch loses the commands: for
        one that must survive it, record an event and dispatch the command from that
        event's handler, itself fed through an inbox.

        A transaction changes one aggregate: subscribe one manager to a consumer, and no
        other handler that changes an aggregate to the same event types (or create the
        unit of work with ``allow_multiple_aggregates=True``).

        Args:
            manager_type: The :class:`~tactical.ProcessManager` subclass to feed.
            commands: Where the commands it asks for are dispatched.

        Raises:
            TypeError: ``manager_type`` is not a :class:`~tactical.ProcessManager` subclass
                or handles no event, or ``commands`` is not a
                :class:`~tactical.CommandBus`.

        .. versionadded:: 0.2.0
        """
        check_feeding(
            f"{type(self).__qualname__}.subscribe_process_manager()", manager_type, commands
        )
        feed = ProcessFeed(manager_type, commands)
        for event_type in manager_type.handled_event_types():
            self._subscriptions.add(event_type, feed)

    # -- handling --------------------------------------------------------------------------

    def _handling(self, message: OutboxMessage) -> Flow[InboxOp, Outcome]:
        """Handle ``message`` once, in a span that continues its producer's trace."""
        block = consuming(self._name, message)
        with block:
            outcome = yield from self._handling_once(message)
            block.finish(outcome.value)
        return outcome

    def _handling_once(self, message: OutboxMessage) -> Flow[InboxOp, Outcome]:
        """Handle ``message`` once: its handlers with the inbox record, retried, or parked."""
        retries = InboxRetries(
            self._max_attempts,
            self._retry_delay,
            self._conflict_attempts,
            self._conflict_delay,
            self._conflict_max_delay,
        )
        while True:
            dispatches: list[Dispatch] = []
            try:
                outcome = yield from self._within(
                    functools.partial(self._attempt, message=message, dispatches=dispatches)
                )
            except _Unprocessable as unprocessable:
                cause = unprocessable.__cause__
                reason = str(unprocessable) if cause is None else f"{unprocessable}: {cause}"
                attempts = retries.failures + 1 if unprocessable.tried else retries.failures
                return (yield from self._park(message, reason, attempts))
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
                        return (
                            yield from self._park(message, _describe(failure), decision.failures)
                        )
                count_inbox_retry(self._name, transient=decision.transient)
                yield Sleep(decision.delay)
            else:
                yield from self._dispatching(message, dispatches)
                return outcome

    def _dispatching(
        self, message: OutboxMessage, dispatches: list[Dispatch]
    ) -> Flow[InboxOp, None]:
        """Dispatch the commands a committed attempt asked for, in order, each one whatever
        the others do (a failure is logged: the message is handled, a redelivery a duplicate)."""
        if not dispatches:
            return
        with handling(message.correlation_id or message.event_id, message.event_id):
            for dispatch in dispatches:
                try:
                    yield dispatch
                except Exception:
                    _log.error(
                        "consumer %s: %s event %s was handled and committed, but dispatching "
                        "%s %s failed (the other commands were dispatched)",
                        self._name,
                        message.event_type,
                        message.event_id,
                        type(dispatch.command).__qualname__,
                        dispatch.command.command_id,
                        exc_info=True,
                    )

    def _within(self, body: Callable[[Any], Flow[InboxOp, R]]) -> Flow[InboxOp, R]:
        """``body(uow)`` inside a block of a new unit of work (``with uow:``)."""
        uow = yield Open()
        try:
            result = yield from body(uow)
        except BaseException as error:
            yield Close(uow, error)
            raise
        # The unit of work dispatches what it committed on its in-process bus as the block
        # ends: EventHandlerError then means committed, only subscribers of that bus failed,
        # and the bus has logged them.
        try:
            yield Close(uow, None)
        except EventHandlerError:
            pass
        except Exception as failure:
            # The body finished: what it committed stands and what it did not is rolled back
            # with the connection, so its outcome is the message's. Counting this as a failed
            # attempt would park (or redo) a message whose effect is already stored.
            _log.warning(
                "consumer %s: closing the unit of work failed after the attempt ended (%s); "
                "the attempt's outcome stands",
                self._name,
                _first_line(failure),
            )
        return result

    def _attempt(
        self, uow: Any, message: OutboxMessage, dispatches: list[Dispatch]
    ) -> Flow[InboxOp, Outcome]:
        codec: JsonCodec = self._codec if self._codec is not None else uow.codec
        undecodable: DeserializationError | None = None
        event: DomainEvent | None = None
        handlers: tuple[Callable[[Any, U], object] | ProcessFeed[Any], ...] = ()
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
                # The first statement, so that a copy handled concurrently waits here for
                # the first to commit and then finds the row (the inbox row lock on
                # PostgreSQL, the write lock on SQLite, where only a transaction that has
                # not read yet waits for it); the unit of work rolls back on the early
                # returns below.
                yield Execute(
                    uow,
                    inbox_table.insert().values(
                        consumer=self._name,
                        event_id=message.event_id,
                        processed_at=datetime.now(UTC),
                    ),
                    rows=False,
                )
            except exc.IntegrityError:
                return Outcome.DUPLICATE
        parked = yield from self._parked_before(uow, message)
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
        traced = tracer()
        correlation_id = message.correlation_id or message.event_id
        with handling(correlation_id, message.event_id):
            for handler in handlers:
                # Each handler's run is a span of its own, as on the in-process bus.
                with (
                    NOOP if traced is None else handler_span(traced, event, handler, correlation_id)
                ):
                    if isinstance(handler, ProcessFeed):
                        asked = yield from handler.applying(event, uow)
                        dispatches.extend(asked)
                    else:
                        yield CallHandler(handler, event, uow)
            yield Commit(uow)
        return Outcome.HANDLED

    def _parked_before(self, uow: Any, message: OutboxMessage) -> Flow[InboxOp, Any]:
        """The event id of a parked message of this aggregate at or before this one, if any."""
        t = dead_letters_table
        rows: list[sa.Row[Any]] = yield Execute(
            uow,
            sa.select(t.c.event_id)
            .where(
                t.c.consumer == self._name,
                t.c.aggregate_type == message.aggregate_type,
                t.c.aggregate_id == message.aggregate_id,
                t.c.position <= message.position,
            )
            .order_by(t.c.position)
            .limit(1),
            rows=True,
        )
        return rows[0][0] if rows else None

    def _park(self, message: OutboxMessage, error: str, attempts: int) -> Flow[InboxOp, Outcome]:
        t = dead_letters_table
        insert = t.insert().values(
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

        def parking(uow: Any) -> Flow[InboxOp, None]:
            # Insert first, no read before: on SQLite only a transaction that has not read
            # can wait for the write lock. A row already there is this message, parked before.
            try:
                yield Execute(uow, insert, rows=False)
            except exc.IntegrityError:
                return
            yield Commit(uow)

        yield from self._within(parking)
        count_inbox_parked(self._name)
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

    def _parked(self) -> Flow[InboxOp, list[tuple[OutboxMessage, str]]]:
        t = dead_letters_table
        query = (
            sa.select(t.c.body, t.c.headers, t.c.error)
            .where(t.c.consumer == self._name)
            .order_by(t.c.position)
        )

        def reading(uow: Any) -> Flow[InboxOp, list[sa.Row[Any]]]:
            rows: list[sa.Row[Any]] = yield Execute(uow, query, rows=True)
            return rows

        rows = yield from self._within(reading)
        return [(OutboxMessage.from_wire(row.body, row.headers), row.error) for row in rows]

    def _retry_parked(self) -> Flow[InboxOp, dict[Outcome, int]]:
        counts: dict[Outcome, int] = {}
        t = dead_letters_table
        for message, _ in (yield from self._parked()):
            delete = t.delete().where(t.c.consumer == self._name, t.c.event_id == message.event_id)
            yield from self._within(functools.partial(self._changing, statement=delete))
            outcome = yield from self._handling(message)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def _purge(self, older_than: timedelta) -> Flow[InboxOp, int]:
        statement = purge_statement(older_than, self._name)
        return (yield from self._within(lambda uow: self._changing(uow, statement)))

    def _changing(self, uow: Any, statement: sa.Executable) -> Flow[InboxOp, int]:
        count: int = yield Execute(uow, statement, rows=False)
        yield Commit(uow)
        return count


def _first_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _describe(error: BaseException) -> str:
    notes = getattr(error, "__notes__", ())
    text = f"{type(error).__module__}.{type(error).__qualname__}: {error}"
    return "\n".join([text, *notes])
