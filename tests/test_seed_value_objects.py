"""The design documents' value objects, written twice: as their plain dataclasses and on tactical.

``Money``, ``DateRange`` and ``Address`` come from the insurance design document
(seeds/000), ``Weight`` from the shipping one (seeds/004). The plain versions are the
documents' code as written; the tactical versions must accept and refuse exactly the same
inputs, behave the same, and take fewer lines.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tactical import InvariantViolation, ValueObject

# -- the design documents' plain dataclasses ---------------------------------------------------


@dataclass(frozen=True)
class PlainMoney:
    amount: Decimal
    currency: str

    def __post_init__(self):
        if self.amount < 0:
            raise ValueError("Money amount cannot be negative")
        if len(self.currency) != 3:
            raise ValueError("Currency must be a 3-letter ISO code")

    def add(self, other: PlainMoney) -> PlainMoney:
        if self.currency != other.currency:
            raise ValueError(f"Cannot add {self.currency} and {other.currency}")
        return PlainMoney(self.amount + other.amount, self.currency)

    def multiply(self, factor: Decimal) -> PlainMoney:
        return PlainMoney((self.amount * factor).quantize(Decimal("0.01")), self.currency)


@dataclass(frozen=True)
class PlainAddress:
    street: str
    city: str
    state: str
    zip_code: str
    country: str = "US"


@dataclass(frozen=True)
class PlainDateRange:
    start: date
    end: date

    def __post_init__(self):
        if self.end <= self.start:
            raise ValueError("End date must be after start date")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def overlaps(self, other: PlainDateRange) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class PlainWeight:
    kg: Decimal

    def __post_init__(self):
        if self.kg <= 0:
            raise ValueError("Weight must be positive")


# -- the same value objects on tactical ---------------------------------------------------------


class Money(ValueObject):
    amount: Decimal
    currency: str

    def validate(self) -> None:
        if self.amount < 0:
            raise InvariantViolation(f"Money amount {self.amount} cannot be negative")
        if len(self.currency) != 3:
            raise InvariantViolation(f"Currency {self.currency!r} must be a 3-letter ISO code")

    def add(self, other: Money) -> Money:
        if self.currency != other.currency:
            raise InvariantViolation(f"Cannot add {self.currency} and {other.currency}")
        return self.replace(amount=self.amount + other.amount)

    def multiply(self, factor: Decimal) -> Money:
        return self.replace(amount=(self.amount * factor).quantize(Decimal("0.01")))


class Address(ValueObject):
    street: str
    city: str
    state: str
    zip_code: str
    country: str = "US"


class DateRange(ValueObject):
    start: date
    end: date

    def validate(self) -> None:
        if self.end <= self.start:
            raise InvariantViolation(f"End date {self.end} must be after start date {self.start}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def overlaps(self, other: DateRange) -> bool:
        return self.start < other.end and other.start < self.end


class Weight(ValueObject):
    kg: Decimal

    def validate(self) -> None:
        if self.kg <= 0:
            raise InvariantViolation(f"Weight {self.kg} kg must be positive")


PAIRS: list[tuple[type, type]] = [
    (PlainMoney, Money),
    (PlainAddress, Address),
    (PlainDateRange, DateRange),
    (PlainWeight, Weight),
]

# -- strategies ---------------------------------------------------------------------------------

amounts = st.one_of(
    st.decimals(min_value=-1000, max_value=1000, places=2),
    st.decimals(),  # NaN, sNaN and infinities included: both versions must agree on them too
    st.integers(-5, 5),
)
currencies = st.one_of(st.sampled_from(["USD", "EUR"]), st.text(max_size=5))
days = st.dates(min_value=date(2024, 1, 1), max_value=date(2024, 1, 10))
texts = st.text(max_size=4)


def outcome(build: Callable[[], Any]) -> tuple[str, object]:
    """What building a value does: its fields, a ValueError refusal, or another error type."""
    try:
        value = build()
    except ValueError:
        return ("refused", None)
    except Exception as error:  # e.g. comparing a signalling NaN: must match between versions
        return ("crashed", type(error))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return ("built", dataclasses.astuple(value))
    return ("built", value)


def same_behaviour(plain: Callable[[], Any], tactical: Callable[[], Any]) -> tuple[str, object]:
    """Run both builders and require the same outcome; return it."""
    expected = outcome(plain)
    assert outcome(tactical) == expected
    return expected


class TestSameValidation:
    @given(amounts, currencies)
    def test_money_accepts_and_refuses_the_same_inputs(
        self, amount: Decimal, currency: str
    ) -> None:
        """Money on tactical is built exactly when the plain dataclass is, with the same fields."""
        result = same_behaviour(
            lambda: PlainMoney(amount, currency), lambda: Money(amount, currency)
        )
        if result[0] == "refused":
            with pytest.raises(InvariantViolation) as refused:
                Money(amount, currency)
            assert str(amount) in str(refused.value) or repr(currency) in str(refused.value)

    @given(amounts, amounts, currencies, currencies)
    def test_money_add_behaves_the_same(
        self, a: Decimal, b: Decimal, currency_a: str, currency_b: str
    ) -> None:
        """add() gives the same sum, or refuses the same mixed currencies, in both versions."""
        same_behaviour(
            lambda: PlainMoney(a, currency_a).add(PlainMoney(b, currency_b)),
            lambda: Money(a, currency_a).add(Money(b, currency_b)),
        )

    @given(amounts, st.decimals(min_value=-3, max_value=3, places=3))
    def test_money_multiply_behaves_the_same(self, amount: Decimal, factor: Decimal) -> None:
        """multiply() rounds to cents and re-validates identically in both versions."""
        same_behaviour(
            lambda: PlainMoney(amount, "USD").multiply(factor),
            lambda: Money(amount, "USD").multiply(factor),
        )

    @given(days, days)
    def test_date_range_accepts_and_refuses_the_same_inputs(self, start: date, end: date) -> None:
        """DateRange exists exactly when end is after start, in both versions."""
        result = same_behaviour(lambda: PlainDateRange(start, end), lambda: DateRange(start, end))
        assert (result[0] == "built") == (end > start)
        if result[0] == "refused":
            with pytest.raises(InvariantViolation, match=f"{end}.*{start}"):
                DateRange(start, end)

    @given(days, days, days, days)
    def test_date_range_days_and_overlaps_agree(
        self, s1: date, e1: date, s2: date, e2: date
    ) -> None:
        """days and overlaps() give the same answers in both versions."""
        if not (e1 > s1 and e2 > s2):
            return
        plain, other_plain = PlainDateRange(s1, e1), PlainDateRange(s2, e2)
        ours, other_ours = DateRange(s1, e1), DateRange(s2, e2)
        assert ours.days == plain.days
        assert ours.overlaps(other_ours) == plain.overlaps(other_plain)
        assert ours.overlaps(other_ours) == other_ours.overlaps(ours)

    @given(amounts)
    def test_weight_accepts_and_refuses_the_same_inputs(self, kg: Decimal) -> None:
        """Weight exists exactly when the plain dataclass does: a positive number of kg."""
        result = same_behaviour(lambda: PlainWeight(kg), lambda: Weight(kg))
        if result[0] == "refused":
            with pytest.raises(InvariantViolation, match="must be positive"):
                Weight(kg)

    @given(texts, texts, texts, texts, st.none() | texts)
    def test_address_accepts_the_same_inputs_with_the_same_default(
        self, street: str, city: str, state: str, zip_code: str, country: str | None
    ) -> None:
        """Address takes the same fields, with country defaulting to US, in both versions."""
        if country is None:
            same_behaviour(
                lambda: PlainAddress(street, city, state, zip_code),
                lambda: Address(street, city, state, zip_code),
            )
            assert Address(street, city, state, zip_code).country == "US"
        else:
            same_behaviour(
                lambda: PlainAddress(street, city, state, zip_code, country),
                lambda: Address(street, city, state, zip_code, country),
            )

    def test_copies_with_changes_are_revalidated_in_both_versions(self) -> None:
        """dataclasses.replace revalidates the plain version; tactical's replace does the same."""
        with pytest.raises(ValueError, match="negative"):
            dataclasses.replace(PlainMoney(Decimal(1), "USD"), amount=Decimal(-1))
        with pytest.raises(InvariantViolation, match="-1 cannot be negative"):
            Money(Decimal(1), "USD").replace(amount=Decimal(-1))


