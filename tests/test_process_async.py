"""AsyncProcessManagerHandler next to ProcessManagerHandler: one suite, both handlers, in memory.

Each test runs with the sync handler on an InMemoryUnitOfWork and with the async one on an
AsyncInMemoryUnitOfWork over the same kind of store: both carry out one shared flow, so
they must agree on every outcome. Races are made on the event loop: both deliveries load
the same version, then meet at a barrier before either stores (bounded by a timeout).
tests/sqlalchemy/test_process_async_sql.py runs the async handler on aiosqlite, psycopg and
asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
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
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    AsyncProcessManagerHandler,
    Command,
    CommandBus,
    ConcurrencyError,
    DomainEvent,
    EventBus,
    InMemoryStore,
    InMemoryUnitOfWork,
    ProcessManager,
    ProcessManagerHandler,
)
from tactical._tracking import Change

PRINTED_AT = datetime(2030, 6, 1, 9, tzinfo=UTC)
KINDS = ["sync", "async"]


class Shipping:
    """A store, a bus, a command bus that records what it was asked, and the handler of one kind."""

    def __init__(
        self, kind: str, uow: Callable[[], Any] | None = None, store: InMemoryStore | None = None
    ) -> None:
        self.kind = kind
        self.store = store if store is not None else InMemoryStore()
        self.events = EventBus()
        self.commands = CommandBus()
        self.dispatched: list[Command[None]] = []
        self.seen_at_dispatch: list[PickupDeadline | None] = []
        if kind == "sync":
            self.commands.register(DecrementLabelStock, self._record)
            self.commands.register(RaiseShipmentException, self._record)
            self.handler: Any = ProcessManagerHandler(
                PickupDeadline, uow or self.new_uow(), self.commands
            )
        else:
            # Async command handlers: dispatch_async awaits them.
            self.commands.register(DecrementLabelStock, self._record_async)
            self.commands.register(RaiseShipmentException, self._record_async)
            self.handler = AsyncProcessManagerHandler(
                PickupDeadline, uow or self.new_uow(), self.commands
            )
        self.handler.subscribe(self.events)

    def new_uow(self, cls: type[Any] | None = None) -> Any:
        """A unit of work of this kind on the shared store and bus."""
        if cls is None:
            cls = InMemoryUnitOfWork if self.kind == "sync" else AsyncInMemoryUnitOfWork
        return cls(self.events, store=self.store)

    def _record(self, command: Command[None]) -> None:
        self.dispatched.append(command)
        if isinstance(command, RaiseShipmentException):
            # What a command handler reads: the manager as committed.
            self.seen_at_dispatch.append(self.load(command.shipment_id))

    async def _record_async(self, command: Command[None]) -> None:
        await asyncio.sleep(0)
        self._record(command)

    def load(self, shipment_id: UUID) -> PickupDeadline | None:
        with InMemoryUnitOfWork(store=self.store) as uow:
            return uow.repository(PickupDeadline).get(shipment_id)

    async def publish(self, *events: DomainEvent) -> None:
        for event in events:
            if self.kind == "sync":
                self.events.publish(event)
            else:
                await self.events.publish_async(event)

    async def deliver(self, handler: Any, event: DomainEvent) -> None:
        """Call ``handler`` directly, awaiting it if it is async."""
        result = handler(event)
        if self.kind == "async":
            await result


class Notifying(ProcessManager[UUID]):
    """Asks for two commands when a label is printed."""

    carrier: str = ""

    @ProcessManager.starts(LabelPrinted, key=lambda e: e.shipment_id)
    def label_printed(self, event: LabelPrinted) -> None:
        self.carrier = event.carrier
        self.dispatch(DecrementLabelStock(event.carrier))
        self.dispatch(RaiseShipmentException(self.id, "label printed"))


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


class Barrier:
    """Holds the first ``parties`` stores until all have arrived: they all loaded the same state."""

    def __init__(self, parties: int = 2) -> None:
        self.parties = parties
        self.arrived = 0
        self.all_here = asyncio.Event()
        self.conflicts: list[ConcurrencyError] = []

    async def wait(self) -> None:
        if self.arrived >= self.parties:
            return
        self.arrived += 1
        if self.arrived == self.parties:
            self.all_here.set()
        async with asyncio.timeout(10):
            await self.all_here.wait()


def racing_uow(barrier: Barrier) -> type[AsyncInMemoryUnitOfWork]:
    class Racing(AsyncInMemoryUnitOfWork):
        async def _store(self, changes: Sequence[Change]) -> None:
            await barrier.wait()
            try:
                await super()._store(changes)
            except ConcurrencyError as conflict:
                barrier.conflicts.append(conflict)
                raise

    return Racing


class TestBothHandlers:
    async def test_a_starting_event_stores_the_manager_and_its_timer_then_dispatches(
        self, kind: str
    ) -> None:
        """LabelPrinted: manager version 1 and its deadline in one commit, then the command."""
        shipping = Shipping(kind)
        shipment_id = uuid4()
        await shipping.publish(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert (manager.carrier, manager.version, manager.completed) == ("DHL", 1, False)
        (timer,) = shipping.store.scheduled()
        assert (timer.key, timer.due_at) == (deadline_key(shipment_id), PRINTED_AT + PICKUP_WINDOW)
        assert [type(c) for c in shipping.dispatched] == [DecrementLabelStock]

    async def test_advancing_and_completing_cancels_the_timer(self, kind: str) -> None:
        """PickupScanned completes the process and deletes its deadline in the same commit."""
        shipping = Shipping(kind)
        shipment_id = uuid4()
        await shipping.publish(
            LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT), PickupScanned(shipment_id)
        )
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert (manager.completed, manager.version) == (True, 2)
        assert shipping.store.scheduled() == ()

    async def test_the_fired_deadline_records_an_event_and_dispatches_after_the_commit(
        self, kind: str
    ) -> None:
        """The timer's message advances the process: PickupMissed published, then the command."""
        shipping = Shipping(kind)
        missed: list[PickupMissed] = []
        shipping.events.subscribe(PickupMissed, missed.append)
        shipment_id = uuid4()
        await shipping.publish(LabelPrinted(shipment_id, "UPS", occurred_at=PRINTED_AT))
        for timer in shipping.store.take_due(PRINTED_AT + PICKUP_WINDOW):
            await shipping.publish(timer.message)
        assert [m.carrier for m in missed] == ["UPS"]
        assert [type(c) for c in shipping.dispatched] == [
            DecrementLabelStock,
            RaiseShipmentException,
        ]
        assert [m.completed if m else None for m in shipping.seen_at_dispatch] == [True]

    async def test_a_duplicate_delivery_is_applied_once(self, kind: str) -> None:
        """The same LabelPrinted twice, one after the other: one commit, one command."""
        shipping = Shipping(kind)
        printed = LabelPrinted(uuid4(), "DHL", occurred_at=PRINTED_AT)
        await shipping.publish(printed, printed)
        manager = shipping.load(printed.shipment_id)
        assert manager is not None
        assert manager.version == 1
        assert len(shipping.dispatched) == 1

    async def test_an_advancing_event_without_a_started_process_is_ignored(self, kind: str) -> None:
        """A pickup scan for a label never seen stores nothing and dispatches nothing."""
        shipping = Shipping(kind)
        shipment_id = uuid4()
        await shipping.publish(PickupScanned(shipment_id))
        assert shipping.load(shipment_id) is None
        assert shipping.dispatched == []

    async def test_commands_are_not_dispatched_when_the_commit_fails(self, kind: str) -> None:
        """A commit that raises: nothing stored, no timer, no command."""

        class Failing(InMemoryUnitOfWork):
            def _store(self, changes: Sequence[Change]) -> None:
                raise OSError("disk full")

        class AsyncFailing(AsyncInMemoryUnitOfWork):
            async def _store(self, changes: Sequence[Change]) -> None:
                raise OSError("disk full")

        shipping = Shipping(kind)
        failing = shipping.new_uow(Failing if kind == "sync" else AsyncFailing)
        handler = type(shipping.handler)(PickupDeadline, failing, shipping.commands)
        shipment_id = uuid4()
        with pytest.raises(OSError, match="disk full"):
            await shipping.deliver(handler, LabelPrinted(shipment_id, "DHL"))
        assert shipping.load(shipment_id) is None
        assert shipping.store.scheduled() == ()
        assert shipping.dispatched == []

    async def test_a_failing_command_handler_leaves_the_others_dispatched(self, kind: str) -> None:
        """The first command's handler raises: the second is dispatched, then the error raised."""
        commands = CommandBus()
        seen: list[RaiseShipmentException] = []

        def refuse(command: DecrementLabelStock) -> None:
            raise RuntimeError(f"no labels for {command.carrier}")

        commands.register(DecrementLabelStock, refuse)
        commands.register(RaiseShipmentException, seen.append)
        store = InMemoryStore()
        handler: Any = (
            ProcessManagerHandler(Notifying, InMemoryUnitOfWork(store=store), commands)
            if kind == "sync"
            else AsyncProcessManagerHandler(
                Notifying, AsyncInMemoryUnitOfWork(store=store), commands
            )
        )
        shipment_id = uuid4()

        async def deliver() -> None:
            result = handler(LabelPrinted(shipment_id, "DHL"))
            if kind == "async":
                await result

        with pytest.raises(RuntimeError, match="no labels for DHL") as raised:
            await deliver()
        assert [c.shipment_id for c in seen] == [shipment_id]
        notes = getattr(raised.value, "__notes__", [])
        assert any("DecrementLabelStock" in note for note in notes), notes
        with InMemoryUnitOfWork(store=store) as uow:
            assert uow.repository(Notifying).require(shipment_id).carrier == "DHL"

    async def test_a_factory_gives_a_new_unit_of_work_for_each_attempt(self, kind: str) -> None:
        """Passed a callable, the handler calls it once per delivery (and per retry)."""
        made: list[object] = []
        store = InMemoryStore()

        def new() -> Any:
            uow = shipping.new_uow()
            made.append(uow)
            return uow

        shipping = Shipping(kind, uow=new, store=store)
        shipment_id = uuid4()
        await shipping.publish(
            LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT), PickupScanned(shipment_id)
        )
        assert len(made) == 2
        assert made[0] is not made[1]
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert manager.completed


