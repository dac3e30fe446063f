"""From print_label to the label stock: two contexts, two transactions, one bus."""

from __future__ import annotations

import pytest

from examples.shipping.adapters import ShippingApplication
from examples.shipping.commands import DecrementLabelStock
from examples.shipping.domain import ShipmentStatus
from examples.shipping.events import LabelPrinted
from examples.shipping.inventory import (
    InsufficientLabelStock,
    LabelRequestRefused,
    LabelsTaken,
    LabelStockExhausted,
    LabelStockId,
)
from examples.shipping.tests.factories import POST, Build, printable
from examples.shipping.tests.factories import parcel as make_parcel
from tactical import AggregateNotFound, DomainEvent, EventBus, EventHandlerError

STOCK = LabelStockId(POST)


def published(app: ShippingApplication) -> list[DomainEvent]:
    """Collect every event published on the application's bus from now on."""
    events: list[DomainEvent] = []
    app.bus.subscribe(DomainEvent, events.append)
    return events


def observe(app: ShippingApplication, event: LabelPrinted) -> tuple[ShipmentStatus, int, int]:
    """The committed shipment status and version and the stock left, read afresh."""
    shipment = app.shipping.shipment(event.shipment_id)
    return shipment.status, shipment.version, app.inventory.label_stock(STOCK).remaining


class TestLabelStockFlow:
    """LabelPrinted takes labels in the inventory's own transaction (SQL and in memory)."""

    def test_printing_a_label_decrements_the_carriers_stock(
        self, application: ShippingApplication
    ) -> None:
        """Two parcels take two of five labels; both aggregates are saved, each once more."""
        application.inventory.open_stock(STOCK, 5)
        shipment_id = printable(application, make_parcel(1), make_parcel(2))
        events = published(application)
        application.shipping.print_label(shipment_id)
        stock = application.inventory.label_stock(STOCK)
        assert stock.remaining == 3
        assert stock.version == 2
        shipment = application.shipping.shipment(shipment_id)
        assert shipment.status is ShipmentStatus.LABEL_PRINTED
        assert shipment.version == 3
        assert [type(e) for e in events] == [LabelPrinted, LabelsTaken]

    def test_the_shipment_is_committed_before_the_stock_is_touched(self, build: Build) -> None:
        """When LabelPrinted is dispatched, a fresh transaction already sees the label printed
        and the stock untouched: the stock changes later, in a transaction of its own."""
        bus = EventBus()
        seen: list[tuple[ShipmentStatus, int, int]] = []
        bus.subscribe(LabelPrinted, lambda event: seen.append(observe(app, event)))
        app = build(bus)
        app.inventory.open_stock(STOCK, 5)
        shipment_id = printable(app, make_parcel(1))
        app.shipping.print_label(shipment_id)
        assert seen == [(ShipmentStatus.LABEL_PRINTED, 3, 5)]
        assert app.inventory.label_stock(STOCK).remaining == 4

    def test_taking_the_last_labels_announces_exhaustion(
        self, application: ShippingApplication
    ) -> None:
        """Emptying the stock succeeds and publishes LabelStockExhausted."""
        application.inventory.open_stock(STOCK, 2)
        shipment_id = printable(application, make_parcel(1), make_parcel(2))
        events = published(application)
        application.shipping.print_label(shipment_id)
        assert application.inventory.label_stock(STOCK).remaining == 0
        assert [type(e) for e in events] == [LabelPrinted, LabelsTaken, LabelStockExhausted]

    def test_running_out_refuses_the_labels_but_the_shipment_stays_printed(
        self, application: ShippingApplication
    ) -> None:
        """The documented decision: the stock never goes negative and commits the refusal;
        the caller gets EventHandlerError; the shipment's committed print is not undone."""
        application.inventory.open_stock(STOCK, 1)
        shipment_id = printable(application, make_parcel(1), make_parcel(2))
        events = published(application)
        with pytest.raises(EventHandlerError) as failure:
            application.shipping.print_label(shipment_id)
        (cause,) = failure.value.exceptions
        assert isinstance(cause, InsufficientLabelStock)
        assert str(cause) == (
            f"Label stock PARCEL-POST cannot give 2 label(s) for {shipment_id}: only 1 left"
        )
        assert application.shipping.shipment(shipment_id).status is ShipmentStatus.LABEL_PRINTED
        stock = application.inventory.label_stock(STOCK)
        assert (stock.remaining, stock.refused_labels, stock.version) == (1, 2, 2)
        assert [type(e) for e in events] == [LabelPrinted, LabelRequestRefused]

    def test_a_carrier_without_stock_fails_after_the_commit(
        self, application: ShippingApplication
    ) -> None:
        """No stock for the carrier: the handler's error surfaces, the label stays printed."""
        shipment_id = printable(application, make_parcel(1))
        with pytest.raises(EventHandlerError) as failure:
            application.shipping.print_label(shipment_id)
        (cause,) = failure.value.exceptions
        assert isinstance(cause, AggregateNotFound)
        assert application.shipping.shipment(shipment_id).status is ShipmentStatus.LABEL_PRINTED

    def test_a_redelivered_label_printed_takes_no_more_labels(
        self, application: ShippingApplication
    ) -> None:
        """At-least-once delivery is safe: the stock charges each shipment once."""
        application.inventory.open_stock(STOCK, 5)
        shipment_id = printable(application, make_parcel(1))
        events = published(application)
        application.shipping.print_label(shipment_id)
        (printed_event, _) = events
        application.bus.publish(printed_event)
        stock = application.inventory.label_stock(STOCK)
        assert (stock.remaining, stock.version) == (4, 2)


class TestDecrementLabelStock:
    """The command the label handler dispatches has one handler: the inventory's."""

    def test_the_inventory_takes_labels_once_per_reference(
        self, application: ShippingApplication
    ) -> None:
        """Dispatched twice for one reference: labels taken once, the result says so."""
        application.inventory.open_stock(STOCK, 5)
        taken: bool = application.commands.dispatch(DecrementLabelStock(STOCK, 2, "REF-1"))
        assert taken is True
        assert application.commands.dispatch(DecrementLabelStock(STOCK, 2, "REF-1")) is False
        stock = application.inventory.label_stock(STOCK)
        assert (stock.remaining, stock.version) == (3, 2)

    def test_a_refusal_reaches_the_dispatcher_unwrapped_and_is_committed(
        self, application: ShippingApplication
    ) -> None:
        """The command bus wraps nothing: the caller gets InsufficientLabelStock itself,
        and the refusal was committed before it was raised."""
        application.inventory.open_stock(STOCK, 1)
        with pytest.raises(InsufficientLabelStock, match="only 1 left"):
            application.commands.dispatch(DecrementLabelStock(STOCK, 2, "REF-2"))
        stock = application.inventory.label_stock(STOCK)
        assert (stock.remaining, stock.refused_labels) == (1, 2)
