"""Application services: each method is one transaction that changes one aggregate.

A service opens a fresh unit of work, loads the aggregate, runs one command on it and
commits; the unit of work publishes the recorded events as its block ends. Business rules live in the
aggregates, not here. Time comes from an injected :class:`~tactical.Clock`, so tests are
deterministic.

``print_label`` only prints the label: the label stock is decremented by the inventory's
handler of :class:`~examples.shipping.commands.DecrementLabelStock`, which a handler of
``LabelPrinted`` (:mod:`examples.shipping.handlers`) dispatches in the inventory's own
transaction, after the shipment's transaction has committed and its block ended. If that
fails, ``print_label`` raises :class:`~tactical.EventHandlerError` **after** the commit: the
label is printed and stays printed.

In the same transaction as the printed label, ``print_label`` schedules the pickup
deadline: a durable timer (:meth:`~tactical.SchedulingUnitOfWork.schedule`) whose message,
:class:`~examples.shipping.events.PickupDeadlinePassed`, is due at the end of the pickup
window. Both commit together or not at all, so no printed label is without its deadline.
The pickup scan cancels the timer in its own transaction; if the timer fires anyway (the
cancel came too late), :meth:`ShippingService.record_missed_pickup` finds the shipment
picked up and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from examples.shipping.commands import DecrementLabelStock, RecordMissedPickup
from examples.shipping.domain import (
    Address,
    CarrierScan,
    Money,
    Parcel,
    PickupWindow,
    ScanKind,
    ServiceClass,
    Shipment,
)
from examples.shipping.events import PickupDeadlinePassed
from examples.shipping.ids import CarrierId, CustomerId, InvoiceId, RateSnapshotId, ShipmentId
from examples.shipping.inventory import InsufficientLabelStock, LabelStock, LabelStockId
from examples.shipping.ports import CarrierDirectory
from tactical import Clock, CommandBus, SchedulingUnitOfWork, retry_on_conflict

__all__ = [
    "InventoryService",
    "ShippingService",
    "UnitOfWorkFactory",
    "pickup_deadline_key",
]

UnitOfWorkFactory = Callable[[], SchedulingUnitOfWork]
"""Returns a unit of work that no one else is using (a new one, typically).

It schedules and cancels durable timers, as tactical's units of work do.
"""


def pickup_deadline_key(shipment_id: ShipmentId) -> str:
    """The key of the shipment's pickup deadline timer: scheduled, then cancelled, under it."""
    return f"pickup-deadline:{shipment_id}"


class ShippingService:
    """The shipping context's use cases, one shipment per transaction.

    Args:
        unit_of_work: Makes the unit of work each command runs in.
        carriers: Answers which carrier serves which country (invariant 2).
        clock: The time commands happen at.
        next_shipment_id: Hands out air waybill numbers for new bookings.
    """

    def __init__(
        self,
        unit_of_work: UnitOfWorkFactory,
        carriers: CarrierDirectory,
        *,
        clock: Clock,
        next_shipment_id: Callable[[], ShipmentId],
    ) -> None:
        self._unit_of_work = unit_of_work
        self._carriers = carriers
        self._clock = clock
        self._next_shipment_id = next_shipment_id

    def book(
        self,
        *,
        customer_id: CustomerId,
        service_class: ServiceClass,
        origin: Address,
        destination: Address,
        pickup_window: PickupWindow,
        parcels: Iterable[Parcel],
        rate_snapshot_id: RateSnapshotId,
        quoted_price: Money,
    ) -> ShipmentId:
        """Book a shipment and return its air waybill number.

        Raises:
            InvariantViolation: See :meth:`Shipment.book`.
        """
        shipment = Shipment.book(
            self._next_shipment_id(),
            customer_id=customer_id,
            service_class=service_class,
            origin=origin,
            destination=destination,
            pickup_window=pickup_window,
            parcels=parcels,
            rate_snapshot_id=rate_snapshot_id,
            quoted_price=quoted_price,
            at=self._clock.now(),
        )
        with self._unit_of_work() as uow:
            uow.repository(Shipment).add(shipment)
            uow.commit()
        return shipment.id

    def add_parcel(self, shipment_id: ShipmentId, parcel: Parcel) -> None:
        """Add a parcel to a booked shipment (see :meth:`Shipment.add_parcel`)."""
        self._change(shipment_id, lambda s, now: s.add_parcel(parcel, at=now))

    def assign_carrier(self, shipment_id: ShipmentId, carrier_id: CarrierId) -> None:
        """Give the shipment to a carrier (see :meth:`Shipment.assign_carrier`)."""
        self._change(
            shipment_id, lambda s, now: s.assign_carrier(carrier_id, self._carriers, at=now)
        )

    def attach_invoice(self, shipment_id: ShipmentId, invoice_id: InvoiceId) -> None:
        """Note the invoice billing the shipment (see :meth:`Shipment.attach_invoice`)."""
        self._change(shipment_id, lambda s, now: s.attach_invoice(invoice_id, at=now))

    def print_label(self, shipment_id: ShipmentId) -> None:
        """Print the shipment's labels (see :meth:`Shipment.print_label`), and schedule its
        pickup deadline in the same transaction.

        Raises:
            EventHandlerError: The label was printed and committed, but a handler of
                ``LabelPrinted`` failed (the label stock refused, say).
        """
        now = self._clock.now()
        with self._unit_of_work() as uow:
            shipment = uow.repository(Shipment).require(shipment_id)
            shipment.print_label(at=now)
            deadline = shipment.pickup_deadline
            uow.schedule(
                PickupDeadlinePassed(shipment_id, deadline, occurred_at=deadline),
                at=deadline,
                key=pickup_deadline_key(shipment_id),
            )
            uow.commit()

    def record_scan(self, shipment_id: ShipmentId, scan: CarrierScan) -> None:
        """Record a carrier scan (see :meth:`Shipment.record_scan`); a pickup scan cancels
        the pickup deadline in the same transaction."""
        with self._unit_of_work() as uow:
            uow.repository(Shipment).require(shipment_id).record_scan(scan)
            if scan.kind is ScanKind.PICKUP:
                uow.cancel(pickup_deadline_key(shipment_id))
            uow.commit()

    def record_missed_pickup(self, command: RecordMissedPickup) -> bool:
        """Handle :class:`~examples.shipping.commands.RecordMissedPickup` (see
        :meth:`Shipment.record_missed_pickup`): whether an exception was recorded.

        A pickup scan committed meanwhile makes the commit conflict; retried on fresh
        state, the shipment is picked up and nothing is recorded.
        """

        def record() -> bool:
            now = self._clock.now()
            with self._unit_of_work() as uow:
                shipment = uow.repository(Shipment).require(command.shipment_id)
                recorded = shipment.record_missed_pickup(at=now)
                uow.commit()
                return recorded

        return retry_on_conflict(record)

    def record_exception(self, shipment_id: ShipmentId, reason: str) -> None:
        """Record a problem reported without a scan (see :meth:`Shipment.record_exception`)."""
        self._change(shipment_id, lambda s, now: s.record_exception(reason, at=now))

    def record_delivered(self, shipment_id: ShipmentId, received_by: str) -> None:
        """Record the delivery (see :meth:`Shipment.record_delivered`)."""
        self._change(shipment_id, lambda s, now: s.record_delivered(received_by, at=now))

    def cancel(self, shipment_id: ShipmentId, reason: str) -> None:
        """Cancel the shipment (see :meth:`Shipment.cancel`)."""
        self._change(shipment_id, lambda s, now: s.cancel(reason, at=now))

    def shipment(self, shipment_id: ShipmentId) -> Shipment:
        """Read the shipment as committed (a query: nothing is written).

        Raises:
            AggregateNotFound: No shipment has this id.
        """
        with self._unit_of_work() as uow:
            return uow.repository(Shipment).require(shipment_id)

    def register_handlers(self, commands: CommandBus) -> None:
        """Make this service the handler of the shipping context's commands on ``commands``."""
        commands.register(RecordMissedPickup, self.record_missed_pickup)

    def _change(
        self, shipment_id: ShipmentId, command: Callable[[Shipment, datetime], None]
    ) -> None:
        now = self._clock.now()
        with self._unit_of_work() as uow:
            command(uow.repository(Shipment).require(shipment_id), now)
            uow.commit()


