"""The in-memory unit of work passes the unit-of-work contract, plus its own specifics."""

from __future__ import annotations

import dataclasses
import threading
import warnings
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, NewType, TypeVar
from uuid import UUID, uuid4

import pytest

from tactical import (
    AggregateRoot,
    EventBus,
    EventHandlerError,
    InMemoryStore,
    InMemoryUnitOfWork,
    UncommittedChangesWarning,
)
from tactical._structural import structural_state
from tactical._tracking import Change
from tactical.testing import (
    Counter,
    CounterTicked,
    Tag,
    Tally,
    UnitOfWorkContract,
    UnitOfWorkFactory,
)


class TestInMemoryUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        store = InMemoryStore()

        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> InMemoryUnitOfWork:
            return InMemoryUnitOfWork(
                bus, store=store, allow_multiple_aggregates=allow_multiple_aggregates
            )

        return factory

    def test_separate_stores_share_nothing(self) -> None:
        """Units of work without a shared store do not see each other's commits."""
        counter = Counter(uuid4(), "private")
        with InMemoryUnitOfWork() as first:
            first.repository(Counter).add(counter)
            first.commit()
        assert len(first.store) == 1
        with InMemoryUnitOfWork() as second:
            assert second.repository(Counter).get(counter.id) is None

    def test_objects_handed_out_are_private_copies(self) -> None:
        """Mutating an aggregate after commit does not reach into the store."""
        store = InMemoryStore()
        counter = Counter(uuid4(), "copy")
        with InMemoryUnitOfWork(store=store) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        counter.tallies.append(Tally(1))
        # Changed after its commit and saved nowhere: reported when that unit of work goes.
        with pytest.warns(UncommittedChangesWarning, match="garbage-collected"):
            del uow
        with InMemoryUnitOfWork(store=store) as uow:
            assert uow.repository(Counter).require(counter.id).tallies == []

    def test_stored_copies_hold_no_events_and_the_committer_publishes_them(self) -> None:
        """Events recorded before commit are published once; a later load carries none."""
        store = InMemoryStore()
        counter = Counter(uuid4(), "events")
        with InMemoryUnitOfWork(store=store) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        bus = EventBus()
        seen: list[CounterTicked] = []
        bus.subscribe(CounterTicked, seen.append)
        with InMemoryUnitOfWork(bus, store=store) as uow:
            loaded = uow.repository(Counter).require(counter.id)
            loaded.tick()
            loaded.tick()
            uow.commit()
        assert [e.count for e in seen] == [1, 2]
        with InMemoryUnitOfWork(store=store) as uow:
            again = uow.repository(Counter).require(counter.id)
            assert again.count == 2
            assert again.pending_events == ()

    def test_the_default_bus_is_exposed(self) -> None:
        """Without a bus argument the unit of work makes its own, reachable as .bus."""
        uow = InMemoryUnitOfWork()
        assert isinstance(uow.bus, EventBus)
        shared = EventBus()
        assert InMemoryUnitOfWork(shared).bus is shared

    def test_concurrent_threads_never_lose_an_update(self) -> None:
        """Threads incrementing one counter with retries end at exactly the number of increments."""
        from tactical import retry_on_conflict

        store = InMemoryStore()
        counter = Counter(uuid4(), "shared")
        with InMemoryUnitOfWork(store=store) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()

        def increment() -> None:
            uow = InMemoryUnitOfWork(store=store)
            with uow:
                uow.repository(Counter).require(counter.id).tick()
                uow.commit()

        def worker() -> None:
            for _ in range(25):
                retry_on_conflict(increment, attempts=200, base_delay=0.0005)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with InMemoryUnitOfWork(store=store) as uow:
            stored = uow.repository(Counter).require(counter.id)
        assert (stored.count, stored.version) == (100, 101)

    def test_rollback_outside_a_block_is_refused(self) -> None:
        """rollback() needs an open transaction."""
        with pytest.raises(RuntimeError, match="not in a transaction"):
            InMemoryUnitOfWork().rollback()

    def test_rollback_after_commit_is_a_no_op(self) -> None:
        """Once committed, rollback() changes nothing."""
        store = InMemoryStore()
        counter = Counter(uuid4(), "kept")
        with InMemoryUnitOfWork(store=store) as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
            uow.rollback()
        assert len(store) == 1

    def test_another_instance_with_the_same_id_is_refused(self) -> None:
        """One transaction holds one object per id."""
        counter = Counter(uuid4(), "one")
        with InMemoryUnitOfWork() as uow:
            uow.repository(Counter).add(counter)
            uow.repository(Counter).add(counter)
            with pytest.raises(ValueError, match="already in this unit of work"):
                uow.repository(Counter).add(Counter(counter.id, "two"))
            with pytest.raises(ValueError, match="not the instance"):
                uow.repository(Counter).remove(Counter(counter.id, "two"))
            uow.rollback()

    def test_a_store_passed_as_the_bus_is_refused_with_the_fix(self) -> None:
        """InMemoryUnitOfWork(store) is refused at once; it used to fail after its first commit."""
        store = InMemoryStore()
        with pytest.raises(
            TypeError,
            match=r"InMemoryUnitOfWork's bus must be an EventBus or None, got InMemoryStore "
            r"\(pass it as store=\.\.\.\)",
        ):
            InMemoryUnitOfWork(store)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
        assert len(store) == 0

    def test_a_store_that_is_not_an_in_memory_store_is_refused(self) -> None:
        """store= takes an InMemoryStore; anything else is named in the error."""
        with pytest.raises(TypeError, match="store must be an InMemoryStore or None, got EventBus"):
            InMemoryUnitOfWork(store=EventBus())  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    def test_repository_repr_names_the_type(self) -> None:
        """A repository's repr says which aggregate type it holds."""
        with InMemoryUnitOfWork() as uow:
            assert "Repository[Counter]" in repr(uow.repository(Counter))


