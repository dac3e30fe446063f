"""The unit-of-work contract suite: every tactical unit of work passes it, and so can yours."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import field
from typing import Any, Protocol
from uuid import UUID, uuid4

import pytest

from tactical._bus import EventBus, EventHandlerError
from tactical._errors import (
    AggregateNotFound,
    ConcurrencyError,
    InvariantViolation,
    TransactionBoundaryError,
    UncommittedChangesWarning,
)
from tactical._model import AggregateRoot, DomainEvent, Entity, ValueObject
from tactical._query import Field, Query
from tactical._tracing import Trace, current_trace
from tactical._uow import UnitOfWork
from tactical.testing._async_driver import AsyncDriver, AsyncUnitOfWorkFactory

__all__ = [
    "AsyncUnitOfWorkContract",
    "AsyncUnitOfWorkFactory",
    "Counter",
    "CounterRenamed",
    "CounterTicked",
    "Tag",
    "Tally",
    "UnitOfWorkContract",
    "UnitOfWorkFactory",
]


class Tag(ValueObject):
    """A value object inside the contract's sample aggregate; its text must not be empty.

    .. versionadded:: 0.1.0
    """

    text: str

    def validate(self) -> None:
        """Refuse an empty text.

        Raises:
            ~tactical.InvariantViolation: ``text`` is empty.
        """
        if not self.text:
            raise InvariantViolation("Tag text must not be empty")


class Tally(Entity[int]):
    """A child entity of the contract's sample aggregate.

    .. versionadded:: 0.1.0
    """

    marks: int = 0


class CounterTicked(DomainEvent):
    """Recorded by :meth:`Counter.tick`.

    .. versionadded:: 0.1.0
    """

    counter_id: UUID
    count: int


class CounterRenamed(DomainEvent):
    """Recorded by :meth:`Counter.rename`.

    .. versionadded:: 0.1.0
    """

    counter_id: UUID
    name: str


class Counter(AggregateRoot[UUID]):
    """The contract suite's sample aggregate: a value object, child entities, events.

    :class:`UnitOfWorkContract` stores and loads it through the unit of work under test; a
    relational mapper of your own needs a mapper for it (tactical's own tests map it to
    tables in ``tests/sqlalchemy/counter_mapping.py``). Its stored type name is
    ``tactical.testing._contract.Counter`` unless your codec registers another.

    .. versionadded:: 0.1.0
    """

    name: str
    count: int = 0
    tag: Tag | None = None
    tallies: list[Tally] = field(default_factory=list[Tally])

    def tick(self) -> None:
        """Count one, and record it."""
        self.count += 1
        self.record(CounterTicked(self.id, self.count))

    def rename(self, name: str) -> None:
        """Change the name, and record it."""
        self.name = name
        self.record(CounterRenamed(self.id, name))

    def mark(self, tally_id: int) -> None:
        """Add a mark to a child tally (creating it), without recording an event."""
        for tally in self.tallies:
            if tally.id == tally_id:
                tally.marks += 1
                return
        self.tallies.append(Tally(tally_id, 1))


class UnitOfWorkFactory(Protocol):
    """Makes units of work that share one store (or database); ``bus`` may be None.

    A unit of work is anything that implements the :class:`~tactical.UnitOfWork` protocol:
    tactical's own, a subclass of them, or one of your own that wraps or replaces them.
    ``allow_multiple_aggregates`` is passed on to the unit of work (the suite tests both the
    one-aggregate rule and its opt-out).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       Takes ``allow_multiple_aggregates``.
    """

    def __call__(
        self, bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
    ) -> UnitOfWork: ...


Handler = Callable[[Any], object]


class _ContractTests:
    """The contract's tests, written once as sync code against ``new`` (see the subclasses).

    :class:`UnitOfWorkContract` runs them on sync units of work as they are;
    :class:`AsyncUnitOfWorkContract` on sync views of async ones, so the two kinds pass the
    same tests, not copies. ``as_handler`` turns a sync test function into a handler the
    bus of the units of work under test can run (for async ones, an ``async def`` handler).
    """

    @pytest.fixture
    def as_handler(self) -> Callable[[Handler], Handler]:
        return lambda handler: handler

    # -- helpers ----------------------------------------------------------------------------

    @staticmethod
    def stored(new: UnitOfWorkFactory, counter_id: UUID) -> Counter | None:
        """What a fresh unit of work reads for ``counter_id``."""
        with new() as uow:
            return uow.repository(Counter).get(counter_id)

    @staticmethod
    def saved_counter(new: UnitOfWorkFactory, name: str = "visits") -> Counter:
        """A counter committed to the store (returned detached)."""
        counter = Counter(uuid4(), name, tag=Tag("front door"))
        with new() as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        return counter

    # -- commit and visibility --------------------------------------------------------------

    def test_added_aggregate_is_stored_on_commit(self, new: UnitOfWorkFactory) -> None:
        """An added aggregate is readable by another unit of work after commit, at version 1."""
        counter = self.saved_counter(new)
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.name, stored.count, stored.tag, stored.version) == (
            "visits",
            0,
            Tag("front door"),
            1,
        )
        assert counter.version == 1

    def test_uncommitted_changes_are_invisible_to_other_units(self, new: UnitOfWorkFactory) -> None:
        """Until commit, another unit of work sees neither additions nor changes."""
        counter = self.saved_counter(new)
        fresh = Counter(uuid4(), "unseen")
        with new() as writer:
            writer.repository(Counter).require(counter.id).tick()
            seen = self.stored(new, counter.id)
            assert seen is not None
            assert seen.count == 0
            writer.commit()
        with new() as writer:
            writer.repository(Counter).add(fresh)
            assert self.stored(new, fresh.id) is None
            writer.commit()
        after = self.stored(new, counter.id)
        assert after is not None
        assert after.count == 1
        assert self.stored(new, fresh.id) is not None

    def test_leaving_without_commit_discards_in_place_changes(self, new: UnitOfWorkFactory) -> None:
        """Mutating a loaded aggregate and leaving the block without commit stores nothing."""
        counter = self.saved_counter(new)
        with pytest.warns(UncommittedChangesWarning, match=str(counter.id)), new() as uow:
            loaded = uow.repository(Counter).require(counter.id)
            loaded.tick()
            loaded.mark(7)
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.count, stored.tallies, stored.version) == (0, [], 1)

    def test_exception_rolls_back_everything(self, new: UnitOfWorkFactory) -> None:
        """An exception leaving the block discards every change of the transaction."""
        counter = self.saved_counter(new)
        fresh = Counter(uuid4(), "never")
        with pytest.raises(RuntimeError, match="boom"), new() as uow:
            uow.repository(Counter).require(counter.id).rename("changed")
            uow.repository(Counter).add(fresh)
            raise RuntimeError("boom")
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert stored.name == "visits"
        assert self.stored(new, fresh.id) is None

    def test_rollback_discards_and_the_block_goes_on(self, new: UnitOfWorkFactory) -> None:
        """rollback() forgets this transaction's changes; later work in the block can commit."""
        counter = self.saved_counter(new)
        with new() as uow:
            uow.repository(Counter).require(counter.id).rename("discarded")
            uow.rollback()
            reloaded = uow.repository(Counter).require(counter.id)
            assert reloaded.name == "visits"
            reloaded.tick()
            uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.name, stored.count) == ("visits", 1)

    # -- repositories ------------------------------------------------------------------------

    def test_get_returns_the_same_object_within_a_transaction(self, new: UnitOfWorkFactory) -> None:
        """Within one transaction an id maps to one object (identity map)."""
        counter = self.saved_counter(new)
        with new() as uow:
            first = uow.repository(Counter).get(counter.id)
            assert first is not None
            assert uow.repository(Counter).require(counter.id) is first

    def test_get_of_a_missing_id_returns_none(self, new: UnitOfWorkFactory) -> None:
        """get() answers None for an id that was never stored."""
        with new() as uow:
            assert uow.repository(Counter).get(uuid4()) is None

    def test_require_of_a_missing_id_names_type_and_id(self, new: UnitOfWorkFactory) -> None:
        """require() raises AggregateNotFound with the type and id in the message."""
        missing = uuid4()
        with (
            new() as uow,
            pytest.raises(AggregateNotFound, match=f"Counter with id {missing}") as e,
        ):
            uow.repository(Counter).require(missing)
        assert (e.value.aggregate_type, e.value.aggregate_id) == (Counter, missing)

    def test_child_entity_changes_are_saved(self, new: UnitOfWorkFactory) -> None:
        """A change inside a child entity (equal by id before and after) is detected and saved."""
        counter = self.saved_counter(new)
        for _ in range(2):
            with new() as uow:
                uow.repository(Counter).require(counter.id).mark(3)
                uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert [(t.id, t.marks) for t in stored.tallies] == [(3, 2)]
        assert stored.version == 3

    def test_unchanged_aggregates_are_not_written(self, new: UnitOfWorkFactory) -> None:
        """Loading without changing leaves the version alone, so readers never conflict."""
        counter = self.saved_counter(new)
        with new() as uow:
            uow.repository(Counter).require(counter.id)
            uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert stored.version == 1

    def test_remove_deletes_on_commit(self, new: UnitOfWorkFactory) -> None:
        """A removed aggregate is gone after commit, and get() in the same block says so."""
        counter = self.saved_counter(new)
        with new() as uow:
            repository = uow.repository(Counter)
            repository.remove(repository.require(counter.id))
            assert repository.get(counter.id) is None
            uow.commit()
        assert self.stored(new, counter.id) is None

    def test_adding_and_removing_in_one_transaction_stores_and_publishes_nothing(
        self, new: UnitOfWorkFactory
    ) -> None:
        """A new aggregate removed before commit leaves no row, and its events are not published."""
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        counter = Counter(uuid4(), "fleeting")
        counter.tick()
        with new(bus) as uow:
            uow.repository(Counter).add(counter)
            uow.repository(Counter).remove(counter)
            uow.commit()
        assert self.stored(new, counter.id) is None
        assert seen == []
        assert (counter.version, counter.pending_events) == (0, ())

    def test_removing_then_re_adding_keeps_the_aggregate(self, new: UnitOfWorkFactory) -> None:
        """remove() then add() of the same object in one transaction cancels the removal."""
        counter = self.saved_counter(new)
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        with new(bus) as uow:
            repository = uow.repository(Counter)
            loaded = repository.require(counter.id)
            loaded.tick()
            repository.remove(loaded)
            repository.add(loaded)
            assert repository.get(counter.id) is loaded
            uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.count, stored.version) == (1, 2)
        assert [type(e) for e in seen] == [CounterTicked]

    def test_adding_another_instance_for_a_removed_id_is_refused(
        self, new: UnitOfWorkFactory
    ) -> None:
        """A transaction holds one object per id, removed or not; the error says what to do."""
        counter = self.saved_counter(new)
        with new() as uow:
            repository = uow.repository(Counter)
            repository.remove(repository.require(counter.id))
            with pytest.raises(ValueError, match=r"was removed in this unit of work"):
                repository.add(Counter(counter.id, "replacement"))
            uow.commit()
        assert self.stored(new, counter.id) is None

    def test_removing_a_detached_aggregate_is_version_checked(self, new: UnitOfWorkFactory) -> None:
        """remove() of an aggregate from an earlier transaction deletes it only if current."""
        counter = self.saved_counter(new)
        with new() as uow:
            uow.repository(Counter).remove(counter)
            uow.commit()
        assert self.stored(new, counter.id) is None
        with new() as uow:
            uow.repository(Counter).remove(counter)
            with pytest.raises(ConcurrencyError, match="removed"):
                uow.commit()

    def test_an_id_of_another_type_is_refused(self, new: UnitOfWorkFactory) -> None:
        """get(), require() and add() refuse an id that is not of the declared id type.

        A str that spells a stored UUID would otherwise find the row in SQL (ids are stored
        as text) and nothing in memory, and one transaction could hold two copies of one
        aggregate, whose writes would conflict with each other.
        """
        counter = self.saved_counter(new)
        text_id: Any = str(counter.id)
        with new() as uow:
            repository = uow.repository(Counter)
            with pytest.raises(TypeError, match=r"Counter ids are UUID, got str"):
                repository.get(text_id)
            with pytest.raises(TypeError, match=r"Counter ids are UUID, got str"):
                repository.require(text_id)
            with pytest.raises(TypeError, match=r"Counter ids are UUID, got str"):
                repository.add(Counter(text_id, "text id"))
            loaded = repository.require(counter.id)
            loaded.tick()
            uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert stored.count == 1

    # -- finders ---------------------------------------------------------------------------

    @staticmethod
    def saved_counters(new: UnitOfWorkFactory, *counters: Counter) -> list[Counter]:
        """``counters`` committed to the store in one transaction (returned detached)."""
        with new(allow_multiple_aggregates=True) as uow:
            for counter in counters:
                uow.repository(Counter).add(counter)
            uow.commit()
        return list(counters)

    @staticmethod
    def names(found: list[Counter]) -> list[str]:
        return [counter.name for counter in found]

    def test_find_returns_the_stored_aggregates_that_match_in_order(
        self, new: UnitOfWorkFactory
    ) -> None:
        """find() returns every stored match, sorted by order_by, each at its stored version."""
        self.saved_counters(
            new,
            Counter(uuid4(), "three", 3, Tag("odd")),
            Counter(uuid4(), "one", 1, Tag("odd")),
            Counter(uuid4(), "two", 2, Tag("even")),
            Counter(uuid4(), "none", 0),
        )
        with new() as uow:
            found = uow.repository(Counter).find(
                Query(Counter, Field("count") >= 1, order_by=("count",))
            )
            assert self.names(found) == ["one", "two", "three"]
            assert {c.version for c in found} == {1}
            every = uow.repository(Counter).find(Query(Counter, order_by="name"))
            assert self.names(every) == ["none", "one", "three", "two"]

    def test_every_kind_of_condition_answers_the_same_on_every_store(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Equality, nulls, order (by code point), one_of, &, | and ~ select the same counters."""
        zed, apple, emile, blank = self.saved_counters(
            new,
            Counter(uuid4(), "Zed", 5, Tag("odd")),
            Counter(uuid4(), "apple", 2, Tag("even")),
            Counter(uuid4(), "\u00c9mile", 7, Tag("odd")),
            Counter(uuid4(), "blank", 0),
        )

        def found(*where: Any) -> list[str]:
            with new() as uow:
                return self.names(
                    uow.repository(Counter).find(Query(Counter, *where, order_by="name"))
                )

        assert found(Field("tag.text") == "odd") == ["Zed", "\u00c9mile"]
        assert found(Field("tag.text") == None) == ["blank"]  # noqa: E711
        assert found(Field("tag.text") != "odd") == ["apple", "blank"]
        assert found(~(Field("tag.text") == "odd")) == ["apple", "blank"]
        assert found(Field("name") < "a") == ["Zed"]
        assert found(Field("name") >= "b") == ["blank", "\u00c9mile"]
        assert found(Field("count") > 2, Field("count") <= 7) == ["Zed", "\u00c9mile"]
        assert found(Field("tag.text") < "f") == ["apple"]
        assert found(Field("count").one_of([0, 7, 9])) == ["blank", "\u00c9mile"]
        assert found(Field("count").one_of([])) == []
        assert found((Field("count") == 2) | (Field("name") == "Zed")) == ["Zed", "apple"]
        assert found(Field("id") == emile.id) == ["\u00c9mile"]
        assert found(Field("id").one_of([zed.id, apple.id, blank.id])) == ["Zed", "apple", "blank"]

    def test_found_aggregates_are_tracked_by_the_unit_of_work(self, new: UnitOfWorkFactory) -> None:
        """A found aggregate is the one get() returns; changing it and committing saves it."""
        counter, other = self.saved_counters(
            new, Counter(uuid4(), "tracked", 1), Counter(uuid4(), "held", 1)
        )
        with new() as uow:
            repository = uow.repository(Counter)
            held = repository.require(other.id)
            (found,) = repository.find(Query(Counter, Field("name") == "tracked"))
            assert repository.get(counter.id) is found
            assert repository.find(Query(Counter, Field("name") == "held")) == [held]
            assert repository.find(Query(Counter, Field("name") == "held"))[0] is held
            found.tick()
            uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.count, stored.version) == (2, 2)

    def test_find_sees_the_transactions_own_additions_and_not_its_removals(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Added aggregates are found before commit, removed ones no more, as in a database."""
        (doomed,) = self.saved_counters(new, Counter(uuid4(), "doomed", 1))
        with new(allow_multiple_aggregates=True) as uow:
            repository = uow.repository(Counter)
            added = Counter(uuid4(), "added", 1)
            repository.add(added)
            repository.remove(repository.require(doomed.id))
            found = repository.find(Query(Counter, Field("count") == 1))
            assert found == [added]
            assert found[0] is added
            uow.rollback()

    def test_find_judges_changed_aggregates_by_their_state_now(
        self, new: UnitOfWorkFactory
    ) -> None:
        """An aggregate changed in the transaction is found, or not, by its current state."""
        leaving, joining = self.saved_counters(
            new, Counter(uuid4(), "leaving", 1), Counter(uuid4(), "joining", 5)
        )
        with new(allow_multiple_aggregates=True) as uow:
            repository = uow.repository(Counter)
            repository.require(leaving.id).count = 9
            repository.require(joining.id).count = 1
            found = repository.find(Query(Counter, Field("count") == 1))
            assert self.names(found) == ["joining"]
            uow.rollback()

    def test_find_does_not_see_other_units_uncommitted_changes(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Another unit of work's additions and changes are found only once it commits."""
        (counter,) = self.saved_counters(new, Counter(uuid4(), "shared", 1))
        query = Query(Counter, Field("count") == 2)
        with new(allow_multiple_aggregates=True) as writer:
            writer.repository(Counter).require(counter.id).tick()
            writer.repository(Counter).add(Counter(uuid4(), "fresh", 2))
            with new() as reader:
                assert reader.repository(Counter).find(query) == []
            writer.commit()
        with new() as reader:
            assert sorted(self.names(reader.repository(Counter).find(query))) == [
                "fresh",
                "shared",
            ]

    def test_find_one_returns_the_only_match_or_none_and_refuses_several(
        self, new: UnitOfWorkFactory
    ) -> None:
        """find_one() answers the single match or None; two matches raise LookupError."""
        one, _, _ = self.saved_counters(
            new,
            Counter(uuid4(), "unique", 1),
            Counter(uuid4(), "twin", 2),
            Counter(uuid4(), "twin", 3),
        )
        with new() as uow:
            repository = uow.repository(Counter)
            assert repository.find_one(Query(Counter, Field("name") == "unique")) is (
                repository.get(one.id)
            )
            assert repository.find_one(Query(Counter, Field("name") == "nobody")) is None
            with pytest.raises(LookupError, match=r"found 2 Counter aggregates"):
                repository.find_one(Query(Counter, Field("name") == "twin"))

    def test_find_refuses_a_query_of_another_type_and_use_outside_a_block(
        self, new: UnitOfWorkFactory
    ) -> None:
        """find() takes a Query of the repository's type, inside an open transaction."""

        class Other(AggregateRoot[UUID]):
            pass

        other_query: Any = Query(Other)
        with new() as uow:
            repository = uow.repository(Counter)
            with pytest.raises(TypeError, match=r"Query\[Counter\]"):
                repository.find(other_query)
            with pytest.raises(TypeError, match=r"takes a Query"):
                repository.find(Field("name") == "x")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
            uow.commit()
        with pytest.raises(RuntimeError, match="not in a transaction"):
            repository.find(Query(Counter))

    # -- optimistic concurrency --------------------------------------------------------------

    def test_stale_write_is_refused_and_nothing_of_its_commit_is_stored(
        self, new: UnitOfWorkFactory
    ) -> None:
        """The later of two writers of one aggregate gets ConcurrencyError; none of its writes land."""
        counter = self.saved_counter(new)
        bystander = self.saved_counter(new, "bystander")
        fresh = Counter(uuid4(), "new in losing commit")
        with new() as first, new(allow_multiple_aggregates=True) as second:
            first.repository(Counter).require(counter.id).tick()
            second.repository(Counter).require(counter.id).rename("loser")
            second.repository(Counter).require(bystander.id).tick()
            second.repository(Counter).add(fresh)
            first.commit()
            with pytest.raises(ConcurrencyError, match=str(counter.id)) as raised:
                second.commit()
        assert raised.value.expected_version == 1
        assert raised.value.actual_version == 2
        stored, other = self.stored(new, counter.id), self.stored(new, bystander.id)
        assert stored is not None
        assert other is not None
        assert (stored.name, stored.count, stored.version) == ("visits", 1, 2)
        assert (other.count, other.version) == (0, 1)
        assert self.stored(new, fresh.id) is None

    def test_adding_an_existing_id_is_a_conflict(self, new: UnitOfWorkFactory) -> None:
        """Inserting an aggregate whose id is already stored raises ConcurrencyError."""
        counter = self.saved_counter(new)
        with new() as uow:
            uow.repository(Counter).add(Counter(counter.id, "impostor"))
            with pytest.raises(ConcurrencyError):
                uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert stored.name == "visits"

    def test_removing_a_concurrently_changed_aggregate_is_a_conflict(
        self, new: UnitOfWorkFactory
    ) -> None:
        """A remove is version-checked like any other write."""
        counter = self.saved_counter(new)
        with new() as remover, new() as writer:
            repository = remover.repository(Counter)
            repository.remove(repository.require(counter.id))
            writer.repository(Counter).require(counter.id).tick()
            writer.commit()
            with pytest.raises(ConcurrencyError):
                remover.commit()
        assert self.stored(new, counter.id) is not None

    def test_a_detached_aggregate_is_written_back_under_its_version(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Adding an aggregate saved earlier updates it if, and only if, it is still current."""
        counter = self.saved_counter(new)
        counter.rename("detached edit")
        with new() as uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        assert counter.version == 2
        counter.rename("stale edit")
        counter.version = 1
        with new() as uow:
            uow.repository(Counter).add(counter)
            with pytest.raises(ConcurrencyError):
                uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.name, stored.version) == ("detached edit", 2)

    # -- events ------------------------------------------------------------------------------

    def test_events_are_published_after_commit_in_recorded_order(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Events of all aggregates go out after commit, interleaved as they were recorded."""
        a, b = self.saved_counter(new, "a"), self.saved_counter(new, "b")
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        with new(bus, allow_multiple_aggregates=True) as uow:
            first = uow.repository(Counter).require(a.id)
            second = uow.repository(Counter).require(b.id)
            first.tick()
            second.rename("b2")
            first.rename("a2")
            second.tick()
            assert seen == []
            uow.commit()
        assert [(type(e).__name__, getattr(e, "counter_id", None)) for e in seen] == [
            ("CounterTicked", a.id),
            ("CounterRenamed", b.id),
            ("CounterRenamed", a.id),
            ("CounterTicked", b.id),
        ]
        assert first.pending_events == ()
        assert second.pending_events == ()

    def test_nothing_is_published_on_rollback(self, new: UnitOfWorkFactory) -> None:
        """Events of a transaction that did not commit are never published."""
        counter = self.saved_counter(new)
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        with pytest.warns(UncommittedChangesWarning), new(bus) as uow:
            uow.repository(Counter).require(counter.id).tick()
        with new(bus) as uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.rollback()
        assert seen == []

    def test_nothing_is_published_when_commit_fails(self, new: UnitOfWorkFactory) -> None:
        """A commit refused for concurrency publishes no event."""
        counter = self.saved_counter(new)
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        with new(bus) as loser, new() as winner:
            loser.repository(Counter).require(counter.id).tick()
            winner.repository(Counter).require(counter.id).tick()
            winner.commit()
            with pytest.raises(ConcurrencyError):
                loser.commit()
        assert seen == []

    def test_handlers_run_after_the_commit_is_visible(
        self, new: UnitOfWorkFactory, as_handler: Callable[[Handler], Handler]
    ) -> None:
        """A handler reading through its own unit of work sees the committed state."""
        counter = self.saved_counter(new)
        bus, counts = EventBus(), list[int]()

        def read_back(event: CounterTicked) -> None:
            with new() as reader:
                counts.append(reader.repository(Counter).require(event.counter_id).count)

        bus.subscribe(CounterTicked, as_handler(read_back))
        with new(bus) as uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.commit()
        assert counts == [1]

    def test_a_handler_may_commit_its_own_transaction(
        self, new: UnitOfWorkFactory, as_handler: Callable[[Handler], Handler]
    ) -> None:
        """A handler changes another aggregate in its own unit of work; its events follow FIFO."""
        source, target = self.saved_counter(new, "source"), self.saved_counter(new, "target")
        bus, seen = EventBus(), list[tuple[str, UUID]]()

        def propagate(event: CounterTicked) -> None:
            if event.counter_id == source.id:
                with new(bus) as uow:
                    uow.repository(Counter).require(target.id).tick()
                    uow.commit()

        bus.subscribe(CounterTicked, as_handler(propagate))
        bus.subscribe(CounterTicked, lambda e: seen.append((type(e).__name__, e.counter_id)))
        bus.subscribe(CounterRenamed, lambda e: seen.append((type(e).__name__, e.counter_id)))
        with new(bus) as uow:
            counter = uow.repository(Counter).require(source.id)
            counter.tick()
            counter.rename("source2")
            uow.commit()
        assert seen == [
            ("CounterTicked", source.id),
            ("CounterRenamed", source.id),
            ("CounterTicked", target.id),
        ]
        stored = self.stored(new, target.id)
        assert stored is not None
        assert stored.count == 1

    # -- dispatch when the block ends (0.2) --------------------------------------------------

    def test_handlers_run_when_the_committed_block_ends(self, new: UnitOfWorkFactory) -> None:
        """commit() stores; the handlers run once the block is over, not inside commit()."""
        counter = self.saved_counter(new)
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        with new(bus) as uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.commit()
            assert seen == []
        assert [type(e).__name__ for e in seen] == ["CounterTicked"]

    def test_a_handler_may_use_the_unit_of_work_that_committed(
        self, new: UnitOfWorkFactory, as_handler: Callable[[Handler], Handler]
    ) -> None:
        """A handler enters the same unit of work, commits another aggregate; FIFO, traced."""
        source, target = self.saved_counter(new, "source"), self.saved_counter(new, "target")
        bus, seen = EventBus(), list[tuple[str, UUID, Trace | None]]()
        uow = new(bus)

        def propagate(event: CounterTicked) -> None:
            if event.counter_id == source.id:
                with uow:  # the unit of work whose commit published the event
                    uow.repository(Counter).require(target.id).tick()
                    uow.commit()

        def note(event: CounterTicked | CounterRenamed) -> None:
            seen.append((type(event).__name__, event.counter_id, current_trace()))

        bus.subscribe(CounterTicked, as_handler(propagate))
        bus.subscribe(CounterTicked, note)
        bus.subscribe(CounterRenamed, note)
        with uow:
            counter = uow.repository(Counter).require(source.id)
            counter.tick()
            counter.rename("source2")
            uow.commit()
        assert [(name, counter_id) for name, counter_id, _ in seen] == [
            ("CounterTicked", source.id),
            ("CounterRenamed", source.id),
            ("CounterTicked", target.id),
        ]
        first, _, reaction = (trace for _, _, trace in seen)
        assert first is not None
        assert reaction is not None
        # The reaction belongs to the first event's flow and was caused by it.
        assert reaction.correlation_id == first.correlation_id == first.causation_id
        assert reaction.causation_id != first.causation_id
        stored = self.stored(new, target.id)
        assert stored is not None
        assert stored.count == 1

    def test_a_failing_handler_raises_when_the_block_ends_and_undoes_nothing(
        self, new: UnitOfWorkFactory, as_handler: Callable[[Handler], Handler]
    ) -> None:
        """EventHandlerError leaves the ``with`` statement; both commits of the chain stand."""
        source, target = self.saved_counter(new, "source"), self.saved_counter(new, "target")
        bus = EventBus()
        uow = new(bus)

        def propagate(event: CounterTicked) -> None:
            if event.counter_id == source.id:
                with uow:
                    uow.repository(Counter).require(target.id).tick()
                    uow.commit()

        def refuse(event: CounterTicked) -> None:
            raise RuntimeError(f"cannot react to {event.counter_id}")

        bus.subscribe(CounterTicked, as_handler(propagate))
        bus.subscribe(CounterTicked, refuse)
        committed = False
        with pytest.raises(EventHandlerError, match="committed") as raised, uow:
            uow.repository(Counter).require(source.id).tick()
            uow.commit()
            committed = True
        assert committed  # commit() itself returned: the error came at the block's end
        assert len(raised.value.exceptions) == 2
        assert [c.count for c in map(self._require, [new] * 2, [source.id, target.id])] == [1, 1]

    def test_a_block_raising_after_its_commit_still_dispatches_its_events(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Committed is committed: the events go out, and the block's own error goes on."""
        counter = self.saved_counter(new)
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)

        def refuse(event: CounterTicked) -> None:
            raise RuntimeError("no reaction")

        bus.subscribe(CounterTicked, refuse)
        with pytest.raises(LookupError, match="rendering failed") as raised, new(bus) as uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.commit()
            raise LookupError("rendering failed")
        assert [type(e).__name__ for e in seen] == ["CounterTicked"]
        assert any("1 event handler(s) failed" in note for note in raised.value.__notes__)
        assert self._require(new, counter.id).count == 1

    @classmethod
    def _require(cls, new: UnitOfWorkFactory, counter_id: UUID) -> Counter:
        stored = cls.stored(new, counter_id)
        assert stored is not None
        return stored

    # -- one aggregate per transaction -------------------------------------------------------

    def test_a_commit_changing_two_aggregates_is_refused_before_writing_anything(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Changing one aggregate and adding another fails the commit, names both, stores nothing."""
        counter = self.saved_counter(new)
        fresh = Counter(uuid4(), "second aggregate")
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(DomainEvent, seen.append)
        with new(bus) as uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.repository(Counter).add(fresh)
            with pytest.raises(TransactionBoundaryError) as refused:
                uow.commit()
            with pytest.raises(RuntimeError, match="already ended"):
                uow.commit()
        assert str(counter.id) in str(refused.value)
        assert str(fresh.id) in str(refused.value)
        assert "allow_multiple_aggregates=True" in str(refused.value)
        assert refused.value.aggregates == ((Counter, counter.id), (Counter, fresh.id))
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.count, stored.version) == (0, 1)
        assert self.stored(new, fresh.id) is None
        assert seen == []

    def test_removing_one_aggregate_and_changing_another_is_refused(
        self, new: UnitOfWorkFactory
    ) -> None:
        """A removal counts as a change of its aggregate."""
        doomed, other = self.saved_counter(new, "doomed"), self.saved_counter(new, "other")
        with new() as uow:
            repository = uow.repository(Counter)
            repository.remove(repository.require(doomed.id))
            repository.require(other.id).rename("renamed")
            with pytest.raises(TransactionBoundaryError, match=str(doomed.id)):
                uow.commit()
        assert self.stored(new, doomed.id) is not None

    def test_aggregates_only_loaded_do_not_count(self, new: UnitOfWorkFactory) -> None:
        """Reading other aggregates while changing one commits normally."""
        read, changed = self.saved_counter(new, "read"), self.saved_counter(new, "changed")
        with new() as uow:
            uow.repository(Counter).require(read.id)
            uow.repository(Counter).require(changed.id).tick()
            fleeting = Counter(uuid4(), "added and removed again")
            uow.repository(Counter).add(fleeting)
            uow.repository(Counter).remove(fleeting)
            uow.commit()
        stored = self.stored(new, changed.id)
        assert stored is not None
        assert stored.count == 1

    def test_the_opt_out_commits_several_aggregates_atomically(
        self, new: UnitOfWorkFactory
    ) -> None:
        """With allow_multiple_aggregates=True one transaction may change several aggregates."""
        counter = self.saved_counter(new)
        fresh = Counter(uuid4(), "second aggregate")
        with new(allow_multiple_aggregates=True) as uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.repository(Counter).add(fresh)
            uow.commit()
        stored, added = self.stored(new, counter.id), self.stored(new, fresh.id)
        assert stored is not None
        assert added is not None
        assert (stored.count, added.version) == (1, 1)

    # -- nothing lost in silence -------------------------------------------------------------

    def test_leaving_without_commit_warns_and_names_the_aggregates(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Pending changes or events left uncommitted raise UncommittedChangesWarning, then roll back."""
        counter = self.saved_counter(new)
        with (
            pytest.warns(UncommittedChangesWarning, match=rf"without commit\(\).*{counter.id}"),
            new() as uow,
        ):
            uow.repository(Counter).require(counter.id).tick()
        fresh = Counter(uuid4(), "never committed")
        with pytest.warns(UncommittedChangesWarning, match=str(fresh.id)), new() as uow:
            uow.repository(Counter).add(fresh)
        assert self.stored(new, fresh.id) is None

    def test_leaving_without_changes_or_after_rollback_or_by_an_exception_is_silent(
        self, new: UnitOfWorkFactory
    ) -> None:
        """No warning when nothing is pending, after rollback(), or when an exception leaves."""
        counter = self.saved_counter(new)
        with new() as uow:
            uow.repository(Counter).require(counter.id)
        with new() as uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.rollback()
        with pytest.raises(KeyError), new() as uow:
            uow.repository(Counter).require(counter.id).tick()
            raise KeyError("the command failed")
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert stored.count == 0

    def test_changes_after_commit_saved_nowhere_are_reported_when_a_block_ends(
        self, new: UnitOfWorkFactory
    ) -> None:
        """A committed aggregate changed after commit() warns at the end of that block or the next."""
        uow = new()
        counter = Counter(uuid4(), "committed")
        with (
            pytest.warns(UncommittedChangesWarning, match=rf"after .*commit\(\).*{counter.id}"),
            uow,
        ):
            uow.repository(Counter).add(counter)
            uow.commit()
            counter.tick()
        other = Counter(uuid4(), "other")
        with uow:
            uow.repository(Counter).add(other)
            uow.commit()
        other.rename("changed after its block")
        with pytest.warns(UncommittedChangesWarning, match=rf"after it ended.*{other.id}"), uow:
            pass

    def test_a_committed_aggregate_saved_again_later_is_not_reported(
        self, new: UnitOfWorkFactory
    ) -> None:
        """Changing a detached aggregate and committing it in the next block is silent."""
        uow = new()
        counter = Counter(uuid4(), "detached")
        with uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        counter.tick()
        with uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        counter.rename("saved by another unit of work")
        with new() as other:
            other.repository(Counter).add(counter)
            other.commit()
        with uow:
            pass
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.count, stored.name, stored.version) == (
            1,
            "saved by another unit of work",
            3,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def test_committing_twice_is_refused(self, new: UnitOfWorkFactory) -> None:
        """A transaction commits once; a second commit() raises."""
        with new() as uow:
            uow.repository(Counter).add(Counter(uuid4(), "once"))
            uow.commit()
            with pytest.raises(RuntimeError, match="already ended"):
                uow.commit()

    def test_use_outside_a_block_is_refused(self, new: UnitOfWorkFactory) -> None:
        """Repositories and commit need an open `with` block."""
        uow = new()
        with pytest.raises(RuntimeError, match="not in a transaction"):
            uow.repository(Counter)
        with pytest.raises(RuntimeError, match="not in a transaction"):
            uow.commit()

    def test_entering_an_active_unit_of_work_is_refused(self, new: UnitOfWorkFactory) -> None:
        """Nested `with` on the same unit of work raises; the outer block still works."""
        with new() as uow:
            with pytest.raises(RuntimeError, match="already in a transaction"), uow:
                pass
            uow.repository(Counter).add(Counter(uuid4(), "outer"))
            uow.commit()

    def test_a_unit_of_work_is_reusable_block_after_block(self, new: UnitOfWorkFactory) -> None:
        """Each `with` block is a new transaction on the same object."""
        uow = new()
        counter = Counter(uuid4(), "reused")
        with uow:
            uow.repository(Counter).add(counter)
            uow.commit()
        with uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.commit()
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.count, stored.version) == (1, 2)

    def test_a_failed_commit_restores_versions_and_the_unit_of_work_goes_on(
        self, new: UnitOfWorkFactory
    ) -> None:
        """After a refused commit, versions are as before and the next block commits normally."""
        counter = self.saved_counter(new)
        fresh = Counter(uuid4(), "added in the losing commit")
        uow = new(allow_multiple_aggregates=True)
        with uow:
            loaded = uow.repository(Counter).require(counter.id)
            loaded.tick()
            uow.repository(Counter).add(fresh)
            with new() as winner:
                winner.repository(Counter).require(counter.id).rename("winner")
                winner.commit()
            with pytest.raises(ConcurrencyError):
                uow.commit()
        assert (loaded.version, fresh.version) == (1, 0)
        assert self.stored(new, fresh.id) is None
        with uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.repository(Counter).add(fresh)
            uow.commit()
        stored, added = self.stored(new, counter.id), self.stored(new, fresh.id)
        assert stored is not None
        assert added is not None
        assert (stored.name, stored.count, stored.version) == ("winner", 1, 3)
        assert (added.version, fresh.version) == (1, 1)

    def test_repository_refuses_a_non_aggregate_type(self, new: UnitOfWorkFactory) -> None:
        """repository() takes AggregateRoot subclasses only."""
        any_type: Any = Tag
        with new() as uow, pytest.raises(TypeError, match="AggregateRoot subclass"):
            uow.repository(any_type)

    def test_add_refuses_another_type(self, new: UnitOfWorkFactory) -> None:
        """A repository stores only its own aggregate type."""

        class Other(AggregateRoot[UUID]):
            pass

        wrong: Any = Other(uuid4())
        with new() as uow, pytest.raises(TypeError, match="Other"):
            uow.repository(Counter).add(wrong)


class UnitOfWorkContract(_ContractTests):
    """The guarantees of a tactical unit of work, as a pytest suite to subclass.

    Subclass it in a test module (the subclass name must start with ``Test``) and provide a
    ``unit_of_work_factory`` fixture returning a :class:`UnitOfWorkFactory`: every unit of
    work it makes must see the same committed state, like connections to one database::

        class TestMyUnitOfWork(UnitOfWorkContract):
            @pytest.fixture
            def unit_of_work_factory(self, engine) -> UnitOfWorkFactory:
                def factory(bus=None, *, allow_multiple_aggregates=False):
                    return MyUnitOfWork(
                        engine, bus=bus, allow_multiple_aggregates=allow_multiple_aggregates
                    )

                return factory

    The suite stores the sample :class:`Counter` aggregate. A unit of work whose storage
    needs set-up for it (a relational mapper, say) does that in the fixture; the finder
    tests query the fields ``id``, ``name``, ``count`` and ``tag.text`` (a relational
    mapper maps them in its ``columns``). For an async
    unit of work, subclass :class:`AsyncUnitOfWorkContract` instead: the same tests.

    .. versionadded:: 0.1.0
    """

    @pytest.fixture
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        """Override: return a factory of units of work sharing one store."""
        raise NotImplementedError("UnitOfWorkContract subclasses provide unit_of_work_factory")

    @pytest.fixture
    def new(self, unit_of_work_factory: UnitOfWorkFactory) -> UnitOfWorkFactory:
        return unit_of_work_factory

    # -- sync only ---------------------------------------------------------------------------

    def test_a_commit_whose_events_reach_an_async_handler_is_refused(
        self, new: UnitOfWorkFactory
    ) -> None:
        """A sync commit cannot await an ``async def`` handler: TypeError naming it, nothing stored."""
        counter = self.saved_counter(new)
        bus, seen = EventBus(), list[DomainEvent]()

        async def notify_async(event: CounterTicked) -> None:
            seen.append(event)  # pragma: no cover  (never called: the commit is refused)

        bus.subscribe(CounterTicked, notify_async)
        with new(bus) as uow:
            loaded = uow.repository(Counter).require(counter.id)
            loaded.tick()
            with pytest.raises(TypeError, match="notify_async"):
                uow.commit()
        assert loaded.version == 1
        stored = self.stored(new, counter.id)
        assert stored is not None
        assert (stored.count, stored.version) == (0, 1)
        assert seen == []


class AsyncUnitOfWorkContract(_ContractTests):
    """:class:`UnitOfWorkContract`'s guarantees, as a pytest suite for an async unit of work.

    The same tests as :class:`UnitOfWorkContract`, run against an
    :class:`~tactical.AsyncUnitOfWork`: subclass it in a test module (the subclass name
    must start with ``Test``) and provide a ``unit_of_work_factory`` fixture returning an
    :class:`AsyncUnitOfWorkFactory`::

        class TestMyAsyncUnitOfWork(AsyncUnitOfWorkContract):
            @pytest.fixture
            def unit_of_work_factory(self, engine) -> AsyncUnitOfWorkFactory:
                def factory(bus=None, *, allow_multiple_aggregates=False):
                    return MyAsyncUnitOfWork(
                        engine, bus=bus, allow_multiple_aggregates=allow_multiple_aggregates
                    )

                return factory

    The tests are sync functions: each call on a unit of work is run to completion on the
    event loop of a private :class:`asyncio.Runner`, one per test, so no pytest plugin is
    needed, and the fixture must not be async. Handlers that use units of work themselves
    are run as ``async def`` handlers, awaited by the commit. Objects bound to an event
    loop (an ``AsyncEngine``'s connections) live within one test: request the
    ``run_on_loop`` fixture to run set-up or clean-up coroutines on the suite's loop.

    .. versionadded:: 0.2.0
    """

    @pytest.fixture
    def unit_of_work_factory(self) -> AsyncUnitOfWorkFactory:
        """Override: return a factory of async units of work sharing one store."""
        raise NotImplementedError("AsyncUnitOfWorkContract subclasses provide unit_of_work_factory")

    @pytest.fixture
    def driver(self) -> Iterator[AsyncDriver]:
        driver = AsyncDriver()
        try:
            yield driver
        finally:
            driver.close()

    @pytest.fixture
    def run_on_loop(self, driver: AsyncDriver) -> Callable[[Coroutine[Any, Any, Any]], Any]:
        """Runs a coroutine to completion on the event loop the suite's units of work use.

        For set-up and clean-up bound to that loop: a ``unit_of_work_factory`` fixture that
        requests it can, say, create the tables through an ``AsyncEngine`` and, after the
        test, ``run_on_loop(engine.dispose())``.
        """
        return driver.run

    @pytest.fixture
    def new(
        self, unit_of_work_factory: AsyncUnitOfWorkFactory, driver: AsyncDriver
    ) -> UnitOfWorkFactory:
        return driver.factory(unit_of_work_factory)

    @pytest.fixture
    def as_handler(self, driver: AsyncDriver) -> Callable[[Handler], Handler]:
        return driver.handler