class TestSameValueSemantics:
    @given(st.decimals(min_value=0, max_value=100, places=2), st.sampled_from(["USD", "EUR"]))
    def test_equal_fields_mean_equal_values_and_hashes(
        self, amount: Decimal, currency: str
    ) -> None:
        """Both versions are equal and hash alike for equal fields."""
        for cls in (PlainMoney, Money):
            assert cls(amount, currency) == cls(amount, currency)
            assert hash(cls(amount, currency)) == hash(cls(amount, currency))

    @pytest.mark.parametrize(("plain", "ours"), PAIRS)
    def test_both_versions_are_immutable(self, plain: type, ours: type) -> None:
        """Assigning to any field raises FrozenInstanceError in both versions."""
        samples: dict[type, tuple[Any, ...]] = {
            PlainMoney: (Decimal(1), "USD"),
            PlainAddress: ("1 Main St", "Springfield", "IL", "62701"),
            PlainDateRange: (date(2024, 1, 1), date(2024, 2, 1)),
            PlainWeight: (Decimal("2.5"),),
        }
        for cls in (plain, ours):
            value = cls(*samples[plain])
            for f in dataclasses.fields(value):
                with pytest.raises(dataclasses.FrozenInstanceError):
                    setattr(value, f.name, getattr(value, f.name))

    @pytest.mark.parametrize(("plain", "ours"), PAIRS)
    def test_both_versions_have_the_same_fields(self, plain: type, ours: type) -> None:
        """Field names, types and defaults are the same in both versions."""

        def shape(cls: type) -> list[tuple[str, object, object]]:
            return [(f.name, f.type, f.default) for f in dataclasses.fields(cls)]

        assert shape(ours) == shape(plain)


class TestFewerLines:
    @pytest.mark.parametrize(("plain", "ours"), PAIRS)
    def test_tactical_version_is_shorter(self, plain: type, ours: type) -> None:
        """Each value object takes fewer source lines on tactical than as a plain dataclass."""
        plain_lines = len(inspect.getsource(plain).splitlines())
        our_lines = len(inspect.getsource(ours).splitlines())
        assert our_lines < plain_lines, (ours.__name__, our_lines, plain_lines)

    def test_all_four_together_are_shorter(self) -> None:
        """Counted together, the tactical versions save at least one line per class."""
        plain_total = sum(len(inspect.getsource(p).splitlines()) for p, _ in PAIRS)
        our_total = sum(len(inspect.getsource(o).splitlines()) for _, o in PAIRS)
        assert our_total <= plain_total - len(PAIRS)
