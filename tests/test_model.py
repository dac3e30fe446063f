"""Value objects, entities, aggregates and events: the base classes' guarantees."""

from __future__ import annotations

import dataclasses
import typing
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


class Amount(ValueObject):
    """A value object for the immutability messages."""

    amount: Decimal


class TestImmutableFields:
    @pytest.mark.parametrize(
        "annotation",
        [
            "list[int]",
            "dict[str, int]",
            "set[int]",
            "list",
            "Optional[list[int]]",
            "list[int] | None",
            "tuple[list[int], ...]",
            "typing.List[int]",
            "bytearray",
            "list[Later]",  # a forward reference: read from the text
        ],
    )
    def test_a_mutable_field_is_refused_when_the_class_is_defined(self, annotation: str) -> None:
        """list, dict and set fields (bare, parametrised, in unions or tuples) are refused."""
        with pytest.raises(
            TypeError, match=r"Bag\.items: .* is mutable.*tuple\[X, \.\.\.\].*frozenset"
        ):
            type(
                "Bag",
                (ValueObject,),
                {"__annotations__": {"items": annotation}, "__module__": __name__},
            )

    def test_an_event_with_a_mutable_field_is_refused_too(self) -> None:
        """Events are frozen as well: a list field is refused the same way."""
        with pytest.raises(TypeError, match=r"Shipped\.parcels: list\[str\] is mutable"):
            type(
                "Shipped",
                (DomainEvent,),
                {"__annotations__": {"parcels": "list[str]"}, "__module__": __name__},
            )

    def test_immutable_containers_and_classvars_are_accepted(self) -> None:
        """tuple, frozenset and ClassVar (not a field) are fine, and the value is hashable."""
        annotations = {
            "items": "tuple[int, ...]",
            "tags": "frozenset[str]",
            "maybe": "tuple[int, ...] | None",
            "registry": "typing.ClassVar[list[int]]",
        }
        cls = type("Fine", (ValueObject,), {"__annotations__": annotations, "__module__": __name__})
        value = cls(items=(1,), tags=frozenset({"a"}), maybe=None)
        assert hash(value) == hash(cls(items=(1,), tags=frozenset({"a"}), maybe=None))


class Counted(ValueObject):
    """Counts its validations; its __post_init__ forgets super()."""

    n: int
    runs: typing.ClassVar[list[int]] = []

    def __post_init__(self) -> None:
        pass

    def validate(self) -> None:
        Counted.runs.append(self.n)
        if self.n < 0:
            raise InvariantViolation(f"n {self.n} is negative")


class CountedWithSuper(Counted):
    """An override that does call super()."""

    def __post_init__(self) -> None:
        super().__post_init__()


class TestValidationCannotBeSkipped:
    def test_validate_runs_once_although_post_init_skips_super(self) -> None:
        """An override of __post_init__ without super() still gets validate(), once."""
        Counted.runs.clear()
        Counted(1)
        with pytest.raises(InvariantViolation, match="n -1 is negative"):
            Counted(-1)
        assert Counted.runs == [1, -1]

    def test_validate_runs_once_through_super_and_on_replace(self) -> None:
        """Calling super() in the override, and replace(), validate exactly once each."""
        Counted.runs.clear()
        value = CountedWithSuper(2)
        value.replace(n=3)
        with pytest.raises(InvariantViolation):
            value.replace(n=-5)
        assert Counted.runs == [2, 3, -5]


class TestImmutabilityMessages:
    def test_assigning_a_field_names_the_class_and_replace(self) -> None:
        """The error names the class and the field, and shows replace()."""
        money = Amount(Decimal(1))
        with pytest.raises(
            dataclasses.FrozenInstanceError,
            match=r"^Amount is immutable: cannot assign to field 'amount'; use amount\.replace\(amount=\.\.\.\)$",
        ):
            money.amount = Decimal(2)  # type: ignore[misc]

    def test_assigning_an_undeclared_attribute_does_not_claim_a_field(self) -> None:
        """An attribute that is no field is named as such, with the fields listed."""
        money = Amount(Decimal(1))
        with pytest.raises(
            dataclasses.FrozenInstanceError,
            match=r"^Amount is immutable and has no field 'currency' \(its fields: amount\)$",
        ):
            money.currency = "EUR"  # type: ignore[attr-defined]
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'amount'"):
            del money.amount  # type: ignore[misc]
