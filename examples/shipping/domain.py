"""The shipping context's model: the ``Parcel`` entity and the ``Shipment`` root.

Its value objects live in :mod:`examples.shipping.values` (re-exported here).

A ``Shipment`` is the consistency boundary. It holds its parcels and value objects, refers
to the customer, the rate snapshot, the carrier and the invoice by id only, and enforces
every rule itself:

1. the total parcel weight never exceeds the service class's limit;
2. the assigned carrier serves the origin country (asked through a
   :class:`~examples.shipping.ports.CarrierDirectory`);
3. a shipment is delivered only after at least one carrier scan;
4. a shipment cannot be cancelled once its label is printed;
5. the service class never changes after booking.

Beyond the five, status changes follow :data:`TRANSITIONS` (so ``record_delivered`` checks
the current status, unlike the design sketch it comes from), every time is timezone-aware
and given by the caller (no hidden ``now()``: tests are deterministic), and time never runs
backwards within one shipment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from examples.shipping.events import (
    CarrierAssigned,
    InvoiceAttached,
    LabelPrinted,
    ParcelAdded,
    ShipmentBooked,
    ShipmentCancelled,
    ShipmentDelivered,
    ShipmentExceptionRecorded,
    ShipmentInTransit,
    ShipmentPickedUp,
)
from examples.shipping.ids import (
    CarrierId,
    CustomerId,
    InvoiceId,
    ParcelId,
    RateSnapshotId,
    ShipmentId,
)
from examples.shipping.ports import CarrierDirectory
from examples.shipping.values import (
    SCAN_TARGETS,
    TRANSITIONS,
    Address,
    CarrierScan,
    Dimensions,
    Money,
    PickupWindow,
    ScanKind,
    ServiceClass,
    ShipmentStatus,
    Weight,
    awb,
    check_awb,
    require_aware,
    require_text,
)
from tactical import AggregateRoot, Entity, InvalidStateError, InvariantViolation

__all__ = [
    "TRANSITIONS",
    "Address",
    "CarrierScan",
    "Dimensions",
    "Money",
    "Parcel",
    "PickupWindow",
    "ScanKind",
    "ServiceClass",
    "Shipment",
    "ShipmentStatus",
    "Weight",
    "awb",
    "require_aware",
]


# -- entities ---------------------------------------------------------------------------------


class Parcel(Entity[ParcelId]):
    """One box of a shipment: a child entity, reachable only through its ``Shipment``.

    Raises:
        InvariantViolation: ``contents_description`` is blank (customs needs it).
    """

    weight: Weight
    dimensions: Dimensions
    contents_description: str

    def __post_init__(self) -> None:
        require_text(self.contents_description, f"Parcel {self.id} contents description")


class Shipment(AggregateRoot[ShipmentId]):
    """A booked shipment of parcels from ``origin`` to ``destination``: the aggregate root.

    Create one with :meth:`book`; the constructor is for persistence. Every change goes
    through a command, which checks the rules and records one event. Other aggregates are
    referenced by id only: ``customer_id``, ``rate_snapshot_id`` (the pricing context's
    frozen quote; ``quoted_price`` is a copy of its amount), ``carrier_id`` and
    ``invoice_id``.

    Assigning ``service_class`` after construction raises :class:`InvariantViolation`
    (invariant 5): there is no command that changes it, and the field refuses to be set.
    """

    customer_id: CustomerId
    service_class: ServiceClass
    origin: Address
    destination: Address
    pickup_window: PickupWindow
    parcels: list[Parcel]
    rate_snapshot_id: RateSnapshotId
    quoted_price: Money
    booked_at: datetime
    status: ShipmentStatus = ShipmentStatus.BOOKED
    carrier_id: CarrierId | None = None
    invoice_id: InvoiceId | None = None
    label_printed_at: datetime | None = None
    scans: list[CarrierScan] = field(default_factory=list[CarrierScan])
    delivered_at: datetime | None = None
    received_by: str | None = None
    cancelled_at: datetime | None = None
    cancellation_reason: str | None = None

    if not TYPE_CHECKING:
        # Hidden from type checkers: a visible __setattr__ would make them accept assignments
        # to any attribute name, typos included.

        def __setattr__(self, name: str, value: object) -> None:
            # Invariant 5 lives in the root: the first assignment (by __init__, also when the
            # codec rebuilds a stored shipment) sets the class; any later one is refused.
            if name == "service_class" and "service_class" in vars(self):
                raise InvariantViolation(
                    f"Shipment {self.id} was booked as {self.service_class}; its service "
                    f"class cannot become {value} (book a new shipment instead)"
                )
            super().__setattr__(name, value)

    # -- queries ------------------------------------------------------------------------------

    @property
    def total_weight(self) -> Decimal:
        """The weight of all parcels together, in kilograms."""
        return sum((parcel.weight.kg for parcel in self.parcels), Decimal(0))

    @property
    def pickup_deadline(self) -> datetime:
        """When a printed shipment must have been picked up: the end of its pickup window."""
        return self.pickup_window.end

    # -- commands -----------------------------------------------------------------------------

    @classmethod
    def book(
        cls,
        shipment_id: ShipmentId,
        *,
        customer_id: CustomerId,
        service_class: ServiceClass,
        origin: Address,
        destination: Address,
        pickup_window: PickupWindow,
        parcels: Iterable[Parcel],
        rate_snapshot_id: RateSnapshotId,
        quoted_price: Money,
        at: datetime,
    ) -> Shipment:
        """Book a new shipment; records :class:`~examples.shipping.events.ShipmentBooked`.

        Raises:
            InvariantViolation: The id is not an air waybill number, ``at`` is naive, there
                are no parcels or two share an id, the pickup window ends before ``at``, or
                the parcels weigh more than ``service_class`` allows (invariant 1).
        """
        check_awb(shipment_id)
        require_aware(at, "Booking time")
        parcel_list = list(parcels)
        if not parcel_list:
            raise InvariantViolation(f"Shipment {shipment_id} must have at least one parcel")
        ids = [parcel.id for parcel in parcel_list]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise InvariantViolation(
                f"Shipment {shipment_id} has duplicate parcel ids: {', '.join(duplicates)}"
            )
        if pickup_window.end <= at:
            raise InvariantViolation(
                f"Shipment {shipment_id} pickup window ends {pickup_window.end.isoformat()}, "
                f"not after the booking time {at.isoformat()}"
            )
        shipment = cls(
            shipment_id,
            customer_id=customer_id,
            service_class=service_class,
            origin=origin,
            destination=destination,
            pickup_window=pickup_window,
            parcels=parcel_list,
            rate_snapshot_id=rate_snapshot_id,
            quoted_price=quoted_price,
            booked_at=at,
        )
        shipment._check_weight(shipment.total_weight)
        shipment.record(
            ShipmentBooked(
                shipment_id,
                customer_id,
                service_class.value,
                len(parcel_list),
                shipment.total_weight,
                quoted_price.amount_cents,
                quoted_price.currency,
                occurred_at=at,
            )
        )
        return shipment

    def add_parcel(self, parcel: Parcel, *, at: datetime) -> None:
        """Add a parcel before the labels are printed; records ``ParcelAdded``.

        Raises:
            InvalidStateError: The shipment is no longer ``BOOKED``.
            InvariantViolation: A parcel with this id is already in the shipment, or the new
                total would exceed the service class's limit (invariant 1).
        """
        self._check_time(at, "Adding a parcel")
        self._require_status(ShipmentStatus.BOOKED, "add a parcel to")
        if any(existing.id == parcel.id for existing in self.parcels):
            raise InvariantViolation(f"Shipment {self.id} already has a parcel {parcel.id}")
        new_total = self.total_weight + parcel.weight.kg
        self._check_weight(new_total)
        self.parcels.append(parcel)
        self.record(ParcelAdded(self.id, parcel.id, new_total, occurred_at=at))

    def assign_carrier(
        self, carrier_id: CarrierId, carriers: CarrierDirectory, *, at: datetime
    ) -> None:
        """Give the shipment to a carrier that serves its origin country.

        Records ``CarrierAssigned``; assigning the carrier already assigned changes nothing.
        A different carrier may replace the first until the label is printed.

        Raises:
            InvalidStateError: The shipment is no longer ``BOOKED``.
            InvariantViolation: ``carriers`` says the carrier does not serve the origin
                country (invariant 2).
        """
        self._check_time(at, "Assigning a carrier")
        self._require_status(ShipmentStatus.BOOKED, "assign a carrier to")
        if carrier_id == self.carrier_id:
            return
        if not carriers.serves(carrier_id, self.origin.iso_country):
            raise InvariantViolation(
                f"Carrier {carrier_id} does not serve the origin country "
                f"{self.origin.iso_country} of shipment {self.id}"
            )
        self.carrier_id = carrier_id
        self.record(CarrierAssigned(self.id, carrier_id, occurred_at=at))

    def attach_invoice(self, invoice_id: InvoiceId, *, at: datetime) -> None:
        """Note the billing context's invoice; records ``InvoiceAttached`` (once).

        Attaching the same invoice again changes nothing.

        Raises:
            InvalidStateError: The shipment is cancelled, or another invoice is attached.
        """
        self._check_time(at, "Attaching an invoice")
        if self.status is ShipmentStatus.CANCELLED:
            raise InvalidStateError(
                f"Cannot attach invoice {invoice_id}: shipment {self.id} is CANCELLED"
            )
        if self.invoice_id == invoice_id:
            return
        if self.invoice_id is not None:
            raise InvalidStateError(
                f"Shipment {self.id} is already billed by invoice {self.invoice_id}, "
                f"not {invoice_id}"
            )
        self.invoice_id = invoice_id
        self.record(InvoiceAttached(self.id, invoice_id, occurred_at=at))

    def print_label(self, *, at: datetime) -> None:
        """Print one label per parcel; records ``LabelPrinted``. From now on the shipment
        cannot be cancelled (invariant 4).

        Raises:
            InvalidStateError: No carrier is assigned, or the shipment is not ``BOOKED``.
        """
        self._check_time(at, "Printing the label")
        if self.carrier_id is None:
            raise InvalidStateError(
                f"Cannot print the label of shipment {self.id}: no carrier is assigned"
            )
        self._move_to(ShipmentStatus.LABEL_PRINTED, "print the label of")
        self.label_printed_at = at
        self.record(LabelPrinted(self.id, self.carrier_id, len(self.parcels), occurred_at=at))

    def record_scan(self, scan: CarrierScan) -> None:
        """Record a scan from the assigned carrier's tracking feed.

        A ``PICKUP`` scan records ``ShipmentPickedUp``, ``IN_TRANSIT`` records
        ``ShipmentInTransit``, ``EXCEPTION`` records ``ShipmentExceptionRecorded``.

        Raises:
            InvalidStateError: The scan's status change is not allowed (see
                :data:`TRANSITIONS`), or it comes from a carrier other than the assigned one.
            InvariantViolation: The scan is older than the shipment's last recorded activity.
        """
        self._check_time(scan.scanned_at, f"{scan.kind} scan")
        target = SCAN_TARGETS[scan.kind]
        self._require_transition(target, f"record a {scan.kind} scan of")
        if scan.carrier_id != self.carrier_id:
            raise InvalidStateError(
                f"Shipment {self.id} is carried by {self.carrier_id}, "
                f"not by {scan.carrier_id} who scanned it"
            )
        self.status = target
        carrier_id, at = scan.carrier_id, scan.scanned_at
        event: ShipmentPickedUp | ShipmentInTransit | ShipmentExceptionRecorded
        if scan.kind is ScanKind.PICKUP:
            event = ShipmentPickedUp(self.id, carrier_id, scan.location, at, occurred_at=at)
        elif scan.kind is ScanKind.IN_TRANSIT:
            event = ShipmentInTransit(self.id, carrier_id, scan.location, at, occurred_at=at)
        else:
            event = ShipmentExceptionRecorded(self.id, scan.note, True, occurred_at=at)
        self.scans.append(scan)
        self.record(event)

    def record_exception(self, reason: str, *, at: datetime) -> None:
        """Record a problem reported without a carrier scan (by operations, a customer).

        Records ``ShipmentExceptionRecorded`` with ``scanned=False``; it adds no scan, so it
        does not make the shipment deliverable (invariant 3).

        Raises:
            InvalidStateError: The shipment cannot move to ``EXCEPTION`` from its status.
            InvariantViolation: ``reason`` is blank, or ``at`` precedes the last activity.
        """
        self._check_time(at, "Recording an exception")
        require_text(reason, "Exception reason")
        self._move_to(ShipmentStatus.EXCEPTION, "record an exception for")
        self.record(ShipmentExceptionRecorded(self.id, reason, False, occurred_at=at))

    def record_missed_pickup(self, *, at: datetime) -> bool:
        """Record an exception: the pickup window ended and no carrier picked the parcels up.

        Records ``ShipmentExceptionRecorded`` with ``scanned=False`` while the shipment is
        ``LABEL_PRINTED``. In any other status it waits for no pickup (a carrier picked it
        up, or an exception was reported meanwhile) and nothing changes, so a deadline that
        fires late, or twice, is harmless.

        Returns:
            Whether the exception was recorded.

        Raises:
            InvalidStateError: The pickup window is still open at ``at``.
            InvariantViolation: ``at`` precedes the last activity.
        """
        if self.status is not ShipmentStatus.LABEL_PRINTED:
            return False
        if at < self.pickup_deadline:
            raise InvalidStateError(
                f"Shipment {self.id} has not missed its pickup: its window is open until "
                f"{self.pickup_deadline.isoformat()}"
            )
        deadline = self.pickup_deadline.isoformat()
        self.record_exception(f"no pickup scan by the end of the pickup window, {deadline}", at=at)
        return True

    def record_delivered(self, received_by: str, *, at: datetime) -> None:
        """Record the hand-over to ``received_by``; records ``ShipmentDelivered``.

        Raises:
            InvalidStateError: The current status cannot become ``DELIVERED`` (it is
                ``BOOKED``, ``LABEL_PRINTED``, already ``DELIVERED`` or ``CANCELLED``).
            InvariantViolation: No carrier scan was ever recorded (invariant 3),
                ``received_by`` is blank, or ``at`` precedes the last activity.
        """
        self._check_time(at, "Delivery")
        require_text(received_by, "Recipient name")
        self._require_transition(ShipmentStatus.DELIVERED, "record the delivery of")
        if not self.scans:
            raise InvariantViolation(
                f"Shipment {self.id} cannot be delivered: no carrier scan was recorded"
            )
        self.status = ShipmentStatus.DELIVERED
        self.delivered_at = at
        self.received_by = received_by
        self.record(ShipmentDelivered(self.id, received_by, occurred_at=at))

    def cancel(self, reason: str, *, at: datetime) -> None:
        """Cancel the shipment before its label is printed; records ``ShipmentCancelled``.

        Raises:
            InvariantViolation: The label was printed (invariant 4), ``reason`` is blank, or
                ``at`` precedes the last activity.
            InvalidStateError: The shipment is already cancelled.
        """
        self._check_time(at, "Cancellation")
        require_text(reason, "Cancellation reason")
        if self.label_printed_at is not None:
            raise InvariantViolation(
                f"Shipment {self.id} cannot be cancelled: its label was printed at "
                f"{self.label_printed_at.isoformat()} (status {self.status})"
            )
        self._move_to(ShipmentStatus.CANCELLED, "cancel")
        self.cancelled_at = at
        self.cancellation_reason = reason
        self.record(ShipmentCancelled(self.id, reason, occurred_at=at))

    # -- rules --------------------------------------------------------------------------------

    def _check_weight(self, total_kg: Decimal) -> None:
        limit = self.service_class.max_total_weight
        if total_kg > limit.kg:
            raise InvariantViolation(
                f"Shipment {self.id} would weigh {total_kg} kg, over the "
                f"{self.service_class} limit of {limit}"
            )

    def _require_status(self, expected: ShipmentStatus, action: str) -> None:
        if self.status is not expected:
            raise InvalidStateError(
                f"Cannot {action} shipment {self.id} in status {self.status}: only while {expected}"
            )

    def _require_transition(self, target: ShipmentStatus, action: str) -> None:
        if not self.status.can_become(target):
            allowed = ", ".join(sorted(TRANSITIONS[self.status])) or "nothing (it is final)"
            raise InvalidStateError(
                f"Cannot {action} shipment {self.id} in status {self.status}: "
                f"{self.status} may only become {allowed}"
            )

    def _move_to(self, target: ShipmentStatus, action: str) -> None:
        self._require_transition(target, action)
        self.status = target

    def _check_time(self, at: datetime, what: str) -> None:
        require_aware(at, what)
        moments = [self.booked_at, *(scan.scanned_at for scan in self.scans)]
        moments += [m for m in (self.label_printed_at, self.delivered_at, self.cancelled_at) if m]
        latest = max(moments)
        if at < latest:
            raise InvariantViolation(
                f"{what} at {at.isoformat()} precedes the last activity of shipment "
                f"{self.id} at {latest.isoformat()}"
            )
