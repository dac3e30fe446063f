"""A process manager fed through an inbox consumer: one transaction per event, applied once.

Each test runs on SQLite and PostgreSQL as the consuming service's database, with the sync
:class:`InboxConsumer` and the :class:`AsyncInboxConsumer` (``engine`` and ``side``); those
that take ``broker`` receive the messages from the real RabbitMQ and Redis Streams.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import pytest
from tests.outbox.brokers import AMQP_URL, Broker
from tests.outbox.sides import AsyncSide, DrivenInbox, Inbox, Side
from tests.process_model import (
    PICKUP_WINDOW,
    DecrementLabelStock,
    LabelPrinted,
    PickupDeadline,
    PickupDeadlinePassed,
    PickupMissed,
    PickupScanned,
    RaiseShipmentException,
    deadline_key,
)

import sqlalchemy as sa
from tactical import CommandBus, DomainEvent, JsonCodec
from tactical.outbox import (
    AsyncInboxConsumer,
    InboxConsumer,
    OutboxMessage,
    Outcome,
    inbox_table,
)
from tactical.sqlalchemy import (
    AsyncSqlAlchemyUnitOfWork,
    SqlAlchemyUnitOfWork,
    outbox_table,
    scheduled_table,
)

codec = JsonCodec()
PRINTED_AT = datetime(2030, 6, 1, 9, tzinfo=UTC)


def message_of(event: DomainEvent, position: int) -> OutboxMessage:
    """The message a producer's relay would send for ``event`` (of shipment ``position``)."""
    record = codec.event_to_record(event)
    return OutboxMessage(
        position=position,
        event_id=event.event_id,
        event_type=record.type_name,
        event_version=record.schema_version,
        aggregate_type="shipping.Shipment",
        aggregate_id=str(getattr(event, "shipment_id", "")),
        aggregate_version=position,
        payload=record.payload,
        occurred_at=event.occurred_at,
    )


@dataclass
class Dispatched:
    """A command bus whose handlers note every command they were given."""

    commands: CommandBus = field(default_factory=CommandBus)
    seen: list[Any] = field(default_factory=list[Any])
    fail_on: type[Any] | None = None

    def __post_init__(self) -> None:
        self.commands.register(DecrementLabelStock, self.note)
        self.commands.register(RaiseShipmentException, self.note)

    def note(self, command: Any) -> None:
        if type(command) is self.fail_on:
            raise RuntimeError(f"the command handler refused {type(command).__name__}")
        self.seen.append(command)

    def kinds(self) -> list[str]:
        return [type(c).__name__ for c in self.seen]


def load(engine: sa.Engine, shipment_id: UUID) -> PickupDeadline | None:
    with SqlAlchemyUnitOfWork(engine) as uow:
        return uow.repository(PickupDeadline).get(shipment_id)


def inbox_rows(engine: sa.Engine, consumer: str) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).where(inbox_table.c.consumer == consumer)
        ).scalar_one()


def timer_keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(scheduled_table.c.key)).scalars())


def outbox_types(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(outbox_table.c.event_type).order_by(outbox_table.c.position)
            ).scalars()
        )


def fed(side: Side, engine: sa.Engine, dispatched: Dispatched, **options: Any) -> Inbox:
    """The side's inbox consumer on ``engine`` with PickupDeadline subscribed to it."""
    inbox = side.inbox(engine, f"pickup-{uuid4().hex[:8]}", **options)
    inbox.subscribe_process_manager(PickupDeadline, dispatched.commands)
    return inbox


