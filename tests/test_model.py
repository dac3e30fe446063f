"""Value objects, entities, aggregates and events: the base classes' guarantees."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from tactical import AggregateRoot, DomainEvent, InvariantViolation, ValueObject


class Money(ValueObject):
    amount: Decimal
    currency: str

    def validate(self) -> None:
        if self.amount < 0:
            raise InvariantViolation(f"Money amount {self.amount} is negative")


class OrderPlaced(DomainEvent):
    order_id: UUID


class Order(AggregateRoot[UUID]):
    customer: str

    def place(self) -> None:
        self.record(OrderPlaced(self.id))


class TestValueObject:
    def test_equal_values_are_equal_and_hash_alike(self) -> None:
        """Two value objects with the same fields are equal and have the same hash."""
        a, b = Money(Decimal("1.00"), "USD"), Money(Decimal("1.00"), "USD")
        assert a == b
        assert hash(a) == hash(b)

    def test_assignment_raises(self) -> None:
        """A value object is immutable."""
        money = Money(Decimal(1), "USD")
        with pytest.raises(dataclasses.FrozenInstanceError):
            money.amount = Decimal(2)  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]

    def test_replace_validates(self) -> None:
        """A copy made by replace() is validated like a new value."""
        with pytest.raises(InvariantViolation, match="-1"):
            Money(Decimal(1), "USD").replace(amount=Decimal(-1))


class TestAggregateRoot:
    def test_pull_events_returns_in_order_and_clears(self) -> None:
        """pull_events() returns the recorded events oldest first and leaves none pending."""
        order = Order(uuid4(), "ada")
        order.place()
        order.place()
        events = order.pull_events()
        assert [type(e) for e in events] == [OrderPlaced, OrderPlaced]
        assert events[0].occurred_at <= events[1].occurred_at
        assert order.pending_events == ()
