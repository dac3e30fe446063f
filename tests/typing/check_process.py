"""Type-checked, never run: a process manager, its declarations and its handler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, assert_type
from uuid import UUID, uuid4

from tactical import (
    AsyncInMemoryUnitOfWork,
    AsyncProcessManagerHandler,
    Command,
    CommandBus,
    DomainEvent,
    EventBus,
    InMemoryUnitOfWork,
    ProcessManager,
    ProcessManagerHandler,
)
from tactical.outbox import AsyncInboxConsumer, InboxConsumer
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, SqlAlchemyUnitOfWork

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class LabelPrinted(DomainEvent):
    shipment_id: UUID
    carrier: str


class PickupScanned(DomainEvent):
    shipment_id: UUID


class PickupDeadlinePassed(DomainEvent):
    shipment_id: UUID


class RaiseShipmentException(Command):
    shipment_id: UUID


class PickupDeadline(ProcessManager[UUID]):
    carrier: str = ""

    @ProcessManager.starts(LabelPrinted, key=lambda e: e.shipment_id)
    def label_printed(self, event: LabelPrinted) -> None:
        self.carrier = event.carrier
        assert_type(
            self.schedule(PickupDeadlinePassed(self.id), at=NOW + timedelta(days=1), key="k"),
            str,
        )

    @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)
    def pickup_scanned(self, event: PickupScanned) -> None:
        self.cancel("k")
        self.complete()

    @ProcessManager.advances(PickupDeadlinePassed, key=lambda e: e.shipment_id)
    def deadline_passed(self, event: PickupDeadlinePassed) -> None:
        self.dispatch(RaiseShipmentException(self.id))


manager = PickupDeadline(uuid4())
assert_type(manager.id, UUID)
assert_type(manager.version, int)
assert_type(manager.completed, bool)
assert_type(manager.handled_event_ids, list[UUID])
assert_type(manager.handle(PickupScanned(uuid4())), bool)
assert_type(manager.pending_commands, tuple[Command[Any], ...])
assert_type(manager.pull_commands(), tuple[Command[Any], ...])
assert_type(PickupDeadline.correlation_key(PickupScanned(uuid4())), UUID)
assert_type(PickupDeadline.handled_event_types(), tuple[type[DomainEvent], ...])
assert_type(PickupDeadline.starts_on(PickupScanned(uuid4())), bool)
manager.label_printed(LabelPrinted(uuid4(), "DHL"))

handler = ProcessManagerHandler(PickupDeadline, InMemoryUnitOfWork(), CommandBus())
assert_type(handler, ProcessManagerHandler[PickupDeadline])
handler.subscribe(EventBus())
handler(PickupScanned(uuid4()))
# A callable that returns a unit of work: one for each delivery.
assert_type(
    ProcessManagerHandler(PickupDeadline, lambda: InMemoryUnitOfWork(), CommandBus()),
    ProcessManagerHandler[PickupDeadline],
)

async_handler = AsyncProcessManagerHandler(PickupDeadline, AsyncInMemoryUnitOfWork(), CommandBus())
assert_type(async_handler, AsyncProcessManagerHandler[PickupDeadline])
async_handler.subscribe(EventBus())
assert_type(
    AsyncProcessManagerHandler(PickupDeadline, AsyncInMemoryUnitOfWork, CommandBus()),
    AsyncProcessManagerHandler[PickupDeadline],
)


async def deliver() -> None:
    assert_type(await async_handler(PickupScanned(uuid4())), None)


# Fed through an inbox: in the inbox's transaction, commands after its commit.
def feed_through_inboxes(
    inbox: InboxConsumer[SqlAlchemyUnitOfWork],
    async_inbox: AsyncInboxConsumer[AsyncSqlAlchemyUnitOfWork],
) -> None:
    assert_type(inbox.subscribe_process_manager(PickupDeadline, CommandBus()), None)
    assert_type(async_inbox.subscribe_process_manager(PickupDeadline, CommandBus()), None)
    inbox.subscribe_process_manager(LabelPrinted, CommandBus())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    async_inbox.subscribe_process_manager(PickupDeadline, EventBus())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


# Misuse.
class Wrong(ProcessManager[UUID]):
    # The key reader takes the declared event type: LabelPrinted has no `missing`.
    @ProcessManager.starts(LabelPrinted, key=lambda e: e.missing)  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownLambdaType, reportUnknownMemberType]
    def label_printed(self, event: LabelPrinted) -> None: ...

    # The method takes the declared event type.
    @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    def pickup_scanned(self, event: LabelPrinted) -> None: ...


manager.label_printed(PickupScanned(uuid4()))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
manager.dispatch(PickupScanned(uuid4()))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
ProcessManager.starts(int, key=str)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
ProcessManagerHandler(LabelPrinted, InMemoryUnitOfWork(), CommandBus())  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
# A sync unit of work for the async handler, and the reverse; an un-awaited delivery.
AsyncProcessManagerHandler(PickupDeadline, InMemoryUnitOfWork(), CommandBus())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
ProcessManagerHandler(PickupDeadline, AsyncInMemoryUnitOfWork(), CommandBus())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
AsyncProcessManagerHandler(LabelPrinted, AsyncInMemoryUnitOfWork(), CommandBus())  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]


def forgot_await() -> None:
    async_handler(PickupScanned(uuid4()))  # type: ignore[unused-coroutine]  # pyright: ignore[reportUnusedCoroutine]
