"""Value objects and enumerations of the shipping context: money, weights, addresses, scans.

Every value validates itself on construction (and on ``replace``); statuses and their allowed
transitions are explicit (:data:`TRANSITIONS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from examples.shipping.ids import CarrierId, ShipmentId
from tactical import InvariantViolation, ValueObject

__all__ = [
    "SCAN_TARGETS",
    "TRANSITIONS",
    "Address",
    "CarrierScan",
    "Dimensions",
    "Money",
    "PickupWindow",
    "ScanKind",
    "ServiceClass",
    "ShipmentStatus",
    "Weight",
    "awb",
    "check_awb",
    "require_aware",
    "require_text",
]


_CURRENCY = re.compile(r"[A-Z]{3}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_AWB = re.compile(r"[0-9]{11}")


def require_aware(moment: datetime, what: str) -> None:
    """Refuse a naive datetime: every time in this context is timezone-aware.

    Raises:
        InvariantViolation: ``moment`` has no UTC offset; the message names ``what``.
    """
    if moment.utcoffset() is None:
        raise InvariantViolation(f"{what} must be timezone-aware, got naive {moment.isoformat()}")


def awb(prefix: int, serial: int) -> ShipmentId:
    """The air waybill number for a carrier ``prefix`` (3 digits) and ``serial`` (7 digits).

    The 11th digit is the serial modulo 7, as on real air waybills.

    Raises:
        ValueError: ``prefix`` or ``serial`` is out of range.
    """
    if not 0 <= prefix <= 999:
        raise ValueError(f"AWB prefix {prefix} is not 3 digits")
    if not 0 <= serial <= 9_999_999:
        raise ValueError(f"AWB serial {serial} is not 7 digits")
    return ShipmentId(f"{prefix:03d}{serial:07d}{serial % 7}")


def check_awb(shipment_id: str) -> None:
    if not _AWB.fullmatch(shipment_id) or int(shipment_id[3:10]) % 7 != int(shipment_id[10]):
        raise InvariantViolation(
            f"Shipment id {shipment_id!r} is not an air waybill number "
            "(11 digits, the last being the 7-digit serial modulo 7)"
        )


def require_text(value: str, what: str) -> None:
    if not value.strip():
        raise InvariantViolation(f"{what} must not be blank, got {value!r}")


# -- value objects ----------------------------------------------------------------------------


class Money(ValueObject):
    """An amount of money in integer cents (never floats) and an ISO 4217 currency code.

    In this context money is a price, so it is never negative.

    Raises:
        InvariantViolation: ``amount_cents`` is not a non-negative int, or ``currency`` is
            not three upper-case letters.
    """

    amount_cents: int
    currency: str

    def validate(self) -> None:
        """Check the amount and the currency code."""
        # Refuses floats, Decimals and bools, which the annotation alone does not stop.
        if type(self.amount_cents) is not int:
            raise InvariantViolation(
                f"Money amount must be integer cents, got {self.amount_cents!r}"
            )
        if self.amount_cents < 0:
            raise InvariantViolation(f"Money amount {self.amount_cents} cents is negative")
        if not _CURRENCY.fullmatch(self.currency):
            raise InvariantViolation(
                f"Money currency {self.currency!r} is not an ISO 4217 code (three letters A-Z)"
            )

    def __str__(self) -> str:
        return f"{self.amount_cents // 100}.{self.amount_cents % 100:02d} {self.currency}"


class Weight(ValueObject, order=True):
    """A positive weight in kilograms.

    Raises:
        InvariantViolation: ``kg`` is not a finite, positive Decimal.
    """

    kg: Decimal

    def validate(self) -> None:
        """Check that the weight is finite and positive."""
        if not self.kg.is_finite() or self.kg <= 0:
            raise InvariantViolation(f"Weight must be positive, got {self.kg} kg")

    def __str__(self) -> str:
        return f"{self.kg} kg"


class Dimensions(ValueObject):
    """A parcel's outer size in centimetres; every side is positive.

    Raises:
        InvariantViolation: A side is not a finite, positive Decimal.
    """

    length_cm: Decimal
    width_cm: Decimal
    height_cm: Decimal

    def validate(self) -> None:
        """Check that every side is finite and positive."""
        for name in ("length_cm", "width_cm", "height_cm"):
            side: Decimal = getattr(self, name)
            if not side.is_finite() or side <= 0:
                raise InvariantViolation(f"Dimensions {name} must be positive, got {side}")


class Address(ValueObject):
    """A postal address; ``iso_country`` is an ISO 3166-1 alpha-2 code such as ``DE``.

    Raises:
        InvariantViolation: A part is blank, or the country is not two letters A-Z.
    """

    street: str
    city: str
    postal_code: str
    iso_country: str

    def validate(self) -> None:
        """Check that no part is blank and that the country code is well formed."""
        require_text(self.street, "Address street")
        require_text(self.city, "Address city")
        require_text(self.postal_code, "Address postal code")
        if not _COUNTRY.fullmatch(self.iso_country):
            raise InvariantViolation(
                f"Address country {self.iso_country!r} is not an ISO 3166-1 alpha-2 code"
            )

    def __str__(self) -> str:
        return f"{self.street}, {self.postal_code} {self.city}, {self.iso_country}"


class PickupWindow(ValueObject):
    """When the carrier may collect the parcels: ``start`` before ``end``, both aware.

    Raises:
        InvariantViolation: A bound is naive, or ``start`` is not before ``end``.
    """

    start: datetime
    end: datetime

    def validate(self) -> None:
        """Check awareness and order of the bounds."""
        require_aware(self.start, "Pickup window start")
        require_aware(self.end, "Pickup window end")
        if self.start >= self.end:
            raise InvariantViolation(
                f"Pickup window start {self.start.isoformat()} is not before "
                f"its end {self.end.isoformat()}"
            )


class ServiceClass(StrEnum):
    """How fast the shipment travels; each class carries a total weight limit."""

    GROUND = "GROUND"
    EXPRESS = "EXPRESS"
    SAMEDAY = "SAMEDAY"

    @property
    def max_total_weight(self) -> Weight:
        """The heaviest total a shipment of this class may weigh (invariant 1)."""
        return _MAX_TOTAL_WEIGHT[self]


_MAX_TOTAL_WEIGHT: Final[Mapping[ServiceClass, Weight]] = MappingProxyType(
    {
        ServiceClass.GROUND: Weight(Decimal(1000)),
        ServiceClass.EXPRESS: Weight(Decimal(150)),
        ServiceClass.SAMEDAY: Weight(Decimal(30)),
    }
)


class ShipmentStatus(StrEnum):
    """Where a shipment is in its life; :data:`TRANSITIONS` lists the allowed moves."""

    BOOKED = "BOOKED"
    LABEL_PRINTED = "LABEL_PRINTED"
    PICKED_UP = "PICKED_UP"
    IN_TRANSIT = "IN_TRANSIT"
    EXCEPTION = "EXCEPTION"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"

    def can_become(self, target: ShipmentStatus) -> bool:
        """Whether a shipment in this status may move to ``target``."""
        return target in TRANSITIONS[self]


_S = ShipmentStatus

TRANSITIONS: Final[Mapping[ShipmentStatus, frozenset[ShipmentStatus]]] = MappingProxyType(
    {
        _S.BOOKED: frozenset({_S.LABEL_PRINTED, _S.CANCELLED}),
        _S.LABEL_PRINTED: frozenset({_S.PICKED_UP, _S.EXCEPTION}),
        _S.PICKED_UP: frozenset({_S.IN_TRANSIT, _S.EXCEPTION, _S.DELIVERED}),
        _S.IN_TRANSIT: frozenset({_S.IN_TRANSIT, _S.EXCEPTION, _S.DELIVERED}),
        _S.EXCEPTION: frozenset({_S.PICKED_UP, _S.IN_TRANSIT, _S.DELIVERED}),
        _S.DELIVERED: frozenset(),
        _S.CANCELLED: frozenset(),
    }
)
"""Each status and the statuses it may move to; ``DELIVERED`` and ``CANCELLED`` are final.

