"""Process managers: started, advanced and completed by events, stored like any aggregate.

In memory; tests/sqlalchemy/test_process_sql.py runs the storage-facing rules on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
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

from tactical import (
    Command,
    CommandBus,
    ConcurrencyError,
    DomainEvent,
    EventBus,
    EventHandlerError,
    InMemoryStore,
    InMemoryUnitOfWork,
    ProcessManager,
    ProcessManagerHandler,
)
from tactical._tracking import Change

PRINTED_AT = datetime(2030, 6, 1, 9, tzinfo=UTC)


class Shipping:
    """A bus, a command bus that records what it was asked, and the manager's handler on them."""

    def __init__(self, store: InMemoryStore | None = None) -> None:
        self.store = store if store is not None else InMemoryStore()
        self.events = EventBus()
        self.uow = InMemoryUnitOfWork(self.events, store=self.store)
        self.commands = CommandBus()
        self.dispatched: list[Command[None]] = []
        self.seen_at_dispatch: list[PickupDeadline | None] = []
        for command_type in (DecrementLabelStock, RaiseShipmentException):
            self.commands.register(command_type, self._record)
        self.handler = ProcessManagerHandler(PickupDeadline, self.uow, self.commands)
        self.handler.subscribe(self.events)

    def _record(self, command: Command[None]) -> None:
        self.dispatched.append(command)
        # What a command handler reads: the manager as committed (another unit of work).
        shipment_id: UUID = command.shipment_id if hasattr(command, "shipment_id") else None  # type: ignore[attr-defined]
        if shipment_id is not None:
            self.seen_at_dispatch.append(self.load(shipment_id))

    def load(self, shipment_id: UUID) -> PickupDeadline | None:
        with InMemoryUnitOfWork(store=self.store) as uow:
            return uow.repository(PickupDeadline).get(shipment_id)

    def publish(self, *events: DomainEvent) -> None:
        for event in events:
            self.events.publish(event)


class TestDeclaration:
    def test_handled_event_types_are_read_from_the_decorated_methods(self) -> None:
        """The starting event type comes first, then those that advance the process."""
        assert PickupDeadline.handled_event_types() == (
            LabelPrinted,
            PickupScanned,
            PickupDeadlinePassed,
        )
        shipment_id = uuid4()
        assert PickupDeadline.correlation_key(PickupScanned(shipment_id)) == shipment_id
        assert PickupDeadline.starts_on(LabelPrinted(shipment_id, "DHL"))
        assert not PickupDeadline.starts_on(PickupScanned(shipment_id))

    def test_an_event_it_does_not_handle_is_refused_by_name(self) -> None:
        """handle() of an undeclared event type names it and those the manager handles."""
        manager = PickupDeadline(uuid4())
        with pytest.raises(TypeError, match="PickupDeadline does not handle PickupMissed"):
            manager.handle(PickupMissed(manager.id, "DHL"))

    def test_an_event_of_another_process_is_refused(self) -> None:
        """The event's key must be the manager's id."""
        manager = PickupDeadline(uuid4())
        with pytest.raises(ValueError, match="belongs to process"):
            manager.handle(PickupScanned(uuid4()))

    def test_two_methods_for_one_event_type_are_refused_when_the_class_is_defined(self) -> None:
        """One method per event type: a second is a TypeError naming both."""
        with pytest.raises(TypeError, match="handles PickupScanned twice, in first"):

            class Twice(ProcessManager[UUID]):
                @ProcessManager.starts(PickupScanned, key=lambda e: e.shipment_id)
                def first(self, event: PickupScanned) -> None: ...

                @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)
                def second(self, event: PickupScanned) -> None: ...

    def test_a_subclass_inherits_and_may_override_its_bases_methods(self) -> None:
        """A subclass's method for an event type replaces the base's."""

        class Strict(PickupDeadline):
            @ProcessManager.advances(PickupScanned, key=lambda e: e.shipment_id)
            def scanned_strictly(self, event: PickupScanned) -> None:
                self.missed = True

        manager = Strict(uuid4())
        manager.handle(PickupScanned(manager.id))
        assert manager.missed
        assert not manager.completed
        assert Strict.starts_on(LabelPrinted(manager.id, "DHL"))

    def test_a_non_event_type_is_refused_at_declaration(self) -> None:
        """starts() takes a DomainEvent subclass."""
        with pytest.raises(TypeError, match="DomainEvent subclasses, got <class 'int'>"):
            ProcessManager.starts(int, key=str)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]


