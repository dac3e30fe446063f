"""The shipment's life as given/when/then scenarios (tactical.testing), and its architecture."""

from __future__ import annotations

from examples.shipping.domain import ScanKind, ShipmentStatus
from examples.shipping.events import (
    CarrierAssigned,
    LabelPrinted,
    ShipmentCancelled,
    ShipmentDelivered,
    ShipmentPickedUp,
)
from examples.shipping.tests.factories import (
    CARRIERS,
    POST,
    SHIPMENT_ID,
    at,
    booked,
    in_transit,
    printed,
    scan,
    with_carrier,
)
from tactical import InvariantViolation
from tactical.testing import (
    assert_aggregates_reference_by_id,
    assert_no_infrastructure_imports,
    assert_value_objects_hold_no_entities,
    given,
)

DOMAIN = (
    "examples.shipping.ids",
    "examples.shipping.events",
    "examples.shipping.ports",
    "examples.shipping.values",
    "examples.shipping.domain",
    "examples.shipping.inventory",
)


class TestScenarios:
    def test_printing_the_label_records_one_label_per_parcel(self) -> None:
        """print_label records LabelPrinted for the assigned carrier, one label per parcel."""
        shipment = (
            given(with_carrier)
            .when(lambda s: s.print_label(at=at(2)))
            .then(LabelPrinted(SHIPMENT_ID, POST, 1))
        )
        assert shipment.status is ShipmentStatus.LABEL_PRINTED

    def test_no_cancellation_after_the_label_is_printed(self) -> None:
        """The refusal changes nothing and records nothing."""
        given(printed).when(lambda s: s.cancel("changed my mind", at=at(3))).then_raises(
            InvariantViolation, match="cannot be cancelled: its label was printed"
        )

    def test_cancellation_before_printing(self) -> None:
        """A booked shipment can be cancelled, saying why."""
        given(booked).when(lambda s: s.cancel("changed my mind", at=at(3))).then(
            ShipmentCancelled(SHIPMENT_ID, "changed my mind")
        )

    def test_pick_up_scan_then_delivery(self) -> None:
        """A pick-up scan moves a printed shipment on; delivery needs a scan first."""
        given(printed).when(lambda s: s.record_scan(scan(ScanKind.PICKUP, 10))).then(
            ShipmentPickedUp
        )
        given(in_transit).when(lambda s: s.record_delivered("M. Huber", at=at(30))).then(
            ShipmentDelivered
        )

    def test_commands_never_change_state_silently(self) -> None:
        """Every successful command records an event (strict scenario)."""
        given(booked).when(lambda s: s.assign_carrier(POST, CARRIERS, at=at(1))).then(
            CarrierAssigned, require_events_for_changes=True
        )


class TestArchitecture:
    def test_domain_imports_no_infrastructure(self) -> None:
        """The shipping and inventory domain modules import no SQL, driver or adapter."""
        assert_no_infrastructure_imports(*DOMAIN)

    def test_shipments_reference_other_aggregates_by_id(self) -> None:
        """Customer, carrier, rate snapshot and invoice are held as ids."""
        assert_aggregates_reference_by_id(*DOMAIN)

    def test_value_objects_hold_no_entities(self) -> None:
        """Parcels are entities; no value object holds one."""
        assert_value_objects_hold_no_entities(*DOMAIN)
