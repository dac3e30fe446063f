"""Builders of valid shipping objects for the tests, at fixed, timezone-aware times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from examples.shipping.adapters import (
    AwbSequence,
    InMemoryCarrierDirectory,
    ShippingApplication,
    SteppingClock,
)
from examples.shipping.domain import (
    Address,
    CarrierScan,
    Dimensions,
    Money,
    Parcel,
    PickupWindow,
    ScanKind,
    ServiceClass,
    Shipment,
    Weight,
    awb,
)
from examples.shipping.ids import CarrierId, CustomerId, ParcelId, RateSnapshotId, ShipmentId
from tactical import EventBus

Build = Callable[[EventBus], ShippingApplication]
"""Wires both contexts around a bus (the ``build`` fixture)."""

T0 = datetime(2026, 7, 6, 8, 0, tzinfo=UTC)
SHIPMENT_ID = awb(176, 1234567)
CUSTOMER = CustomerId("CUST-0042")
RATE = RateSnapshotId("RATE-2026-07-0099")
PRICE = Money(2490, "EUR")
POST = CarrierId("PARCEL-POST")
ALPINE = CarrierId("ALPINE-EXPRESS")
BERLIN = Address("Friedrichstrasse 10", "Berlin", "10117", "DE")
VIENNA = Address("Ringstrasse 5", "Vienna", "1010", "AT")
CARRIERS = InMemoryCarrierDirectory({POST: {"DE", "AT"}, ALPINE: {"AT", "CH"}})


def at(minutes: int) -> datetime:
    """``minutes`` after the tests' fixed start time."""
    return T0 + timedelta(minutes=minutes)


def clock() -> SteppingClock:
    """A clock starting at the fixed start time, one minute per reading."""
    return SteppingClock(T0)


def awbs() -> AwbSequence:
    """Air waybill numbers starting with :data:`SHIPMENT_ID`."""
    return AwbSequence(176, 1234567)


def parcel(number: int = 1, kg: str = "10") -> Parcel:
    """A parcel ``P<number>`` of ``kg`` kilograms."""
    return Parcel(
        ParcelId(f"P{number}"),
        Weight(Decimal(kg)),
        Dimensions(Decimal(40), Decimal(30), Decimal(20)),
        "books",
    )


def window() -> PickupWindow:
    """A pickup window from two to six hours after the start time."""
    return PickupWindow(at(120), at(360))


def book(
    *parcels: Parcel,
    service_class: ServiceClass = ServiceClass.GROUND,
    origin: Address = BERLIN,
    shipment_id: ShipmentId = SHIPMENT_ID,
) -> Shipment:
    """A shipment booked at the start time (default: one 10 kg parcel, ground, from Berlin)."""
    return Shipment.book(
        shipment_id,
        customer_id=CUSTOMER,
        service_class=service_class,
        origin=origin,
        destination=VIENNA,
        pickup_window=window(),
        parcels=parcels or (parcel(),),
        rate_snapshot_id=RATE,
        quoted_price=PRICE,
        at=T0,
    )


def booked() -> Shipment:
    """A booked shipment with no pending events."""
    shipment = book()
    shipment.clear_events()
    return shipment


def with_carrier() -> Shipment:
    """A booked shipment assigned to :data:`POST`, with no pending events."""
    shipment = booked()
    shipment.assign_carrier(POST, CARRIERS, at=at(1))
    shipment.clear_events()
    return shipment


def printed() -> Shipment:
    """A shipment whose label was printed at minute 2, with no pending events."""
    shipment = with_carrier()
    shipment.print_label(at=at(2))
    shipment.clear_events()
    return shipment


def scan(kind: ScanKind, minutes: int, *, carrier: CarrierId = POST, note: str = "") -> CarrierScan:
    """A scan by ``carrier`` at minute ``minutes``."""
    return CarrierScan(kind, carrier, "Berlin depot", at(minutes), note)


def picked_up() -> Shipment:
    """A shipment picked up at minute 10, with no pending events."""
    shipment = printed()
    shipment.record_scan(scan(ScanKind.PICKUP, 10))
    shipment.clear_events()
    return shipment


def in_transit() -> Shipment:
    """A shipment scanned in transit at minute 20, with no pending events."""
    shipment = picked_up()
    shipment.record_scan(scan(ScanKind.IN_TRANSIT, 20))
    shipment.clear_events()
    return shipment


def delivered() -> Shipment:
    """A shipment delivered at minute 30, with no pending events."""
    shipment = in_transit()
    shipment.record_delivered("M. Huber", at=at(30))
    shipment.clear_events()
    return shipment


def excepted() -> Shipment:
    """A printed shipment with an exception reported without a scan, no pending events."""
    shipment = printed()
    shipment.record_exception("parcels not ready", at=at(5))
    shipment.clear_events()
    return shipment


def cancelled() -> Shipment:
    """A shipment cancelled before printing, with no pending events."""
    shipment = booked()
    shipment.cancel("customer changed their mind", at=at(1))
    shipment.clear_events()
    return shipment


def printable(app: ShippingApplication, *parcels: Parcel) -> ShipmentId:
    """Book a shipment of ``parcels`` (default: one) through ``app``, assigned to PARCEL-POST."""
    shipment_id = app.shipping.book(
        customer_id=CUSTOMER,
        service_class=ServiceClass.GROUND,
        origin=BERLIN,
        destination=VIENNA,
        pickup_window=window(),
        parcels=parcels or (parcel(),),
        rate_snapshot_id=RATE,
        quoted_price=PRICE,
    )
    app.shipping.assign_carrier(shipment_id, POST)
    return shipment_id