class TestFedThroughTheInbox:
    def test_a_message_handled_twice_is_applied_once(self, engine: sa.Engine, side: Side) -> None:
        """The same message twice: the manager, its timer and its command once, then a duplicate."""
        dispatched = Dispatched()
        inbox = fed(side, engine, dispatched)
        shipment = uuid4()
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        assert inbox.handle(printed) is Outcome.HANDLED
        assert inbox.handle(printed) is Outcome.DUPLICATE
        manager = load(engine, shipment)
        assert manager is not None
        assert (manager.version, manager.carrier) == (1, "DHL")
        assert manager.handled_event_ids == [printed.event_id]
        assert inbox_rows(engine, inbox.name) == 1
        assert timer_keys(engine) == [deadline_key(shipment)]
        assert [(type(c), c.carrier) for c in dispatched.seen] == [(DecrementLabelStock, "DHL")]

    def test_a_process_runs_to_its_end_with_its_events_in_the_outbox(
        self, engine: sa.Engine, side: Side
    ) -> None:
        """Deadline passed: the event it records is in the consumer's outbox, its command dispatched."""
        dispatched = Dispatched()
        inbox = fed(side, engine, dispatched)
        shipment = uuid4()
        handled = [
            inbox.handle(message_of(event, position))
            for position, event in enumerate(
                [
                    LabelPrinted(shipment, "UPS", occurred_at=PRINTED_AT),
                    PickupDeadlinePassed(shipment, occurred_at=PRINTED_AT + PICKUP_WINDOW),
                    PickupScanned(shipment),  # too late: the process is over
                ],
                start=1,
            )
        ]
        assert handled == [Outcome.HANDLED] * 3
        manager = load(engine, shipment)
        assert manager is not None
        assert (manager.completed, manager.missed, manager.version) == (True, True, 2)
        assert outbox_types(engine) == [codec.type_name(PickupMissed)]
        assert dispatched.kinds() == ["DecrementLabelStock", "RaiseShipmentException"]
        assert inbox_rows(engine, inbox.name) == 3

    def test_commands_are_dispatched_after_the_inbox_commit(
        self, engine: sa.Engine, side: Side
    ) -> None:
        """A command handler sees the manager, the inbox row and the timer already committed."""
        dispatched = Dispatched()
        shipment = uuid4()
        seen_committed: list[tuple[int | None, int, list[str]]] = []

        def decrement(command: DecrementLabelStock) -> None:
            manager = load(engine, shipment)
            seen_committed.append(
                (
                    None if manager is None else manager.version,
                    inbox_rows(engine, inbox.name),
                    timer_keys(engine),
                )
            )

        dispatched.commands = CommandBus()
        dispatched.commands.register(DecrementLabelStock, decrement)
        inbox = fed(side, engine, dispatched)
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        assert inbox.handle(printed) is Outcome.HANDLED
        assert seen_committed == [(1, 1, [deadline_key(shipment)])]

    def test_a_handler_failure_rolls_back_the_manager_the_inbox_row_and_the_timer(
        self, engine: sa.Engine, side: Side
    ) -> None:
        """Retried, then parked: no manager, no inbox row, no timer, no command; retried later, once."""
        dispatched = Dispatched()
        inbox = fed(side, engine, dispatched, max_attempts=2, retry_delay=0)
        calls: list[UUID] = []
        broken = threading.Event()
        broken.set()

        def audit(event: LabelPrinted, uow: Any) -> None:
            calls.append(event.event_id)
            if broken.is_set():
                raise RuntimeError("the audit log is unavailable")

        inbox.subscribe(LabelPrinted, audit)  # after the manager: it has handled the event
        shipment = uuid4()
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        assert inbox.handle(printed) is Outcome.PARKED
        assert len(calls) == 2
        assert load(engine, shipment) is None
        assert inbox_rows(engine, inbox.name) == 0
        assert timer_keys(engine) == []
        assert dispatched.seen == []
        broken.clear()
        assert inbox.retry_parked() == {Outcome.HANDLED: 1}
        manager = load(engine, shipment)
        assert manager is not None
        assert manager.version == 1
        assert (inbox_rows(engine, inbox.name), timer_keys(engine)) == (1, [deadline_key(shipment)])
        assert dispatched.kinds() == ["DecrementLabelStock"]

    def test_a_failing_command_is_logged_and_the_message_stays_handled(
        self, engine: sa.Engine, side: Side, caplog: pytest.LogCaptureFixture
    ) -> None:
        """The commit stands: HANDLED, the failure logged at ERROR, a redelivery a duplicate."""
        dispatched = Dispatched(fail_on=DecrementLabelStock)
        inbox = fed(side, engine, dispatched)
        shipment = uuid4()
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        with caplog.at_level(logging.ERROR, logger="tactical.outbox"):
            assert inbox.handle(printed) is Outcome.HANDLED
        (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "dispatching DecrementLabelStock" in logged.getMessage()
        assert "was handled and committed" in logged.getMessage()
        assert load(engine, shipment) is not None
        assert inbox.handle(printed) is Outcome.DUPLICATE
        assert dispatched.seen == []

    def test_an_advancing_event_of_a_process_never_started_is_handled_and_changes_nothing(
        self, engine: sa.Engine, side: Side
    ) -> None:
        """Ignored by the manager, the message is still recorded in the inbox, nothing stored."""
        dispatched = Dispatched()
        inbox = fed(side, engine, dispatched)
        shipment = uuid4()
        assert inbox.handle(message_of(PickupScanned(shipment), 1)) is Outcome.HANDLED
        assert load(engine, shipment) is None
        assert inbox_rows(engine, inbox.name) == 1
        assert dispatched.seen == []

    def test_async_command_handlers_are_awaited_by_the_async_consumer(
        self, sqlite_engine: sa.Engine
    ) -> None:
        """AsyncInboxConsumer dispatches with dispatch_async: an async def handler is awaited."""
        side = AsyncSide()
        try:
            commands = CommandBus()
            seen: list[str] = []

            async def decrement(command: DecrementLabelStock) -> None:
                seen.append(command.carrier)

            commands.register(DecrementLabelStock, decrement)
            inbox = side.inbox(sqlite_engine, "pickup-async")
            inbox.subscribe_process_manager(PickupDeadline, commands)
            printed = message_of(LabelPrinted(uuid4(), "DPD", occurred_at=PRINTED_AT), 1)
            assert inbox.handle(printed) is Outcome.HANDLED
            assert seen == ["DPD"]
        finally:
            side.close()


def at_once(inboxes: Sequence[Inbox], messages: Sequence[OutboxMessage]) -> list[Outcome]:
    """Each inbox handles its message in a thread of its own, all starting together."""
    start = threading.Barrier(len(inboxes))
    outcomes: list[Outcome | BaseException] = [RuntimeError("not handled")] * len(inboxes)

    def feed(index: int) -> None:
        start.wait(10)
        try:
            outcomes[index] = inboxes[index].handle(messages[index])
        except BaseException as failure:
            outcomes[index] = failure

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(len(inboxes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    handled = [o for o in outcomes if isinstance(o, Outcome)]
    assert len(handled) == len(outcomes), outcomes
    return handled


class Instances(NamedTuple):
    """Two instances of one consumer (one inbox name), PickupDeadline subscribed to each."""

    name: str
    inboxes: list[Inbox]
    dispatched: Dispatched


@pytest.fixture
def instances(engine: sa.Engine, side: Side) -> Instances:
    dispatched = Dispatched()
    name = f"pickup-{uuid4().hex[:8]}"
    inboxes = [side.inbox(engine, name, retry_delay=0.001) for _ in range(2)]
    for inbox in inboxes:
        inbox.subscribe_process_manager(PickupDeadline, dispatched.commands)
    return Instances(name, inboxes, dispatched)


@pytest.mark.filterwarnings("error")
class TestConcurrentDeliveries:
    def test_two_copies_handled_at_once_are_applied_once(
        self, engine: sa.Engine, instances: Instances
    ) -> None:
        """Two consumer instances get the same message at once: one applies it, one finds it done."""
        name, inboxes, dispatched = instances
        shipment = uuid4()
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        outcomes = at_once(inboxes, [printed, printed])
        assert sorted(o.value for o in outcomes) == ["duplicate", "handled"]
        manager = load(engine, shipment)
        assert manager is not None
        assert manager.version == 1
        assert dispatched.kinds() == ["DecrementLabelStock"]
        assert (inbox_rows(engine, name), timer_keys(engine)) == (1, [deadline_key(shipment)])

    def test_two_events_of_one_process_at_once_are_applied_one_after_the_other(
        self, engine: sa.Engine, instances: Instances
    ) -> None:
        """A scan racing the deadline: the second sees what the first stored (no lost update)."""
        name, inboxes, dispatched = instances
        shipment = uuid4()
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        assert inboxes[0].handle(printed) is Outcome.HANDLED
        scanned = message_of(PickupScanned(shipment), 2)
        deadline = message_of(PickupDeadlinePassed(shipment), 3)
        assert at_once(inboxes, [scanned, deadline]) == [Outcome.HANDLED] * 2
        manager = load(engine, shipment)
        assert manager is not None
        # The first applied completes the process; the second finds it completed.
        assert (manager.version, manager.completed) == (2, True)
        (first,) = manager.handled_event_ids[1:]
        if first == deadline.event_id:
            assert manager.missed
            assert dispatched.kinds() == ["DecrementLabelStock", "RaiseShipmentException"]
            assert timer_keys(engine) == [deadline_key(shipment)]
        else:
            assert first == scanned.event_id
            assert not manager.missed
            assert dispatched.kinds() == ["DecrementLabelStock"]
            assert timer_keys(engine) == []
        assert inbox_rows(engine, name) == 3


class TestRefusals:
    @pytest.mark.parametrize("consumer_type", [InboxConsumer, AsyncInboxConsumer])
    def test_what_is_not_a_process_manager_or_a_command_bus_is_refused(
        self, consumer_type: type[Any]
    ) -> None:
        """A clear TypeError at subscription, naming the method and what was given."""
        consumer = consumer_type(lambda: None, "pickup")
        with pytest.raises(
            TypeError, match=r"subscribe_process_manager\(\) takes a ProcessManager"
        ):
            consumer.subscribe_process_manager(LabelPrinted, CommandBus())
        with pytest.raises(TypeError, match=r"takes a CommandBus to dispatch to, got 'bus'"):
            consumer.subscribe_process_manager(PickupDeadline, "bus")


class ConsumerDied(BaseException):
    """The consuming process dies: after the inbox commit, before the broker heard of it."""


class DyingInbox(InboxConsumer[SqlAlchemyUnitOfWork]):
    """An inbox consumer whose process dies after handling its first message."""

    dies = True
    outcomes: list[Outcome]

    def handle(self, message: OutboxMessage) -> Outcome:
        outcome = super().handle(message)
        self.outcomes.append(outcome)
        if self.dies:
            self.dies = False
            raise ConsumerDied(f"died after {outcome.value}, before the ack")
        return outcome


class DyingAsyncInbox(AsyncInboxConsumer[AsyncSqlAlchemyUnitOfWork]):
    """The async :class:`DyingInbox`."""

    dies = True
    outcomes: list[Outcome]

    async def handle(self, message: OutboxMessage) -> Outcome:
        outcome = await super().handle(message)
        self.outcomes.append(outcome)
        if self.dies:
            self.dies = False
            raise ConsumerDied(f"died after {outcome.value}, before the ack")
        return outcome


def dying(side: Side, engine: sa.Engine, outcomes: list[Outcome]) -> Inbox:
    """The side's inbox consumer that dies once, noting the outcome of every message."""
    name = f"pickup-{uuid4().hex[:8]}"
    if isinstance(side, AsyncSide):
        database = side.async_engine(engine)
        made = DyingAsyncInbox(lambda: AsyncSqlAlchemyUnitOfWork(database), name)
        made.outcomes = outcomes
        return DrivenInbox(side, made)
    inbox = DyingInbox(lambda: SqlAlchemyUnitOfWork(engine), name)
    inbox.outcomes = outcomes
    return inbox


@dataclass
class Feed:
    """A broker consumer (of the side) feeding an inbox, made again after its process died."""

    side: Side
    broker: Broker
    request: pytest.FixtureRequest
    inbox: Inbox
    consumer: Any = None
    deaths: int = 0

    def __post_init__(self) -> None:
        self.consumer = self._start()

    def _start(self) -> Any:
        if self.broker.name == "rabbitmq":
            rabbit = self.request.getfixturevalue("rabbit")
            return self.side.rabbit_consumer(
                self.inbox, AMQP_URL, queue=rabbit.queue, exchange=rabbit.exchange
            )
        return self.side.redis_consumer(
            self.inbox,
            self.request.getfixturevalue("redis_client"),
            stream=self.request.getfixturevalue("stream_name"),
        )

    def consume(self) -> int:
        """Handle what the broker holds; a dead consumer is closed and started again."""
        try:
            if self.broker.name == "rabbitmq":
                return int(self.consumer.consume_available(idle_timeout=0.3))
            return int(self.consumer.consume_available())
        except ConsumerDied:
            self.deaths += 1
            self.close()
            self.consumer = self._start()
            return 1

    def drain(self) -> None:
        while self.consume():
            pass

    def close(self) -> None:
        if self.broker.name == "rabbitmq":
            self.consumer.close()


@pytest.fixture
def feeds(broker: Broker) -> Iterator[list[Feed]]:
    """The feeds a test made, closed after it."""
    made: list[Feed] = []
    yield made
    for feed in made:
        feed.close()


def publish(broker: Broker, messages: Sequence[OutboxMessage]) -> None:
    broker.publisher(broker.port).publish(messages)


class TestFedFromABroker:
    def test_a_message_delivered_twice_is_applied_once(
        self,
        engine: sa.Engine,
        side: Side,
        broker: Broker,
        feeds: list[Feed],
        request: pytest.FixtureRequest,
    ) -> None:
        """A relay's resent copy reaches the consumer twice: one manager change, one command."""
        dispatched = Dispatched()
        inbox = fed(side, engine, dispatched)
        feeds.append(feed := Feed(side, broker, request, inbox))
        shipment = uuid4()
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        publish(broker, [printed, printed, message_of(PickupScanned(shipment), 2)])
        feed.drain()
        manager = load(engine, shipment)
        assert manager is not None
        assert (manager.completed, manager.version) == (True, 2)
        assert dispatched.kinds() == ["DecrementLabelStock"]
        assert inbox_rows(engine, inbox.name) == 2
        assert timer_keys(engine) == []  # scheduled, then cancelled by the scan
        assert broker.unacknowledged(inbox.name) == 0

    def test_a_message_redelivered_after_the_consumer_died_before_the_ack_is_applied_once(
        self,
        engine: sa.Engine,
        side: Side,
        broker: Broker,
        feeds: list[Feed],
        request: pytest.FixtureRequest,
    ) -> None:
        """Committed, never acknowledged: the broker redelivers it, the inbox finds it done."""
        dispatched = Dispatched()
        outcomes: list[Outcome] = []
        inbox = dying(side, engine, outcomes)
        inbox.subscribe_process_manager(PickupDeadline, dispatched.commands)
        feeds.append(feed := Feed(side, broker, request, inbox))
        shipment = uuid4()
        printed = message_of(LabelPrinted(shipment, "DHL", occurred_at=PRINTED_AT), 1)
        deadline = message_of(PickupDeadlinePassed(shipment), 2)
        publish(broker, [printed, deadline])
        feed.drain()
        assert feed.deaths == 1
        assert outcomes.count(Outcome.DUPLICATE) == 1  # the copy redelivered after the death
        assert outcomes.count(Outcome.HANDLED) == 2
        manager = load(engine, shipment)
        assert manager is not None
        assert (manager.missed, manager.version) == (True, 2)
        assert manager.handled_event_ids == [printed.event_id, deadline.event_id]
        assert dispatched.kinds() == ["DecrementLabelStock", "RaiseShipmentException"]
        assert inbox_rows(engine, inbox.name) == 2
        assert timer_keys(engine) == [deadline_key(shipment)]  # fired by hand, still stored
        assert broker.unacknowledged(inbox.name) == 0
