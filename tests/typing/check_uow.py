"""Type-checked, never run: what a downstream user's checker sees of units of work and the bus."""

from __future__ import annotations

from typing import Any, assert_type
from uuid import UUID, uuid4

from tactical import (
    AggregateRoot,
    DomainEvent,
    EventBus,
    EventHandlerError,
    InMemoryStore,
    InMemoryUnitOfWork,
    JsonCodec,
    Repository,
    Trace,
    TransactionBoundaryError,
    UncommittedChangesWarning,
    UnitOfWork,
    current_trace,
    retry_on_conflict,
)


class PolicyIssued(DomainEvent):
    policy_id: UUID


class ClaimFiled(DomainEvent):
    claim_id: UUID


class Policy(AggregateRoot[UUID]):
    holder: str


class PolicyUnitOfWork(InMemoryUnitOfWork):
    @property
    def policies(self) -> Repository[Policy, UUID]:
        return self.repository(Policy)


def on_issued(event: PolicyIssued) -> None: ...


def on_any(event: DomainEvent) -> None: ...


def on_claim(event: ClaimFiled) -> None: ...


bus = EventBus()
bus.subscribe(PolicyIssued, on_issued)
bus.subscribe(PolicyIssued, on_any)  # a handler of a base type accepts subclasses
bus.subscribe(PolicyIssued, on_claim)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

store = InMemoryStore()
uow = PolicyUnitOfWork(bus, store=store)
with uow as entered:
    assert_type(entered, PolicyUnitOfWork)
    assert_type(uow.policies, Repository[Policy, UUID])
    assert_type(uow.policies.get(uuid4()), Policy | None)
    assert_type(uow.policies.require(uuid4()), Policy)
    assert_type(uow.repository(Policy), Repository[Policy, UUID])
    uow.policies.add(Policy(uuid4(), "ada"))
    uow.policies.get("not a uuid")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.policies.add("not a policy")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.commit()

as_protocol: UnitOfWork = InMemoryUnitOfWork()
several = InMemoryUnitOfWork(allow_multiple_aggregates=True)
assert_type(several.allow_multiple_aggregates, bool)
InMemoryUnitOfWork(None, None, True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
InMemoryUnitOfWork(allow_multiple_aggregate=True)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
coded = InMemoryUnitOfWork(codec=JsonCodec())
assert_type(coded.codec, JsonCodec)
InMemoryUnitOfWork(codec="json")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
boundary = TransactionBoundaryError(((Policy, uuid4()),))
assert_type(boundary.aggregates, tuple[tuple[type[Any], object], ...])
boundary_as_runtime: RuntimeError = boundary
lost = UncommittedChangesWarning("lost", ((Policy, uuid4()),))
assert_type(lost.aggregates, tuple[tuple[type[Any], object], ...])
lost_as_resource: ResourceWarning = lost
assert_type(retry_on_conflict(lambda: 42), int)
assert_type(uow.bus, EventBus)
error = EventHandlerError("failed", [RuntimeError("x")])
assert isinstance(error, ExceptionGroup)


trace = current_trace()
assert_type(trace, Trace | None)
if trace is not None:
    assert_type(trace.correlation_id, UUID)
    assert_type(trace.causation_id, UUID | None)