class InventoryService:
    """The inventory context's use cases, one label stock per transaction.

    Args:
        unit_of_work: Makes the unit of work each command runs in.
        clock: The time commands happen at.
    """

    def __init__(self, unit_of_work: UnitOfWorkFactory, *, clock: Clock) -> None:
        self._unit_of_work = unit_of_work
        self._clock = clock

    def open_stock(self, stock_id: LabelStockId, quantity: int) -> None:
        """Start counting a carrier's labels with ``quantity`` in stock."""
        stock = LabelStock.open(stock_id, quantity, at=self._clock.now())
        with self._unit_of_work() as uow:
            uow.repository(LabelStock).add(stock)
            uow.commit()

    def restock(self, stock_id: LabelStockId, quantity: int) -> None:
        """Add ``quantity`` labels to the stock."""

        def restock() -> None:
            with self._unit_of_work() as uow:
                uow.repository(LabelStock).require(stock_id).restock(quantity, at=self._clock.now())
                uow.commit()

        retry_on_conflict(restock)

    def register_handlers(self, commands: CommandBus) -> None:
        """Make this service the handler of the inventory context's commands on ``commands``."""
        commands.register(DecrementLabelStock, self.decrement_label_stock)

    def decrement_label_stock(self, command: DecrementLabelStock) -> bool:
        """Handle :class:`~examples.shipping.commands.DecrementLabelStock`: take
        ``command.quantity`` labels for ``command.reference``, or record that they were
        refused.

        A stock is a hot aggregate (every printed label touches it), so a conflicting
        concurrent write is retried on fresh state.

        Returns:
            Whether labels were taken (``False``: the reference was handled before).

        Raises:
            InsufficientLabelStock: Fewer labels remain than asked for. The refusal was
                committed first (``LabelRequestRefused``), and nothing was taken.
            AggregateNotFound: No stock has this id.
        """
        stock_id, quantity, reference = command.stock_id, command.quantity, command.reference

        def take() -> bool:
            now = self._clock.now()
            with self._unit_of_work() as uow:
                stock = uow.repository(LabelStock).require(stock_id)
                try:
                    taken = stock.take(quantity, reference, at=now)
                except InsufficientLabelStock:
                    stock.record_refusal(quantity, reference, at=now)
                    uow.commit()
                    raise
                uow.commit()
                return taken

        return retry_on_conflict(take)

    def label_stock(self, stock_id: LabelStockId) -> LabelStock:
        """Read the stock as committed (a query: nothing is written).

        Raises:
            AggregateNotFound: No stock has this id.
        """
        with self._unit_of_work() as uow:
            return uow.repository(LabelStock).require(stock_id)
