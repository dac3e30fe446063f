"""Hypothesis strategies built from annotations: every value drawn is valid."""

from __future__ import annotations

import enum
import math
from dataclasses import field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tactical import AggregateRoot, Entity, InvariantViolation, ValueObject
from tactical.testing import aggregates, strategy_for, value_objects


class Currency(enum.Enum):
    EUR = "EUR"
    USD = "USD"


class Money(ValueObject):
    amount: Decimal
    currency: Currency

    def validate(self) -> None:
        if self.amount < 0:
            raise InvariantViolation(f"Money amount {self.amount} is negative")


class Period(ValueObject):
    start: date
    end: date

    def validate(self) -> None:
        if self.end <= self.start:
            raise InvariantViolation(f"Period ends {self.end} before it starts {self.start}")


class Quote(ValueObject):
    price: Money
    period: Period
    tags: frozenset[str]
    lines: tuple[Money, ...]
    pair: tuple[int, str]
    note: str | None
    kind: Literal["flat", "tiered"]
    created: datetime
    extras: tuple[tuple[str, int], ...] = ()


class Line(Entity[int]):
    text: str


class Order(AggregateRoot[UUID]):
    total: Money
    lines: list[Line] = field(default_factory=list[Line])
    status: str = "draft"

    @classmethod
    def place(cls, order_id: UUID, total: Money) -> Order:
        if total.amount == 0:
            raise InvariantViolation("An order cannot be free")
        return cls(order_id, total)


class TestValueObjects:
    @given(value_objects(Money))
    def test_every_drawn_value_is_valid(self, money: Money) -> None:
        """Candidates refused by validation are rejected, never drawn."""
        assert money.amount >= 0
        assert money.amount.as_tuple().exponent == -2

    @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(value_objects(Quote))
    def test_nested_values_and_containers_follow_annotations(self, quote: Quote) -> None:
        """Nested value objects, unions, literals, tuples and sets are built from types."""
        assert quote.period.end > quote.period.start
        assert all(isinstance(line, Money) for line in quote.lines)
        assert isinstance(quote.tags, frozenset)
        assert isinstance(quote.pair[0], int)
        assert isinstance(quote.pair[1], str)
        assert quote.kind in {"flat", "tiered"}
        assert quote.note is None or isinstance(quote.note, str)
        assert quote.created.utcoffset() is not None
        assert all(isinstance(k, str) and isinstance(v, int) for k, v in quote.extras)

    @given(value_objects(Money, currency=st.just(Currency.EUR)))
    def test_field_overrides_are_used(self, money: Money) -> None:
        """A strategy passed for a field replaces the one from its annotation."""
        assert money.currency is Currency.EUR

    def test_unknown_override_is_refused(self) -> None:
        """A misspelt field name is an error naming the fields."""
        with pytest.raises(TypeError, match=r"unknown field.*currncy.*amount, currency"):
            value_objects(Money, currncy=st.just(Currency.EUR))

    def test_only_value_objects_are_accepted(self) -> None:
        """value_objects() refuses classes that are not value objects."""
        with pytest.raises(TypeError, match="takes a ValueObject subclass"):
            value_objects(Line)  # type: ignore[type-var]  # pyright: ignore[reportArgumentType]


class TestAggregates:
    @given(aggregates(Order.place))
    def test_factory_commands_build_valid_aggregates(self, order: Order) -> None:
        """Arguments the factory refuses are rejected; defaults are kept."""
        assert order.total.amount > 0
        assert order.status == "draft"
        assert order.lines == []
        assert order.version == 0

    @given(aggregates(Order, status=st.sampled_from(["draft", "paid"])))
    def test_classes_work_as_factories_and_defaults_can_be_drawn(self, order: Order) -> None:
        """A class is a factory too; a parameter with a default is drawn when given."""
        assert order.status in {"draft", "paid"}
        assert isinstance(order.id, UUID)

    def test_unknown_parameter_is_refused(self) -> None:
        """A misspelt parameter is an error naming the factory's parameters."""
        with pytest.raises(TypeError, match=r"unknown parameter.*totl"):
            aggregates(Order.place, totl=st.none())

    def test_unannotated_parameter_needs_a_strategy(self) -> None:
        """A required parameter without annotation must be given a strategy."""

        def make(order_id):  # type: ignore[no-untyped-def]
            return Order(order_id, Money(Decimal(1), Currency.EUR))

        with pytest.raises(TypeError, match="'order_id' has no annotation"):
            aggregates(make)  # pyright: ignore[reportUnknownArgumentType]


class TestStrategyFor:
    @given(strategy_for(set[Currency]))
    def test_sets_of_enums(self, currencies: set[Currency]) -> None:
        """Sets are built from their element type, at most five elements."""
        assert len(currencies) <= 5
        assert all(isinstance(c, Currency) for c in currencies)

    @given(strategy_for(Decimal))
    def test_decimals_are_finite(self, amount: Decimal) -> None:
        """Decimals are finite and bounded, so comparisons and arithmetic never raise."""
        assert amount.is_finite()
        assert abs(amount) <= 10**12
        assert (amount * 100).quantize(Decimal("0.01")) == amount * 100

    @settings(max_examples=300)
    @given(strategy_for(str))
    def test_strings_are_ones_a_store_can_carry(self, text: str) -> None:
        """No NUL (PostgreSQL refuses it) and no lone surrogate: what the codec stores."""
        assert "\x00" not in text
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in text)

    @given(strategy_for(float))
    def test_floats_are_finite(self, number: float) -> None:
        """NaN and infinities have no JSON form: the codec refuses them."""
        assert math.isfinite(number)
