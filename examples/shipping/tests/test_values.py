"""The shipping context's value objects and air waybill numbers."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from examples.shipping.domain import (
    Address,
    CarrierScan,
    Dimensions,
    Money,
    Parcel,
    PickupWindow,
    ScanKind,
    Weight,
    awb,
)
from examples.shipping.ids import ParcelId
from examples.shipping.tests.factories import POST, T0, at
from tactical import InvariantViolation


class TestMoney:
    """Money is integer cents in an ISO 4217 currency."""

    def test_formats_cents_as_an_amount(self) -> None:
        """2490 cents EUR reads 24.90 EUR."""
        assert str(Money(2490, "EUR")) == "24.90 EUR"

    def test_equal_by_value(self) -> None:
        """Two equal amounts in one currency are the same money."""
        assert Money(100, "USD") == Money(100, "USD")
        assert Money(100, "USD") != Money(100, "EUR")

    @pytest.mark.parametrize("amount", [Decimal("1.5"), 1.5, True])
    def test_amount_must_be_integer_cents(self, amount: object) -> None:
        """Floats, Decimals and bools are refused, naming the value."""
        with pytest.raises(InvariantViolation, match="must be integer cents"):
            Money(amount, "EUR")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]

    def test_amount_is_never_negative(self) -> None:
        """A price below zero is refused."""
        with pytest.raises(InvariantViolation, match="-1 cents is negative"):
            Money(-1, "EUR")

    @pytest.mark.parametrize("currency", ["EU", "EURO", "eur", "E1R"])
    def test_currency_must_be_three_capital_letters(self, currency: str) -> None:
        """Malformed currency codes are refused, naming the code."""
        with pytest.raises(InvariantViolation, match=f"'{currency}' is not an ISO 4217"):
            Money(100, currency)


class TestWeightAndDimensions:
    """Weights and sides are positive decimals."""

    @pytest.mark.parametrize("kg", ["0", "-1", "NaN", "Infinity"])
    def test_weight_must_be_positive_and_finite(self, kg: str) -> None:
        """Zero, negative and non-finite weights are refused."""
        with pytest.raises(InvariantViolation, match="Weight must be positive"):
            Weight(Decimal(kg))

    def test_weights_are_ordered(self) -> None:
        """A lighter weight compares below a heavier one."""
        assert Weight(Decimal(1)) < Weight(Decimal("1.5"))

    def test_a_side_must_be_positive(self) -> None:
        """A flat box is refused, naming the side."""
        with pytest.raises(InvariantViolation, match="height_cm must be positive, got 0"):
            Dimensions(Decimal(1), Decimal(1), Decimal(0))


class TestAddress:
    """Addresses have every part and an ISO 3166-1 alpha-2 country."""

    def test_country_must_be_two_capital_letters(self) -> None:
        """A three-letter country code is refused."""
        with pytest.raises(InvariantViolation, match="'DEU' is not an ISO 3166-1 alpha-2"):
            Address("Main St 1", "Berlin", "10117", "DEU")

    def test_parts_must_not_be_blank(self) -> None:
        """A blank city is refused."""
        with pytest.raises(InvariantViolation, match="Address city must not be blank"):
            Address("Main St 1", " ", "10117", "DE")

    def test_replace_validates_too(self) -> None:
        """A copy with a bad country is refused like a new address."""
        address = Address("Main St 1", "Berlin", "10117", "DE")
        with pytest.raises(InvariantViolation, match="'de' is not"):
            address.replace(iso_country="de")


class TestPickupWindow:
    """A pickup window is an aware, non-empty range."""

    def test_start_must_be_before_end(self) -> None:
        """An empty window is refused."""
        with pytest.raises(InvariantViolation, match="is not before its end"):
            PickupWindow(at(10), at(10))

    def test_bounds_must_be_timezone_aware(self) -> None:
        """A naive bound is refused."""
        naive = datetime(2026, 7, 6, 8, 0)
        with pytest.raises(InvariantViolation, match="Pickup window start must be timezone-aware"):
            PickupWindow(naive, naive + timedelta(hours=1))


class TestCarrierScan:
    """Scans are aware, located and, for exceptions, explained."""

    def test_exception_scan_needs_a_note(self) -> None:
        """An exception scan without a note is refused."""
        with pytest.raises(InvariantViolation, match="Exception scan note must not be blank"):
            CarrierScan(ScanKind.EXCEPTION, POST, "Leipzig hub", T0)

    def test_scan_location_must_not_be_blank(self) -> None:
        """Where the scan happened is required."""
        with pytest.raises(InvariantViolation, match="Scan location must not be blank"):
            CarrierScan(ScanKind.PICKUP, POST, "", T0)


class TestParcel:
    """Parcels are child entities, equal by id."""

    def test_parcels_are_equal_by_id(self) -> None:
        """A parcel re-weighed is still the same parcel."""
        box = Dimensions(Decimal(1), Decimal(1), Decimal(1))
        light = Parcel(ParcelId("P1"), Weight(Decimal(1)), box, "books")
        heavy = Parcel(ParcelId("P1"), Weight(Decimal(9)), box, "books")
        assert light == heavy

    def test_contents_must_be_described(self) -> None:
        """Customs needs a description."""
        box = Dimensions(Decimal(1), Decimal(1), Decimal(1))
        with pytest.raises(InvariantViolation, match="Parcel P1 contents description"):
            Parcel(ParcelId("P1"), Weight(Decimal(1)), box, "")


class TestAwb:
    """Air waybill numbers: prefix, serial, serial modulo 7."""

    def test_check_digit_is_the_serial_modulo_7(self) -> None:
        """1234567 mod 7 is 5."""
        assert awb(176, 1234567) == "17612345675"

    @pytest.mark.parametrize(("prefix", "serial"), [(1000, 1), (-1, 1), (1, 10_000_000)])
    def test_out_of_range_parts_are_refused(self, prefix: int, serial: int) -> None:
        """A prefix over 3 digits or a serial over 7 is refused."""
        with pytest.raises(ValueError, match=r"is not [37] digits"):
            awb(prefix, serial)