OrderNumber = NewType("OrderNumber", int)
K = TypeVar("K")


class NumberedOrder(AggregateRoot[OrderNumber]):
    pass


class NotedOrder(AggregateRoot[Annotated[str, "order reference"]]):
    pass


class EitherOrder(AggregateRoot[int | str]):
    pass


class OpenOrder(AggregateRoot[K], Generic[K]):
    pass


class TestIdTypes:
    @pytest.mark.parametrize(
        ("aggregate_type", "good", "bad", "names"),
        [
            (NumberedOrder, OrderNumber(7), "7", "int"),
            (NotedOrder, "A-1", 1, "str"),
            (EitherOrder, "x", 1.5, "int | str"),
        ],
    )
    def test_ids_are_checked_through_new_types_annotations_and_unions(
        self, aggregate_type: type[AggregateRoot[Any]], good: object, bad: object, names: str
    ) -> None:
        """The declared id type is read through NewType, Annotated and unions."""
        with InMemoryUnitOfWork() as uow:
            repository = uow.repository(aggregate_type)
            assert repository.get(good) is None
            with pytest.raises(TypeError, match=rf"ids are {names}, got"):
                repository.get(bad)

    def test_an_unbound_id_type_is_not_checked(self) -> None:
        """A type variable left open checks nothing."""
        with InMemoryUnitOfWork() as uow:
            assert uow.repository(OpenOrder).get(1.5) is None

    def test_a_class_with_unresolvable_annotations_is_checked_by_its_generic_base(self) -> None:
        """A class defined in a function still has its id type from AggregateRoot[UUID]."""

        class LocalOrder(AggregateRoot[UUID]):
            note: LocalNote

        class LocalNote:
            pass

        with InMemoryUnitOfWork() as uow, pytest.raises(TypeError, match="ids are UUID"):
            uow.repository(LocalOrder).get("anything")


