"""Value objects of the policy context: money, addresses and date ranges."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from tactical import InvariantViolation, ValueObject

CENT = Decimal("0.01")


class Money(ValueObject):
    """An amount of a currency, never negative, in cents (``Decimal``, two places)."""

    amount: Decimal
    currency: str

    def validate(self) -> None:
        if not self.amount.is_finite() or self.amount < 0:
            raise InvariantViolation(f"Money amount {self.amount} must be a non-negative number")
        if self.amount != self.amount.quantize(CENT):
            raise InvariantViolation(f"Money amount {self.amount} has more than two decimals")
        if len(self.currency) != 3 or not self.currency.isalpha() or not self.currency.isupper():
            raise InvariantViolation(
                f"Currency {self.currency!r} must be a 3-letter uppercase ISO 4217 code"
            )

    @classmethod
    def zero(cls, currency: str) -> Money:
        """No money of ``currency``."""
        return cls(Decimal("0.00"), currency)

    def add(self, other: Money) -> Money:
        """The sum; both must be of the same currency."""
        self._check_currency(other, "add")
        return Money(self.amount + other.amount, self.currency)

    def multiply(self, factor: Decimal) -> Money:
        """This amount times ``factor``, rounded to the cent (half even)."""
        return Money((self.amount * factor).quantize(CENT), self.currency)

    def exceeds(self, other: Money) -> bool:
        """Whether this is more than ``other`` (same currency)."""
        self._check_currency(other, "compare")
        return self.amount > other.amount

    def _check_currency(self, other: Money, action: str) -> None:
        if other.currency != self.currency:
            raise InvariantViolation(
                f"Cannot {action} {self.currency} and {other.currency}: {self} vs {other}"
            )

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


class Address(ValueObject):
    """A postal address."""

    street: str
    city: str
    state: str
    zip_code: str
    country: str = "US"

    def validate(self) -> None:
        for name in ("street", "city", "zip_code"):
            if not getattr(self, name).strip():
                raise InvariantViolation(f"Address {name} must not be empty")
        if len(self.country) != 2 or not self.country.isupper():
            raise InvariantViolation(f"Country {self.country!r} must be an ISO 3166 alpha-2 code")


class DateRange(ValueObject):
    """The days from ``start`` (included) to ``end`` (excluded); ``end`` after ``start``."""

    start: date
    end: date

    def validate(self) -> None:
        if self.end <= self.start:
            raise InvariantViolation(
                f"DateRange end {self.end} must be after its start {self.start}"
            )

    @property
    def days(self) -> int:
        """How many days the range covers."""
        return (self.end - self.start).days

    def contains(self, day: date) -> bool:
        """Whether ``day`` falls within the range."""
        return self.start <= day < self.end

    def overlaps(self, other: DateRange) -> bool:
        """Whether the two ranges share at least one day."""
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{self.start} to {self.end}"
