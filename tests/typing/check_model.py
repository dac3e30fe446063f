"""Type-checked, never run: what a downstream user's checker sees of every public name of tactical.

Lines ending in ``# type: ignore[code]  # pyright: ignore[rule]`` are misuse that both checkers
must reject: unused ignores are errors in both configurations, so if a checker stops reporting
the misuse, this module fails the type check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from datetime import datetime
from decimal import Decimal
from typing import Any, assert_type
from uuid import UUID, uuid4

import tactical
from tactical import (
    AggregateNotFound,
    AggregateRoot,
    ConcurrencyError,
    DeserializationError,
    DomainError,
    DomainEvent,
    Entity,
    EventBus,
    EventHandlerError,
    EventRecord,
    InMemoryStore,
    InMemoryUnitOfWork,
    InvalidStateError,
    InvariantViolation,
    JsonCodec,
    Repository,
    UnitOfWork,
    UnknownTypeError,
    ValueObject,
    retry_on_conflict,
)

# -- value objects ------------------------------------------------------------------------------


class Money(ValueObject):
    amount: Decimal
    currency: str

    def validate(self) -> None:
        if self.amount < 0:
            raise InvariantViolation(f"Money amount {self.amount} is negative")


class PositiveMoney(Money):
    """A value object subclass of a subclass: inherits fields, adds a rule."""

    def validate(self) -> None:
        super().validate()
        if self.amount == 0:
            raise InvariantViolation("zero")


class Version(ValueObject, order=True):
    major: int
    minor: int = 0


class Name(ValueObject, kw_only=True):
    first: str
    last: str


m = Money(Decimal("1"), "USD")
assert_type(m, Money)
assert_type(m.amount, Decimal)
assert_type(m.currency, str)
assert_type(m.replace(currency="EUR"), Money)
assert_type(m.validate(), None)
assert_type(m == m, bool)
assert_type(hash(m), int)
p = PositiveMoney(Decimal(2), "EUR")
assert_type(p.replace(amount=Decimal(3)), PositiveMoney)
assert_type(p.amount, Decimal)
as_base: Money = p
assert_type(Version(1) < Version(1, 2), bool)
assert_type(Name(first="Ada", last="Lovelace").last, str)

# -- entities and aggregates --------------------------------------------------------------------


class Claim(Entity[UUID]):
    amount: Money


class Happened(DomainEvent):
    what: str


class Order(AggregateRoot[UUID]):
    customer: str
    lines: list[str] = field(default_factory=list[str])
    claims: list[Claim] = field(default_factory=list[Claim])

    def place(self) -> None:
        self.record(Happened("placed"))


class Counter(AggregateRoot[int]):
    value: int = 0


o = Order(uuid4(), "bob")
assert_type(o.id, UUID)
assert_type(o.version, int)
assert_type(o.customer, str)
assert_type(o.lines, list[str])
assert_type(o.pending_events, tuple[DomainEvent, ...])
assert_type(o.pull_events(), tuple[DomainEvent, ...])
assert_type(o.clear_events(), None)
assert_type(o.record(Happened("x")), None)
assert_type(o == o, bool)
o2 = Order(uuid4(), "bob", version=3)
o.customer = "alice"  # entities and aggregates are mutable
o.version = 4
c = Claim(id=uuid4(), amount=m)
assert_type(c.id, UUID)
assert_type(c.amount, Money)
assert_type(Counter(1).id, int)

e = Happened("x")
assert_type(e.what, str)
assert_type(e.event_id, UUID)
assert_type(e.occurred_at, datetime)
e2 = Happened("y", event_id=uuid4(), occurred_at=datetime.now())

# -- errors -------------------------------------------------------------------------------------

domain_error: ValueError = DomainError("refused")
invariant: DomainError = InvariantViolation("broken")
state_error: DomainError = InvalidStateError("not now")
not_found = AggregateNotFound(Order, uuid4())
assert_type(not_found, AggregateNotFound)
lookup: LookupError = not_found
assert_type(AggregateNotFound(Order, 1).aggregate_type, type[Any])
assert_type(AggregateNotFound(Order, 1).aggregate_id, object)
conflict = ConcurrencyError.stale(Order, o.id, expected_version=1, actual_version=None)
assert_type(conflict, ConcurrencyError)
assert_type(conflict.expected_version, int | None)
assert_type(conflict.actual_version, int | None)
assert_type(conflict.aggregate_type, type[Any] | None)
plain_conflict: Exception = ConcurrencyError("changed")
malformed: ValueError = DeserializationError("bad row")
unknown_type: DeserializationError = UnknownTypeError("nowhere.Gone")
unknown_lookup: LookupError = UnknownTypeError("nowhere.Gone")

# -- units of work, repositories, the bus, retries, the codec -----------------------------------


def on_happened(event: Happened) -> None: ...


bus = EventBus()
bus.subscribe(Happened, on_happened)
assert_type(bus.publish(e), None)
assert_type(bus.handlers_for(Happened), tuple[Callable[[Any], object], ...])
handler_error = EventHandlerError("handlers failed", [RuntimeError("x")])
assert_type(handler_error.exceptions, tuple[Exception | ExceptionGroup[Exception], ...])
store = InMemoryStore()
assert_type(len(store), int)
uow = InMemoryUnitOfWork(bus, store=store)
assert_type(uow.store, InMemoryStore)
assert_type(uow.bus, EventBus)
with uow as entered:
    assert_type(entered, InMemoryUnitOfWork)
    orders = uow.repository(Order)
    assert_type(orders, Repository[Order, UUID])
    assert_type(orders.get(o.id), Order | None)
    assert_type(orders.require(o.id), Order)
    assert_type(orders.add(o), None)
    assert_type(orders.remove(o), None)
    uow.commit()
as_protocol: UnitOfWork = uow
typed_repository: Repository[Order, UUID] = uow.repository(Order)
assert_type(retry_on_conflict(lambda: o.version), int)
assert_type(retry_on_conflict(lambda: None, attempts=3, base_delay=0.0, max_delay=0.0), None)
assert_type(retry_on_conflict(lambda: "x", sleep=lambda _: None, random=lambda: 0.5), str)
codec = JsonCodec()
assert_type(codec.decode(Money, codec.encode(m)), Money)
record = codec.event_to_record(e)
assert_type(record, EventRecord)
assert_type(record.type_name, str)
assert_type(record.schema_version, int)
assert_type(record.payload, dict[str, Any])
assert_type(tactical.__all__, list[str])

# -- misuse both checkers must reject -----------------------------------------------------------

m.amount = Decimal(2)  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
p.currency = "USD"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
e.what = "y"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
e.event_id = uuid4()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
e.occurred_at = datetime.now()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
Money(Decimal(1))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Money("1", "USD")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Money(Decimal(1), "USD", "extra")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Money(amount=Decimal(1), currency="USD", rate=2)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
PositiveMoney(Decimal(1))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Name("Ada", "Lovelace")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
assert Money(Decimal(1), "USD") < Money(Decimal(2), "USD")  # type: ignore[operator]  # pyright: ignore[reportOperatorIssue]
Order(uuid4(), "bob", [], [], 3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Order("not a uuid", "bob")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Order(uuid4())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Order(uuid4(), "bob", version="3")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Claim(id=uuid4(), amount=Decimal(1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Counter("one")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
o.customer = 3  # type: ignore[assignment]  # pyright: ignore[reportAttributeAccessIssue]
o.record("placed")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
o.pending_events = ()  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
Happened()  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Happened("x", uuid4())  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Happened("x", occurred_at="now")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
with uow:
    uow.repository(Order).add(Counter(1))  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.repository(Order).add(m)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    typed_repository.get("not a uuid")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    uow.repository(Money)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType, reportCallIssue]
bus.subscribe(Money, on_happened)  # type: ignore[type-var, arg-type]  # pyright: ignore[reportArgumentType]
bus.publish(m)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
AggregateNotFound(Order)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
ConcurrencyError.stale(Order, 1, expected_version=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
retry_on_conflict(lambda: 1, attempts="5")  # type: ignore[call-overload]  # pyright: ignore[reportArgumentType, reportCallIssue]
codec.event_to_record(m)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
InMemoryUnitOfWork(store=bus)  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