class TestChange:
    def test_is_a_frozen_dataclass_despite_its_own_init(self) -> None:
        """A Change sets its fields through its slots, and stays frozen and comparable."""
        counter = Counter(uuid4(), "change")
        change = Change("update", Counter, counter, 1, 2, ())
        assert (change.kind, change.aggregate, change.expected_version, change.new_version) == (
            "update",
            counter,
            1,
            2,
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            change.kind = "delete"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
        assert change == Change("update", Counter, counter, 1, 2, ())
        assert dataclasses.replace(change, new_version=None, kind="delete") == Change(
            "delete", Counter, counter, 1, None, ()
        )
        assert "expected_version=1" in repr(change)


class TestStructuralState:
    def test_sees_inside_child_entities(self) -> None:
        """Entities equal by id still differ structurally when their fields differ."""
        assert Tally(1, 0) == Tally(1, 5)
        assert structural_state(Tally(1, 0)) != structural_state(Tally(1, 5))

    def test_covers_containers_and_values(self) -> None:
        """Lists, dicts, sets and value objects are compared by content."""
        value = {"a": [Tag("x")], "b": {1, 2}, "c": (None, 1.5)}
        same = {"a": [Tag("x")], "b": {2, 1}, "c": (None, 1.5)}
        other = {"a": [Tag("y")], "b": {1, 2}, "c": (None, 1.5)}
        assert structural_state(value) == structural_state(same)
        assert structural_state(value) != structural_state(other)

    def test_compares_immutable_scalars_by_value(self) -> None:
        """Decimals, UUIDs and datetimes in a structure are compared by value."""
        moment = datetime(2024, 1, 2, tzinfo=UTC)
        key = uuid4()
        value = [Decimal("1.50"), key, moment, date(2024, 1, 2), b"x"]
        assert structural_state(value) == structural_state(list(value))
        changed = [Decimal("1.51"), key, moment, date(2024, 1, 2), b"x"]
        assert structural_state(value) != structural_state(changed)

    def test_many_types_made_at_run_time_keep_the_field_cache_bounded(self) -> None:
        """Dataclass types made on the fly are still compared field by field; the cache stays small."""
        from tactical import _structural

        made = [dataclasses.make_dataclass(f"Made{i}", [("n", int)]) for i in range(4200)]
        states = [structural_state(cls(i)) for i, cls in enumerate(made)]
        assert len(_structural._FIELD_NAMES) <= 4096  # pyright: ignore[reportPrivateUsage]
        assert states[-1] == (made[-1], (4199,))
        assert structural_state(made[0](1)) != structural_state(made[0](2))

    def test_copies_unknown_mutable_values(self) -> None:
        """A mutable value of an unknown type is snapshotted, so later in-place edits show."""

        class Box:
            def __init__(self) -> None:
                self.items: list[int] = []

            def __eq__(self, other: object) -> bool:
                return isinstance(other, Box) and self.items == other.items

            __hash__ = None  # type: ignore[assignment]

        box = Box()
        before = structural_state(box)
        box.items.append(1)
        assert structural_state(box) != before


class TestDispatchAtTheBlocksEnd:
    def test_an_interrupt_after_the_commit_dispatches_nothing(self) -> None:
        """KeyboardInterrupt after commit: the commit stands, nothing runs in process."""
        store, bus, seen = InMemoryStore(), EventBus(), list[CounterTicked]()
        bus.subscribe(CounterTicked, seen.append)
        counter = Counter(uuid4(), "visits")

        def commit_then_interrupt() -> None:
            with InMemoryUnitOfWork(bus, store=store) as uow:
                uow.repository(Counter).add(counter)
                counter.tick()
                uow.commit()
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            commit_then_interrupt()
        assert seen == []
        with InMemoryUnitOfWork(store=store) as reader:
            assert reader.repository(Counter).require(counter.id).count == 1

    def test_a_failed_end_of_block_still_dispatches_what_was_committed(self) -> None:
        """Releasing the storage failing after the commit does not lose its events."""

        class FailingEnd(InMemoryUnitOfWork):
            def _end(self) -> None:
                raise OSError("connection reset while releasing")

        bus, seen = EventBus(), list[CounterTicked]()
        bus.subscribe(CounterTicked, seen.append)
        bus.subscribe(CounterTicked, lambda event: 1 / 0)
        counter = Counter(uuid4(), "visits")

        def commit() -> None:
            with FailingEnd(bus) as uow:
                uow.repository(Counter).add(counter)
                counter.tick()
                uow.commit()

        with pytest.raises(OSError, match="releasing") as raised:
            commit()
        assert [e.counter_id for e in seen] == [counter.id]
        # The end's error goes on; the handler's failure is a note on it, not lost.
        assert any("1 event handler(s) failed" in n for n in raised.value.__notes__)

    def test_a_handler_reentering_the_unit_of_work_keeps_the_blocks_warnings(self) -> None:
        """A change after commit is still reported once the handlers, using the uow, are done."""
        store, bus = InMemoryStore(), EventBus()
        uow = InMemoryUnitOfWork(bus, store=store)
        reads: list[int] = []

        def read_back(event: CounterTicked) -> None:
            with uow:
                reads.append(uow.repository(Counter).require(event.counter_id).count)

        bus.subscribe(CounterTicked, read_back)
        counter = Counter(uuid4(), "visits")

        def commit_then_change() -> None:
            with uow:
                uow.repository(Counter).add(counter)
                counter.tick()
                uow.commit()
                counter.rename("lost")

        with pytest.warns(UncommittedChangesWarning, match="changed after"):
            commit_then_change()
        assert reads == [1]

    def test_a_handler_reentering_the_unit_of_work_keeps_the_previous_blocks_aggregates(
        self,
    ) -> None:
        """Changed after its block and saved nowhere: reported by the next block, handlers or not.

        The handlers' own blocks (one commits another counter, the next only reads) end
        before the committing block is over; what they committed is checked by the next
        block too.
        """
        bus = EventBus()
        uow = InMemoryUnitOfWork(bus)
        created: list[Counter] = []

        def read_back(event: CounterTicked) -> None:
            with uow:
                uow.repository(Counter).require(event.counter_id)

        def create_another(event: CounterTicked) -> None:
            with uow:
                another = Counter(uuid4(), "another")
                uow.repository(Counter).add(another)
                uow.commit()
            created.append(another)

        bus.subscribe(CounterTicked, create_another)
        bus.subscribe(CounterTicked, read_back)
        counter = Counter(uuid4(), "visits")
        with uow:
            uow.repository(Counter).add(counter)
            counter.tick()
            uow.commit()
        counter.rename("lost")
        created[0].rename("lost too")
        with pytest.warns(UncommittedChangesWarning, match="after it ended") as warned, uow:
            pass
        [warning] = [w.message for w in warned]
        assert isinstance(warning, UncommittedChangesWarning)
        assert set(warning.aggregates) == {(Counter, counter.id), (Counter, created[0].id)}

    def test_a_warning_turned_error_does_not_replace_a_handler_failure(self) -> None:
        """Under ``-W error`` the block raises EventHandlerError, the warning a note on it."""
        bus = EventBus()

        def fails(event: CounterTicked) -> None:
            raise LookupError(f"no mirror for {event.counter_id}")

        bus.subscribe(CounterTicked, fails)
        uow = InMemoryUnitOfWork(bus)
        counter = Counter(uuid4(), "visits")

        def commit_then_change() -> None:
            with uow:
                uow.repository(Counter).add(counter)
                counter.tick()
                uow.commit()
                counter.rename("lost")

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(EventHandlerError, match="committed") as raised:
                commit_then_change()
        notes = getattr(raised.value, "__notes__", [])
        assert any(note.startswith("UncommittedChangesWarning") for note in notes), notes
        assert any("changed after" in note for note in notes), notes

    def test_a_commit_without_events_dispatches_nothing(self) -> None:
        """A block whose commit saved no event leaves the bus alone."""
        bus, seen = EventBus(), list[object]()
        bus.subscribe(CounterTicked, seen.append)
        with InMemoryUnitOfWork(bus) as uow:
            uow.repository(Counter).add(Counter(uuid4(), "quiet"))
            uow.commit()
        assert seen == []
