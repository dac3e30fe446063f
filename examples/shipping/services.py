"""Application services: each method is one transaction that changes one aggregate.

A service opens a fresh unit of work, loads the aggregate, runs one command on it and
commits; the unit of work publishes the recorded events as its block ends. Business rules live in the
aggregates, not here. Time comes from an injected clock, so tests are deterministic.

``print_label`` only prints the label: the label stock is taken by a handler of
``LabelPrinted`` (:mod:`examples.shipping.handlers`) in the inventory's own transaction,
after the shipment's transaction has committed and its block ended. If that handler fails,
``print_label`` raises :class:`~tactical.EventHandlerError` **after** the commit: the label
is printed and stays printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from examples.shipping.domain import (
    Address,
    CarrierScan,
    Money,
    Parcel,
    PickupWindow,
    ServiceClass,
    Shipment,
)
from examples.shipping.ids import CarrierId, CustomerId, InvoiceId, RateSnapshotId, ShipmentId
from examples.shipping.inventory import InsufficientLabelStock, LabelStock, LabelStockId
from examples.shipping.ports import CarrierDirectory
from tactical import UnitOfWork, retry_on_conflict

__all__ = ["Clock", "InventoryService", "ShippingService", "UnitOfWorkFactory"]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""

UnitOfWorkFactory = Callable[[], UnitOfWork]
"""Returns a unit of work that no one else is using (a new one, typically)."""


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
            at=self._clock(),
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
        """Print the shipment's labels (see :meth:`Shipment.print_label`).

        Raises:
            EventHandlerError: The label was printed and committed, but a handler of
                ``LabelPrinted`` failed (the label stock refused, say).
        """
        self._change(shipment_id, lambda s, now: s.print_label(at=now))

    def record_scan(self, shipment_id: ShipmentId, scan: CarrierScan) -> None:
        """Record a carrier scan (see :meth:`Shipment.record_scan`)."""
        self._change(shipment_id, lambda s, _: s.record_scan(scan))

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

    def _change(
        self, shipment_id: ShipmentId, command: Callable[[Shipment, datetime], None]
    ) -> None:
        now = self._clock()
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
        stock = LabelStock.open(stock_id, quantity, at=self._clock())
        with self._unit_of_work() as uow:
            uow.repository(LabelStock).add(stock)
            uow.commit()

    def restock(self, stock_id: LabelStockId, quantity: int) -> None:
        """Add ``quantity`` labels to the stock."""

        def restock() -> None:
            with self._unit_of_work() as uow:
                uow.repository(LabelStock).require(stock_id).restock(quantity, at=self._clock())
                uow.commit()

        retry_on_conflict(restock)

    def take_labels(self, stock_id: LabelStockId, quantity: int, reference: str) -> bool:
        """Take ``quantity`` labels for ``reference``, or record that they were refused.

        A stock is a hot aggregate (every printed label touches it), so a conflicting
        concurrent write is retried on fresh state.

        Returns:
            Whether labels were taken (``False``: ``reference`` was handled before).

        Raises:
            InsufficientLabelStock: Fewer labels remain than asked for. The refusal was
                committed first (``LabelRequestRefused``), and nothing was taken.
            AggregateNotFound: No stock has this id.
        """

        def take() -> bool:
            now = self._clock()
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