class MaybeShipped(DomainEvent):
    shipment_id: UUID | None


class Keyed(ProcessManager[UUID]):
    """Started by an event whose key may be missing."""

    @ProcessManager.starts(MaybeShipped, key=lambda e: e.shipment_id)
    def started(self, event: MaybeShipped) -> None: ...


class TestKey:
    def test_a_key_read_as_none_is_refused_naming_the_method_and_the_event(self) -> None:
        """A key function that reads None cannot name a process: a TypeError says where."""
        event = MaybeShipped(None)
        expected = (
            rf"the key= of Keyed.started\(\) read None from MaybeShipped {event.event_id}, "
            r"which cannot name a process: Keyed ids cannot be None"
        )
        with pytest.raises(TypeError, match=expected):
            Keyed.correlation_key(event)
        handler = ProcessManagerHandler(Keyed, InMemoryUnitOfWork(), CommandBus())
        with pytest.raises(TypeError, match=expected):
            handler(event)

    def test_a_key_of_another_type_than_the_id_is_refused(self) -> None:
        """A str where the manager's ids are UUIDs would start a second process in SQL."""
        event = MaybeShipped(str(uuid4()))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(TypeError, match="Keyed ids are UUID, got str"):
            Keyed.correlation_key(event)


class TestHandle:
    def test_a_duplicate_event_is_applied_once(self) -> None:
        """The second delivery of one event id changes nothing and says so."""
        manager = PickupDeadline(uuid4())
        printed = LabelPrinted(manager.id, "DHL", occurred_at=PRINTED_AT)
        assert manager.handle(printed)
        assert not manager.handle(printed)
        assert manager.pending_commands == (
            DecrementLabelStock("DHL", command_id=manager.pending_commands[0].command_id),
        )
        assert manager.handled_event_ids == [printed.event_id]

    def test_handled_event_ids_keep_the_last_remembered_events(self) -> None:
        """The memory of handled ids is bounded by remembered_events, oldest dropped first."""

        class Short(PickupDeadline):
            remembered_events = 2

        manager = Short(uuid4())
        events = [LabelPrinted(manager.id, "DHL", occurred_at=PRINTED_AT) for _ in range(3)]
        for event in events:
            assert manager.handle(event)
        assert manager.handled_event_ids == [events[1].event_id, events[2].event_id]

    def test_a_completed_manager_ignores_further_events(self) -> None:
        """After complete(), handle() applies nothing, however new the event."""
        manager = PickupDeadline(uuid4())
        manager.handle(PickupScanned(manager.id))
        assert manager.completed
        assert not manager.handle(PickupDeadlinePassed(manager.id))
        assert not manager.missed
        assert manager.pending_events == ()

    def test_dispatch_refuses_what_is_not_a_command(self) -> None:
        """dispatch() takes a Command."""
        with pytest.raises(TypeError, match="dispatch\\(\\) takes a Command, got 'x'"):
            PickupDeadline(uuid4()).dispatch("x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class TestHandler:
    def test_a_starting_event_stores_a_new_manager_and_dispatches_its_commands(self) -> None:
        """LabelPrinted creates the manager under the shipment's id, version 1, then asks for stock."""
        shipping = Shipping()
        shipment_id = uuid4()
        shipping.publish(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert (manager.carrier, manager.version, manager.completed) == ("DHL", 1, False)
        assert [type(c) for c in shipping.dispatched] == [DecrementLabelStock]

    def test_the_timer_it_requests_is_stored_with_it(self) -> None:
        """The deadline is written by the commit that stores the manager, at the printed time plus the window."""
        shipping = Shipping()
        shipment_id = uuid4()
        shipping.publish(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        (timer,) = shipping.store.scheduled()
        assert timer.key == deadline_key(shipment_id)
        assert timer.due_at == PRINTED_AT + PICKUP_WINDOW
        assert timer.message == PickupDeadlinePassed(
            shipment_id, event_id=timer.message.event_id, occurred_at=timer.message.occurred_at
        )

    def test_advancing_and_completing_cancels_the_timer(self) -> None:
        """PickupScanned completes the process and deletes its deadline in the same commit."""
        shipping = Shipping()
        shipment_id = uuid4()
        shipping.publish(
            LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT), PickupScanned(shipment_id)
        )
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert (manager.completed, manager.version) == (True, 2)
        assert shipping.store.scheduled() == ()

    def test_the_fired_deadline_records_an_event_and_raises_an_exception(self) -> None:
        """The timer's message, once due, advances the process: PickupMissed, then the command."""
        shipping = Shipping()
        missed: list[PickupMissed] = []
        shipping.events.subscribe(PickupMissed, missed.append)
        shipment_id = uuid4()
        shipping.publish(LabelPrinted(shipment_id, "UPS", occurred_at=PRINTED_AT))
        for timer in shipping.store.take_due(PRINTED_AT + PICKUP_WINDOW):
            shipping.publish(timer.message)
        assert [m.carrier for m in missed] == ["UPS"]
        assert [type(c) for c in shipping.dispatched] == [
            DecrementLabelStock,
            RaiseShipmentException,
        ]
        # Dispatched after the commit: its handler read the completed manager.
        assert [m.completed if m else None for m in shipping.seen_at_dispatch] == [True]
        # Completed: a late pickup scan changes nothing.
        shipping.publish(PickupScanned(shipment_id))
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert (manager.missed, manager.version) == (True, 2)

    def test_a_duplicate_delivery_is_applied_once(self) -> None:
        """The same LabelPrinted twice: one commit, one command."""
        shipping = Shipping()
        printed = LabelPrinted(uuid4(), "DHL", occurred_at=PRINTED_AT)
        shipping.publish(printed, printed)
        manager = shipping.load(printed.shipment_id)
        assert manager is not None
        assert manager.version == 1
        assert len(shipping.dispatched) == 1

    def test_an_advancing_event_without_a_started_process_is_ignored(self) -> None:
        """A pickup scan for a shipment whose label was never seen stores nothing."""
        shipping = Shipping()
        shipment_id = uuid4()
        shipping.publish(PickupScanned(shipment_id))
        assert shipping.load(shipment_id) is None
        assert shipping.dispatched == []

    def test_commands_are_not_dispatched_when_the_commit_fails(self) -> None:
        """A commit that raises: nothing stored, no command dispatched."""

        class Failing(InMemoryUnitOfWork):
            def _store(self, changes: Sequence[Change]) -> None:
                raise OSError("disk full")

        commands = CommandBus()
        dispatched: list[DecrementLabelStock] = []
        commands.register(DecrementLabelStock, dispatched.append)
        handler = ProcessManagerHandler(PickupDeadline, Failing(), commands)
        with pytest.raises(OSError, match="disk full"):
            handler(LabelPrinted(uuid4(), "DHL"))
        assert dispatched == []

    def test_concurrent_events_conflict_and_are_retried(self) -> None:
        """Two events for one process committed from two units of work: the loser reloads and applies."""
        store = InMemoryStore()
        shipping = Shipping(store)
        shipment_id = uuid4()
        shipping.publish(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        conflicts: list[ConcurrencyError] = []

        class Racing(InMemoryUnitOfWork):
            """Lets the other handler commit first, once, between its load and its store."""

            raced = False

            def _store(self, changes: Sequence[Change]) -> None:
                if not Racing.raced:
                    Racing.raced = True
                    shipping.handler(PickupScanned(shipment_id))
                try:
                    super()._store(changes)
                except ConcurrencyError as conflict:
                    conflicts.append(conflict)
                    raise

        racing = ProcessManagerHandler(PickupDeadline, Racing(store=store), shipping.commands)
        racing(PickupDeadlinePassed(shipment_id))
        assert len(conflicts) == 1
        manager = shipping.load(shipment_id)
        assert manager is not None
        # The scan won; the retried deadline found the process completed and changed nothing.
        assert (manager.completed, manager.missed, manager.version) == (True, False, 2)
        assert [type(c) for c in shipping.dispatched] == [DecrementLabelStock]

    def test_a_duplicate_racing_itself_is_applied_once(self) -> None:
        """The same event from two units of work at once: the retried one finds it handled."""
        store = InMemoryStore()
        shipping = Shipping(store)
        shipment_id = uuid4()
        shipping.publish(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        deadline = PickupDeadlinePassed(shipment_id)

        class Racing(InMemoryUnitOfWork):
            raced = False

            def _store(self, changes: Sequence[Change]) -> None:
                if not Racing.raced:
                    Racing.raced = True
                    shipping.handler(deadline)
                super()._store(changes)

        ProcessManagerHandler(PickupDeadline, Racing(store=store), shipping.commands)(deadline)
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert manager.version == 2
        assert [type(c) for c in shipping.dispatched] == [
            DecrementLabelStock,
            RaiseShipmentException,
        ]

    def test_a_manager_without_defaults_cannot_be_started(self) -> None:
        """Starting builds manager_type(key): a required field is a clear TypeError."""

        class NeedsCarrier(ProcessManager[UUID]):
            carrier: str

            @ProcessManager.starts(LabelPrinted, key=lambda e: e.shipment_id)
            def label_printed(self, event: LabelPrinted) -> None: ...

        handler = ProcessManagerHandler(NeedsCarrier, InMemoryUnitOfWork(), CommandBus())
        with pytest.raises(TypeError, match="give every field but id a default"):
            handler(LabelPrinted(uuid4(), "DHL"))

    def test_the_handler_refuses_what_is_not_a_process_manager(self) -> None:
        """ProcessManagerHandler takes a ProcessManager subclass that handles something."""
        with pytest.raises(TypeError, match="takes a ProcessManager subclass"):
            ProcessManagerHandler(int, InMemoryUnitOfWork(), CommandBus())  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]

        class Idle(ProcessManager[UUID]):
            pass

        with pytest.raises(TypeError, match="Idle declares no event to handle"):
            ProcessManagerHandler(Idle, InMemoryUnitOfWork(), CommandBus())

    def test_a_failing_command_handler_is_reported_under_the_managers_name(self) -> None:
        """The bus's EventHandlerError and log line name the handler by its manager type."""
        shipping = Shipping()

        def refuse(command: DecrementLabelStock) -> None:
            raise RuntimeError("no labels")

        commands = CommandBus()
        commands.register(DecrementLabelStock, refuse)
        events = EventBus()
        handler = ProcessManagerHandler(PickupDeadline, shipping.uow, commands)
        handler.subscribe(events)
        assert repr(handler) == "ProcessManagerHandler(PickupDeadline)"
        with pytest.raises(EventHandlerError) as failure:
            events.publish(LabelPrinted(uuid4(), "DHL"))
        notes = failure.value.exceptions[0].__notes__
        assert any(
            note.startswith("in handler ProcessManagerHandler(PickupDeadline) for LabelPrinted")
            for note in notes
        ), notes
