"""Type-checked, never run: tactical.testing as a downstream user's tests see it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, assert_type
from uuid import UUID, uuid4

import pytest
from hypothesis import strategies as st

from tactical import (
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    Command,
    DomainEvent,
    EventBus,
    InMemoryUnitOfWork,
    InvalidStateError,
    ProcessManager,
    Repository,
    ScheduledMessage,
    UnitOfWork,
    ValueObject,
)
from tactical.testing import (
    INFRASTRUCTURE,
    AsyncUnitOfWorkContract,
    AsyncUnitOfWorkFactory,
    Counter,
    CounterRenamed,
    CounterTicked,
    ProcessScenario,
    Scenario,
    Tag,
    Tally,
    UnitOfWorkContract,
    UnitOfWorkFactory,
    aggregates,
    assert_aggregates_reference_by_id,
    assert_no_infrastructure_imports,
    assert_value_objects_hold_no_entities,
    given,
    given_process,
    strategy_for,
    structural_state,
    value_objects,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class Weight(ValueObject):
    grams: int


class Weighed(DomainEvent):
    parcel_id: UUID
    weight: Weight


class Parcel(AggregateRoot[UUID]):
    weight: Weight | None = None

    def weigh(self, weight: Weight) -> None:
        self.weight = weight
        self.record(Weighed(self.id, weight))

    @classmethod
    def receive(cls, parcel_id: UUID) -> Parcel:
        return cls(parcel_id)


def scenarios() -> None:
    scenario = given(lambda: Parcel(uuid4()))
    assert_type(scenario, Scenario[Parcel])
    assert_type(scenario.when(lambda p: p.weigh(Weight(5))), Scenario[Parcel])
    assert_type(scenario.then(Weighed), Parcel)
    assert_type(scenario.then_no_events(), Parcel)
    assert_type(scenario.then_raises(InvalidStateError, match="x"), InvalidStateError)
    assert_type(given(Parcel(uuid4()), Parcel.clear_events).aggregate, Parcel)
    scenario.when(lambda p: p.fly())  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType, reportUnknownLambdaType]
    scenario.then(Weight(1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


class Collect(Command):
    parcel_id: UUID


class Collection(ProcessManager[UUID]):
    @ProcessManager.starts(Weighed, key=lambda e: e.parcel_id)
    def weighed(self, event: Weighed) -> None:
        self.dispatch(Collect(self.id))


def process_scenarios() -> None:
    parcel_id = uuid4()
    scenario = given_process(Collection, Weighed(parcel_id, Weight(5)))
    assert_type(scenario, ProcessScenario[Collection])
    assert_type(scenario.manager, Collection | None)
    assert_type(given_process(Collection(parcel_id)), ProcessScenario[Collection])
    assert_type(scenario.when(Weighed(parcel_id, Weight(6))), ProcessScenario[Collection])
    assert_type(
        scenario.then(
            events=[Weighed],
            commands=[Collect(parcel_id), Collect],
            scheduled=[ScheduledMessage("k", Weighed(parcel_id, Weight(1)), NOW)],
            cancelled=["k"],
            completed=True,
            compare=["command_id"],
        ),
        Collection,
    )
    assert_type(scenario.then_ignored(), Collection | None)
    assert_type(scenario.then_raises(InvalidStateError), InvalidStateError)
    # Misuse: an event where a command is expected, a history that is not events, a non-manager.
    scenario.then(commands=[Weighed(parcel_id, Weight(1))])  # type: ignore[list-item]  # pyright: ignore[reportArgumentType]
    given_process(Collection, Collect(parcel_id))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    given_process(Parcel)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]
    scenario.then(completed="yes")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]


def strategies() -> None:
    assert_type(value_objects(Weight), st.SearchStrategy[Weight])
    assert_type(value_objects(Weight, grams=st.integers(1)), st.SearchStrategy[Weight])
    assert_type(aggregates(Parcel.receive), st.SearchStrategy[Parcel])
    assert_type(aggregates(Parcel), st.SearchStrategy[Parcel])
    assert_type(strategy_for(int), st.SearchStrategy[int])
    assert_type(strategy_for(Weight), st.SearchStrategy[Weight])
    assert_type(strategy_for(list[Weight]), st.SearchStrategy[list[Weight]])
    assert_type(strategy_for(tuple[Weight, ...]), st.SearchStrategy[tuple[Weight, ...]])
    assert_type(strategy_for(Literal["kg", "lb"]), st.SearchStrategy[Any])
    value_objects(Parcel)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]


def architecture() -> None:
    assert_type(INFRASTRUCTURE, tuple[str, ...])
    assert_no_infrastructure_imports("myapp.domain", forbidden=(*INFRASTRUCTURE, "myapp.web"))
    assert_aggregates_reference_by_id("myapp.domain")
    assert_value_objects_hold_no_entities("myapp.domain")


class TestMyUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> InMemoryUnitOfWork:
            return InMemoryUnitOfWork(bus, allow_multiple_aggregates=allow_multiple_aggregates)

        return factory


class TestMyAsyncUnitOfWork(AsyncUnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self) -> AsyncUnitOfWorkFactory:
        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AsyncInMemoryUnitOfWork:
            return AsyncInMemoryUnitOfWork(bus, allow_multiple_aggregates=allow_multiple_aggregates)

        return factory


class TestNotAnAsyncUnitOfWork(AsyncUnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self) -> AsyncUnitOfWorkFactory:
        return InMemoryUnitOfWork  # type: ignore[return-value]  # pyright: ignore[reportReturnType]


A = TypeVar("A", bound=AggregateRoot[Any])


class AuditedUnitOfWork:
    """A user's own unit of work: implements the UnitOfWork protocol without subclassing."""

    def __init__(self, inner: InMemoryUnitOfWork) -> None:
        self.inner = inner
        self.commits = 0

    def __enter__(self) -> Self:
        self.inner.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.inner.__exit__(exc_type, exc, traceback)

    def repository(self, aggregate_type: type[A]) -> Repository[A, Any]:
        return self.inner.repository(aggregate_type)

    def commit(self) -> None:
        self.inner.commit()
        self.commits += 1

    def rollback(self) -> None:
        self.inner.rollback()


class TestAuditedUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def unit_of_work_factory(self) -> UnitOfWorkFactory:
        def factory(
            bus: EventBus | None = None, *, allow_multiple_aggregates: bool = False
        ) -> AuditedUnitOfWork:
            return AuditedUnitOfWork(
                InMemoryUnitOfWork(bus, allow_multiple_aggregates=allow_multiple_aggregates)
            )

        return factory


def factories(new: UnitOfWorkFactory) -> None:
    assert_type(new(), UnitOfWork)
    with new(EventBus()) as uow:
        assert_type(uow, UnitOfWork)


def states() -> None:
    assert_type(structural_state(Parcel(uuid4())), object)


# The contract's sample model, for a mapper of the user's own.
sample = Counter(uuid4(), "sample", tag=Tag("t"), tallies=[Tally(1, marks=2)])
assert_type(sample.count, int)
assert_type(sample.tag, Tag | None)
assert_type(sample.tallies, list[Tally])
assert_type(sample.tallies[0].marks, int)
sample.tick()
assert_type(CounterTicked(sample.id, 1).count, int)
assert_type(CounterRenamed(sample.id, "new").name, str)
Tag("t").text = "u"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