An ``EXCEPTION`` may be recorded without a carrier scan (by operations), which is why
delivery from ``EXCEPTION`` still checks that a scan exists (invariant 3).
"""


class ScanKind(StrEnum):
    """What a carrier scan reports, and so which status it moves the shipment to."""

    PICKUP = "PICKUP"
    IN_TRANSIT = "IN_TRANSIT"
    EXCEPTION = "EXCEPTION"


class CarrierScan(ValueObject):
    """One scan of the shipment's barcode by a carrier, as its tracking feed reports it.

    Raises:
        InvariantViolation: ``scanned_at`` is naive, ``location`` is blank, or an exception
            scan has no ``note`` saying what went wrong.
    """

    kind: ScanKind
    carrier_id: CarrierId
    location: str
    scanned_at: datetime
    note: str = ""

    def validate(self) -> None:
        """Check the time, the location and, for an exception, the note."""
        require_aware(self.scanned_at, "Scan time")
        require_text(self.location, "Scan location")
        if self.kind is ScanKind.EXCEPTION:
            require_text(self.note, "Exception scan note")


SCAN_TARGETS: Final[Mapping[ScanKind, ShipmentStatus]] = MappingProxyType(
    {
        ScanKind.PICKUP: ShipmentStatus.PICKED_UP,
        ScanKind.IN_TRANSIT: ShipmentStatus.IN_TRANSIT,
        ScanKind.EXCEPTION: ShipmentStatus.EXCEPTION,
    }
)
