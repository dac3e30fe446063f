"""AsyncInboxConsumer: the inbox consumer on asyncio, over an async SQL unit of work."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import exc
from tactical._commands import Command, CommandBus
from tactical._flow import run_async
from tactical._model import DomainEvent
from tactical.outbox._inbox_flow import DEFAULT_INBOX_RETENTION, InboxCore, InboxOp, Outcome
from tactical.outbox._message import OutboxMessage
from tactical.sqlalchemy._async_uow import AsyncSqlAlchemyUnitOfWork
from tactical.sqlalchemy._schema import with_schema_hint

__all__ = ["AsyncInboxConsumer"]

U = TypeVar("U", bound=AsyncSqlAlchemyUnitOfWork)
E = TypeVar("E", bound=DomainEvent)


class AsyncInboxConsumer(InboxCore[U]):
    """:class:`InboxConsumer` on asyncio: each delivered event handled once, awaited.

    The same decisions as :class:`InboxConsumer` (the two run the same code) in an
    :class:`~tactical.sqlalchemy.AsyncSqlAlchemyUnitOfWork` per attempt: the inbox row
    ``(consumer_name, event_id)`` is the transaction's first write, so a redelivered event
    is a ``DUPLICATE`` and its effect happens once per consumer; handlers
    (``async def`` or plain) run in the unit of work and the consumer commits; a failing
    handler is retried, then parked with its error; a conflict or lock wait is retried as
    transient and never parks; an undecodable message is parked at once; the later
    messages of a parked message's aggregate are held back. Its rows are those of the sync
    consumer, so the two can share a database (and a consumer name).

    Cancellation: cancelling the task that awaits :meth:`handle` rolls its unit of work
    back; the message is then not handled, and the broker redelivers it.

    Args:
        unit_of_work: Makes a fresh async unit of work (one per attempt), e.g.
            ``lambda: AsyncSqlAlchemyUnitOfWork(engine, codec=codec)``.
        consumer_name: As for :class:`InboxConsumer`.
        codec: Decodes the events; the unit of work's codec if omitted.
        max_attempts: Tries before a failing message is parked (at least 1).
        retry_delay: Seconds before the second attempt; doubled for each further one.
        conflict_attempts: Transient refusals in a row before :meth:`handle` raises.
        conflict_delay: Upper bound in seconds of the first pause after a transient refusal.
        conflict_max_delay: Upper bound in seconds of any such pause.

    Raises:
        ValueError: As for :class:`InboxConsumer`.

    .. versionadded:: 0.2.0
    """

    def subscribe(self, event_type: type[E], handler: Callable[[E, U], object]) -> None:
        """Run ``handler(event, uow)`` for every delivered ``event_type``; awaited if async.

        Raises:
            TypeError: ``event_type`` is not a :class:`~tactical.DomainEvent` subclass.
        """
        self._subscribe(event_type, handler)

    async def handle(self, message: OutboxMessage) -> Outcome:
        """Handle ``message`` once: run its handlers with the inbox record, or park it.

        As :meth:`InboxConsumer.handle`.

        Returns:
            What was done; after any outcome the broker may be told the message is done.

        Raises:
            Exception: The message could be neither handled nor parked: leave it with the
                broker for redelivery.
        """
        return await run_async(self._handling(message), self._perform)

    async def _perform(self, op: InboxOp) -> object:
        try:
            raw = op.start(self)
            if inspect.isawaitable(raw):
                raw = await raw
        except exc.DBAPIError as error:
            with_schema_hint(error)
            raise
        return op.finish(raw)

    async def _open(self) -> U:
        uow = self._unit_of_work()
        if not hasattr(uow, "__aenter__"):
            raise TypeError(
                f"AsyncInboxConsumer {self.name!r}: its unit of work factory made "
                f"{type(uow).__name__}, which is not an async unit of work (no `async "
                "with`): give it a factory of async units of work, or use an InboxConsumer"
            )
        await uow.__aenter__()
        return uow

    async def _close(self, uow: U, error: BaseException | None) -> None:
        await uow.__aexit__(
            None if error is None else type(error),
            error,
            None if error is None else error.__traceback__,
        )

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def _dispatch(self, commands: CommandBus, command: Command[Any]) -> object:
        return await commands.dispatch_async(command)

    async def parked(self) -> list[tuple[OutboxMessage, str]]:
        """This consumer's parked messages with their errors, in outbox position order."""
        return await run_async(self._parked(), self._perform)

    async def retry_parked(self) -> dict[Outcome, int]:
        """Handle every parked message of this consumer again, in outbox position order.

        As :meth:`InboxConsumer.retry_parked`.

        Returns:
            How many messages had each outcome.
        """
        return await run_async(self._retry_parked(), self._perform)

    async def purge_inbox(self, older_than: timedelta = DEFAULT_INBOX_RETENTION) -> int:
        """Delete this consumer's inbox rows older than ``older_than``; how many.

        Raises:
            ValueError: ``older_than`` is negative.
        """
        return await run_async(self._purge(older_than), self._perform)
