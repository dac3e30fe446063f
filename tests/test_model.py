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


class StampedMoney(Money):
    stamp: str


class Labelled(ValueObject):
    name: str
    upper: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "upper", self.name.upper())
        super().__post_init__()

    def validate(self) -> None:
        if not self.name:
            raise InvariantViolation("Labelled name '' is empty")


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

    def test_attribute_assignment_is_refused(self) -> None:
        """A value object is immutable."""
        money = Money(Decimal(1), "USD")
        with pytest.raises(dataclasses.FrozenInstanceError):
            money.amount = Decimal(2)  # type: ignore[misc]  # pyright: ignore[reportAttributeAccessIssue]

    def test_replace_validates_the_copy(self) -> None:
        """A copy made by replace() is validated like a new value."""
        with pytest.raises(InvariantViolation, match="-1"):
            Money(Decimal(1), "USD").replace(amount=Decimal(-1))

    def test_post_init_override_calling_super_still_validates(self) -> None:
        """A __post_init__ override that calls super().__post_init__() keeps validate() running."""
        assert Labelled("a").upper == "A"
        with pytest.raises(InvariantViolation, match="empty"):
            Labelled("")

    def test_replace_keeps_unchanged_fields(self) -> None:
        """replace() copies every field it is not told to change."""
        money = Money(Decimal(1), "USD")
        assert money.replace(currency="EUR") == Money(Decimal(1), "EUR")
        assert money.replace() == money

    def test_replace_refuses_unknown_field(self) -> None:
        """replace() names the unknown field and the class's fields."""
        with pytest.raises(TypeError, match=r"Money.replace\(\) got unknown field\(s\) colour; "):
            Money(Decimal(1), "USD").replace(colour="red")

    def test_replace_refuses_non_init_field_and_recomputes_it(self) -> None:
        """A field with init=False cannot be replaced; the copy's __post_init__ sets it anew."""
        copy = Labelled("a").replace(name="b")
        assert copy.upper == "B"
        with pytest.raises(TypeError, match=r"unknown field.*upper; it accepts name$"):
            Labelled("a").replace(upper="X")

    def test_replace_on_subclass_uses_its_own_fields(self) -> None:
        """A subclass of a value object replaces its own fields too and stays its own type."""
        stamped = StampedMoney(Decimal(1), "USD", "today")
        copy = stamped.replace(stamp="tomorrow", amount=Decimal(2))
        assert copy == StampedMoney(Decimal(2), "USD", "tomorrow")
        with pytest.raises(InvariantViolation):
            stamped.replace(amount=Decimal(-2))


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


class Scaled(ValueObject):
    """A value object with an init-only variable (dataclasses.InitVar)."""

    value: int
    factor: dataclasses.InitVar[int] = 1

    def __post_init__(self, factor: int) -> None:
        object.__setattr__(self, "value", self.value * factor)
        super().__post_init__()

    def validate(self) -> None:
        if self.value < 0:
            raise InvariantViolation(f"Scaled value {self.value} is negative")


class TestInitVar:
    def test_replace_passes_init_only_variables_on(self) -> None:
        """replace() on a class with an InitVar follows dataclasses.replace's rules, validated."""
        scaled = Scaled(2, 3)
        assert scaled.value == 6
        assert scaled.replace(value=5).value == 5
        assert scaled.replace(value=5, factor=2).value == 10
        with pytest.raises(InvariantViolation, match="Scaled value -4 is negative"):
            scaled.replace(value=-2, factor=2)
        with pytest.raises(TypeError, match="unknown field"):
            scaled.replace(size=1)
