from dataclasses import field
from datetime import datetime
from decimal import Decimal
from typing import assert_type
from uuid import UUID, uuid4

from tactical import AggregateRoot, DomainEvent, Entity, ValueObject


class Money(ValueObject):
    amount: Decimal
    currency: str


class Happened(DomainEvent):
    what: str


class Claim(Entity[UUID]):
    amount: Money


class Order(AggregateRoot[UUID]):
    customer: str
    lines: list[str] = field(default_factory=list[str])


m = Money(Decimal("1"), "USD")
assert_type(m.amount, Decimal)
assert_type(m.replace(currency="EUR"), Money)
o = Order(uuid4(), "bob")
assert_type(o.id, UUID)
assert_type(o.version, int)
assert_type(o.pending_events, tuple[DomainEvent, ...])
o2 = Order(uuid4(), "bob", version=3)
e = Happened("x")
assert_type(e.event_id, UUID)
assert_type(e.occurred_at, datetime)
c = Claim(id=uuid4(), amount=m)
assert_type(c.id, UUID)
o.customer = "alice"
m.amount = Decimal(2)  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
e.what = "y"  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]
Money(Decimal(1))  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
Money("1", "USD")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
Order(uuid4(), "bob", [], 3)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
