"""The shipping context's domain events: facts about a shipment, named in the past tense.

Events are the contract other contexts read (the inventory context reacts to
:class:`LabelPrinted`), so they carry ids and plain values, not the shipment's value objects:
the model may change shape without changing what was published. Every event's
``occurred_at`` is the time the command was given (from the application's clock), except
:class:`PickupDeadlinePassed`'s: the message of a durable timer, it occurs at its deadline.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from examples.shipping.ids import CarrierId, CustomerId, InvoiceId, ParcelId, ShipmentId
from tactical import DomainEvent

__all__ = [
    "CarrierAssigned",
    "InvoiceAttached",
    "LabelPrinted",
    "ParcelAdded",
    "PickupDeadlinePassed",
    "ShipmentBooked",
    "ShipmentCancelled",
    "ShipmentDelivered",
    "ShipmentEvent",
    "ShipmentExceptionRecorded",
    "ShipmentInTransit",
    "ShipmentPickedUp",
]


class ShipmentEvent(DomainEvent):
    """Base of every shipping event: something happened to the shipment ``shipment_id``."""

    shipment_id: ShipmentId


class ShipmentBooked(ShipmentEvent):
    """A customer booked a shipment of ``parcel_count`` parcels in ``service_class``."""

    customer_id: CustomerId
    service_class: str
    parcel_count: int
    total_weight_kg: Decimal
    quoted_price_cents: int
    currency: str


class ParcelAdded(ShipmentEvent):
    """A parcel was added to a booked shipment, which now weighs ``total_weight_kg``."""

    parcel_id: ParcelId
    total_weight_kg: Decimal


class CarrierAssigned(ShipmentEvent):
    """The carrier ``carrier_id``, which serves the origin country, will move the shipment."""

    carrier_id: CarrierId


class InvoiceAttached(ShipmentEvent):
    """The billing context's invoice ``invoice_id`` bills this shipment."""

    invoice_id: InvoiceId


class LabelPrinted(ShipmentEvent):
    """One label per parcel was printed for ``carrier_id``; the shipment can no longer be
    cancelled. The inventory context takes ``label_count`` labels from its stock."""

    carrier_id: CarrierId
    label_count: int


class PickupDeadlinePassed(ShipmentEvent):
    """The end of the pickup window, ``deadline``, came: the message of a durable timer.

    Scheduled when the label is printed, in the same transaction, for the end of the
    shipment's pickup window (its ``occurred_at`` is that deadline); the pickup scan cancels
    it. When it fires, the shipment gets an exception unless it was picked up meanwhile.
    """

    deadline: datetime


class ShipmentPickedUp(ShipmentEvent):
    """The carrier scanned the parcels at pick-up."""

    carrier_id: CarrierId
    location: str
    scanned_at: datetime


class ShipmentInTransit(ShipmentEvent):
    """The carrier scanned the shipment on its way (at a hub, on a truck)."""

    carrier_id: CarrierId
    location: str
    scanned_at: datetime


class ShipmentExceptionRecorded(ShipmentEvent):
    """Something went wrong on the way: reported by a carrier scan (``scanned``) or by
    operations without one."""

    reason: str
    scanned: bool


class ShipmentDelivered(ShipmentEvent):
    """The shipment was handed over to ``received_by``."""

    received_by: str


class ShipmentCancelled(ShipmentEvent):
    """The shipment was cancelled before its label was printed."""

    reason: str