class Shipment(AggregateRoot[UUID]):
    """Records LabelPrinted, so that a unit of work's own commit publishes it."""

    def print_label(self, carrier: str) -> None:
        self.record(LabelPrinted(self.id, carrier, occurred_at=PRINTED_AT))


class TestAsyncHandler:
    async def test_it_may_use_the_unit_of_work_whose_commit_published_the_event(self) -> None:
        """A service's async block records LabelPrinted; the handler then reuses that unit of work."""
        shipping = Shipping("async")
        bus = EventBus()
        uow = AsyncInMemoryUnitOfWork(bus, store=shipping.store)
        handler = AsyncProcessManagerHandler(PickupDeadline, uow, shipping.commands)
        handler.subscribe(bus)
        shipment = Shipment(uuid4())
        async with uow:
            uow.repository(Shipment).add(shipment)
            shipment.print_label("DHL")
            await uow.commit()
        manager = shipping.load(shipment.id)
        assert manager is not None
        assert manager.carrier == "DHL"
        assert [type(c) for c in shipping.dispatched] == [DecrementLabelStock]

    async def test_concurrent_events_of_one_process_conflict_and_the_loser_retries(self) -> None:
        """A pickup scan and the deadline, loaded together: one conflict, then the scan's state."""
        barrier = Barrier()
        shipping = Shipping("async")
        shipment_id = uuid4()
        await shipping.publish(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        racing = AsyncProcessManagerHandler(
            PickupDeadline, lambda: shipping.new_uow(racing_uow(barrier)), shipping.commands
        )
        await asyncio.gather(
            racing(PickupScanned(shipment_id)), racing(PickupDeadlinePassed(shipment_id))
        )
        assert len(barrier.conflicts) == 1
        manager = shipping.load(shipment_id)
        assert manager is not None
        # Either event completes the process: the loser's retry reloads, finds it
        # completed and commits nothing. One winner, whichever it was.
        assert (manager.completed, manager.version) == (True, 2)
        assert len(manager.handled_event_ids) == 2
        exceptions = [c for c in shipping.dispatched if isinstance(c, RaiseShipmentException)]
        if manager.missed:  # the deadline won: its command, and its timer left as it was
            assert len(exceptions) == 1
            assert [t.key for t in shipping.store.scheduled()] == [deadline_key(shipment_id)]
        else:  # the scan won: no exception, the deadline cancelled
            assert exceptions == []
            assert shipping.store.scheduled() == ()

    async def test_the_same_event_delivered_twice_at_once_is_applied_once(self) -> None:
        """Two tasks deliver one deadline: the retried one reloads and finds it handled."""
        barrier = Barrier()
        shipping = Shipping("async")
        shipment_id = uuid4()
        await shipping.publish(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        racing = AsyncProcessManagerHandler(
            PickupDeadline, lambda: shipping.new_uow(racing_uow(barrier)), shipping.commands
        )
        deadline = PickupDeadlinePassed(shipment_id)
        await asyncio.gather(racing(deadline), racing(deadline))
        assert len(barrier.conflicts) == 1
        manager = shipping.load(shipment_id)
        assert manager is not None
        assert (manager.missed, manager.version) == (True, 2)
        assert [type(c) for c in shipping.dispatched] == [
            DecrementLabelStock,
            RaiseShipmentException,
        ]

    async def test_a_starting_event_delivered_twice_at_once_starts_one_process(self) -> None:
        """Two tasks start the same process: both add it, one insert conflicts and is retried."""
        barrier = Barrier()
        shipping = Shipping("async")
        racing = AsyncProcessManagerHandler(
            PickupDeadline, lambda: shipping.new_uow(racing_uow(barrier)), shipping.commands
        )
        printed = LabelPrinted(uuid4(), "DHL", occurred_at=PRINTED_AT)
        await asyncio.gather(racing(printed), racing(printed))
        assert len(barrier.conflicts) == 1
        manager = shipping.load(printed.shipment_id)
        assert manager is not None
        assert manager.version == 1
        assert len(shipping.store.scheduled()) == 1
        assert [type(c) for c in shipping.dispatched] == [DecrementLabelStock]

    async def test_the_sync_publish_refuses_it(self) -> None:
        """Subscribed to a bus, it is an async handler: publish() cannot run it, and says so."""
        shipping = Shipping("async")
        with pytest.raises(TypeError, match="async"):
            shipping.events.publish(LabelPrinted(uuid4(), "DHL"))
        assert shipping.dispatched == []

    def test_bad_arguments_are_refused_by_name(self) -> None:
        """A non-manager, a sync unit of work's absence, a missing command bus: TypeErrors."""
        uow = AsyncInMemoryUnitOfWork()
        with pytest.raises(TypeError, match="AsyncProcessManagerHandler takes a ProcessManager"):
            AsyncProcessManagerHandler(int, uow, CommandBus())  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
        with pytest.raises(TypeError, match="takes an AsyncUnitOfWork or a callable"):
            AsyncProcessManagerHandler(PickupDeadline, 42, CommandBus())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(TypeError, match="takes a CommandBus to dispatch to, got None"):
            AsyncProcessManagerHandler(PickupDeadline, uow, None)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        with pytest.raises(TypeError, match="ProcessManagerHandler takes a UnitOfWork or"):
            ProcessManagerHandler(PickupDeadline, 42, CommandBus())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
