"""The Shipment aggregate, pure: commands in, events or refusals out. No database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest

from examples.shipping.domain import (
    TRANSITIONS,
    ScanKind,
    ServiceClass,
    Shipment,
    ShipmentStatus,
)
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
from examples.shipping.ids import CarrierId, InvoiceId, ShipmentId
from examples.shipping.tests.factories import (
    ALPINE,
    CARRIERS,
    CUSTOMER,
    POST,
    SHIPMENT_ID,
    T0,
    VIENNA,
    at,
    book,
    booked,
    cancelled,
    delivered,
    excepted,
    in_transit,
    parcel,
    picked_up,
    printed,
    scan,
    with_carrier,
)
from tactical import InvalidStateError, InvariantViolation, JsonCodec

Build = Callable[[], Shipment]


class TestInvariantWeightLimit:
    """Invariant 1: the total parcel weight never exceeds the service class's limit."""

    def test_booking_over_the_service_class_limit_is_refused(self) -> None:
        """Two parcels of 20 kg cannot be booked same-day, whose limit is 30 kg."""
        with pytest.raises(InvariantViolation, match=r"40 kg, over the SAMEDAY limit of 30 kg"):
            book(parcel(1, "20"), parcel(2, "20"), service_class=ServiceClass.SAMEDAY)

    def test_booking_exactly_at_the_limit_is_accepted(self) -> None:
        """The limit itself is allowed: 30 kg same-day books."""
        shipment = book(parcel(1, "10"), parcel(2, "20"), service_class=ServiceClass.SAMEDAY)
        assert shipment.total_weight == Decimal(30)

    def test_adding_a_parcel_cannot_push_the_total_over_the_limit(self) -> None:
        """A parcel that would take an express shipment past 150 kg is refused, and not added."""
        shipment = book(parcel(1, "100"), service_class=ServiceClass.EXPRESS)
        shipment.clear_events()
        with pytest.raises(InvariantViolation, match=r"150.5 kg, over the EXPRESS limit"):
            shipment.add_parcel(parcel(2, "50.5"), at=at(1))
        assert [p.id for p in shipment.parcels] == ["P1"]
        assert shipment.pending_events == ()

    def test_each_service_class_has_its_limit(self) -> None:
        """Ground carries the most, same-day the least."""
        limits = [c.max_total_weight.kg for c in ServiceClass]
        assert limits == [Decimal(1000), Decimal(150), Decimal(30)]


class TestInvariantCarrierServesOrigin:
    """Invariant 2: the assigned carrier serves the origin country."""

    def test_carrier_that_does_not_serve_the_origin_country_is_refused(self) -> None:
        """ALPINE-EXPRESS serves AT and CH, not the Berlin origin."""
        shipment = booked()
        with pytest.raises(InvariantViolation, match=r"ALPINE-EXPRESS does not serve .* DE"):
            shipment.assign_carrier(ALPINE, CARRIERS, at=at(1))
        assert shipment.carrier_id is None
        assert shipment.pending_events == ()

    def test_unknown_carrier_serves_no_country(self) -> None:
        """A carrier the directory does not list is refused."""
        with pytest.raises(InvariantViolation, match="NOBODY does not serve"):
            booked().assign_carrier(CarrierId("NOBODY"), CARRIERS, at=at(1))

    def test_carrier_serving_the_origin_country_is_accepted(self) -> None:
        """The same carrier is fine for a shipment from Vienna."""
        shipment = book(origin=VIENNA)
        shipment.assign_carrier(ALPINE, CARRIERS, at=at(1))
        assert shipment.carrier_id == ALPINE


class TestInvariantDeliveryNeedsScan:
    """Invariant 3: a shipment is delivered only after at least one carrier scan."""

    def test_delivery_without_any_scan_is_refused(self) -> None:
        """An exception reported by operations allows delivery by status, but is no scan."""
        shipment = excepted()
        assert shipment.status.can_become(ShipmentStatus.DELIVERED)
        with pytest.raises(InvariantViolation, match="no carrier scan was recorded"):
            shipment.record_delivered("M. Huber", at=at(30))
        assert shipment.status is ShipmentStatus.EXCEPTION
        assert shipment.pending_events == ()

    def test_delivery_after_a_scan_is_accepted(self) -> None:
        """Once the carrier has scanned the parcels, the exception can end in delivery."""
        shipment = excepted()
        shipment.record_scan(scan(ScanKind.PICKUP, 10))
        shipment.record_delivered("M. Huber", at=at(30))
        assert shipment.status is ShipmentStatus.DELIVERED


class TestInvariantNoCancelAfterLabel:
    """Invariant 4: a shipment cannot be cancelled once its label is printed."""

    @pytest.mark.parametrize("build", [printed, picked_up, in_transit, excepted, delivered])
    def test_cancelling_after_the_label_was_printed_is_refused(self, build: Build) -> None:
        """From every status after printing, cancel is refused and changes nothing."""
        shipment = build()
        status = shipment.status
        with pytest.raises(InvariantViolation, match="cannot be cancelled: its label was printed"):
            shipment.cancel("too late", at=at(40))
        assert shipment.status is status
        assert shipment.pending_events == ()


class TestInvariantServiceClassImmutable:
    """Invariant 5: the service class never changes after booking."""

    def test_assigning_another_service_class_is_refused(self) -> None:
        """The field refuses a new value, naming the old and the new class."""
        shipment = booked()
        with pytest.raises(InvariantViolation, match=r"booked as GROUND.* cannot become EXPRESS"):
            shipment.service_class = ServiceClass.EXPRESS
        assert shipment.service_class is ServiceClass.GROUND

    def test_a_stored_shipment_keeps_the_rule(self) -> None:
        """A shipment rebuilt from its JSON state still refuses the change."""
        codec = JsonCodec()
        loaded = codec.aggregate_from_state(Shipment, codec.aggregate_to_state(booked()), version=1)
        assert loaded.service_class is ServiceClass.GROUND
        with pytest.raises(InvariantViolation, match="booked as GROUND"):
            loaded.service_class = ServiceClass.SAMEDAY

    def test_other_fields_stay_assignable(self) -> None:
        """Only the service class is guarded: persistence still sets the version."""
        shipment = booked()
        shipment.version = 3
        assert shipment.version == 3


class TestBook:
    """Booking creates a shipment in BOOKED and records ShipmentBooked."""

    def test_booking_records_shipment_booked(self) -> None:
        """The event carries the booking's facts, at the booking time."""
        shipment = book(parcel(1, "12.5"), parcel(2, "4.25"))
        assert shipment.status is ShipmentStatus.BOOKED
        assert shipment.pending_events == (
            ShipmentBooked(
                SHIPMENT_ID,
                CUSTOMER,
                "GROUND",
                2,
                Decimal("16.75"),
                2490,
                "EUR",
                event_id=shipment.pending_events[0].event_id,
                occurred_at=T0,
            ),
        )

    def test_id_must_be_an_air_waybill_number(self) -> None:
        """A wrong check digit is refused."""
        with pytest.raises(InvariantViolation, match="'17612345670' is not an air waybill"):
            book(shipment_id=ShipmentId("17612345670"))

    def test_a_shipment_needs_a_parcel(self) -> None:
        """Booking no parcels is refused."""
        with pytest.raises(InvariantViolation, match="at least one parcel"):
            Shipment.book(
                SHIPMENT_ID,
                customer_id=CUSTOMER,
                service_class=ServiceClass.GROUND,
                origin=VIENNA,
                destination=VIENNA,
                pickup_window=booked().pickup_window,
                parcels=[],
                rate_snapshot_id=booked().rate_snapshot_id,
                quoted_price=booked().quoted_price,
                at=T0,
            )

    def test_parcel_ids_are_unique(self) -> None:
        """Two parcels with one id are refused, naming the id."""
        with pytest.raises(InvariantViolation, match="duplicate parcel ids: P1"):
            book(parcel(1), parcel(1))

    def test_booking_time_must_be_timezone_aware(self) -> None:
        """A naive booking time is refused."""
        with pytest.raises(InvariantViolation, match="Booking time must be timezone-aware"):
            Shipment.book(
                SHIPMENT_ID,
                customer_id=CUSTOMER,
                service_class=ServiceClass.GROUND,
                origin=VIENNA,
                destination=VIENNA,
                pickup_window=booked().pickup_window,
                parcels=[parcel()],
                rate_snapshot_id=booked().rate_snapshot_id,
                quoted_price=booked().quoted_price,
                at=datetime(2026, 7, 6, 8, 0),
            )

    def test_pickup_window_must_end_after_booking(self) -> None:
        """A window that closed before the booking is refused."""
        shipment = booked()
        with pytest.raises(InvariantViolation, match="pickup window ends"):
            Shipment.book(
                SHIPMENT_ID,
                customer_id=CUSTOMER,
                service_class=ServiceClass.GROUND,
                origin=VIENNA,
                destination=VIENNA,
                pickup_window=shipment.pickup_window,
                parcels=[parcel()],
                rate_snapshot_id=shipment.rate_snapshot_id,
                quoted_price=shipment.quoted_price,
                at=shipment.pickup_window.end,
            )


class TestAddParcel:
    """Parcels can be added until the label is printed."""

    def test_adding_records_parcel_added_with_the_new_total(self) -> None:
        """The event carries the new total weight."""
        shipment = booked()
        shipment.add_parcel(parcel(2, "2.5"), at=at(1))
        assert [p.id for p in shipment.parcels] == ["P1", "P2"]
        (event,) = shipment.pending_events
        assert isinstance(event, ParcelAdded)
        assert (event.parcel_id, event.total_weight_kg) == ("P2", Decimal("12.5"))

    def test_a_parcel_id_cannot_be_added_twice(self) -> None:
        """The id of a parcel already in the shipment is refused."""
        with pytest.raises(InvariantViolation, match="already has a parcel P1"):
            booked().add_parcel(parcel(1), at=at(1))

    def test_adding_after_printing_is_refused(self) -> None:
        """Labels are per parcel: after printing, no parcel can join."""
        with pytest.raises(InvalidStateError, match="only while BOOKED"):
            printed().add_parcel(parcel(2), at=at(3))


class TestAssignCarrier:
    """A carrier is assigned while the shipment is booked."""

    def test_assigning_records_carrier_assigned(self) -> None:
        """The carrier is set and the event names it."""
        shipment = booked()
        shipment.assign_carrier(POST, CARRIERS, at=at(1))
        assert shipment.carrier_id == POST
        assert [type(e) for e in shipment.pending_events] == [CarrierAssigned]
        assert shipment.pending_events[0].occurred_at == at(1)

    def test_assigning_the_same_carrier_again_records_nothing(self) -> None:
        """Repeating the command is harmless."""
        shipment = with_carrier()
        shipment.assign_carrier(POST, CARRIERS, at=at(2))
        assert shipment.pending_events == ()

    def test_another_carrier_may_replace_it_before_printing(self) -> None:
        """A booked shipment from Vienna can move from one carrier to another."""
        shipment = book(origin=VIENNA)
        shipment.assign_carrier(POST, CARRIERS, at=at(1))
        shipment.assign_carrier(ALPINE, CARRIERS, at=at(2))
        assert shipment.carrier_id == ALPINE
        assert len(shipment.pending_events) == 3

    def test_assigning_after_printing_is_refused(self) -> None:
        """The printed labels are the carrier's: the carrier is fixed."""
        with pytest.raises(InvalidStateError, match=r"assign a carrier to .* LABEL_PRINTED"):
            printed().assign_carrier(POST, CARRIERS, at=at(3))


class TestAttachInvoice:
    """A shipment refers to at most one invoice, by id."""

    def test_attaching_records_invoice_attached(self) -> None:
        """The invoice id is kept, not the invoice."""
        shipment = printed()
        shipment.attach_invoice(InvoiceId("INV-1"), at=at(3))
        assert shipment.invoice_id == "INV-1"
        assert [type(e) for e in shipment.pending_events] == [InvoiceAttached]

    def test_attaching_the_same_invoice_again_records_nothing(self) -> None:
        """Repeating the command is harmless."""
        shipment = booked()
        shipment.attach_invoice(InvoiceId("INV-1"), at=at(1))
        shipment.clear_events()
        shipment.attach_invoice(InvoiceId("INV-1"), at=at(2))
        assert shipment.pending_events == ()

    def test_another_invoice_is_refused(self) -> None:
        """A second, different invoice is refused, naming both."""
        shipment = booked()
        shipment.attach_invoice(InvoiceId("INV-1"), at=at(1))
        with pytest.raises(InvalidStateError, match="already billed by invoice INV-1, not INV-2"):
            shipment.attach_invoice(InvoiceId("INV-2"), at=at(2))

    def test_a_cancelled_shipment_is_not_billed(self) -> None:
        """Attaching an invoice to a cancelled shipment is refused."""
        with pytest.raises(InvalidStateError, match="is CANCELLED"):
            cancelled().attach_invoice(InvoiceId("INV-1"), at=at(2))


class TestPrintLabel:
    """Printing moves a booked shipment with a carrier to LABEL_PRINTED."""

    def test_printing_records_one_label_per_parcel(self) -> None:
        """LabelPrinted names the carrier and counts the parcels."""
        shipment = with_carrier()
        shipment.add_parcel(parcel(2), at=at(1))
        shipment.clear_events()
        shipment.print_label(at=at(2))
        assert shipment.status is ShipmentStatus.LABEL_PRINTED
        assert shipment.label_printed_at == at(2)
        (event,) = shipment.pending_events
        assert isinstance(event, LabelPrinted)
        assert (event.carrier_id, event.label_count) == (POST, 2)

    def test_printing_without_a_carrier_is_refused(self) -> None:
        """No carrier, no label."""
        with pytest.raises(InvalidStateError, match="no carrier is assigned"):
            booked().print_label(at=at(2))

    def test_printing_twice_is_refused(self) -> None:
        """The status table has no LABEL_PRINTED -> LABEL_PRINTED move."""
        with pytest.raises(InvalidStateError, match="in status LABEL_PRINTED"):
            printed().print_label(at=at(3))


class TestRecordScan:
    """Carrier scans move the shipment along the status table."""

    def test_pickup_scan_records_shipment_picked_up(self) -> None:
        """A pick-up scan moves a printed shipment to PICKED_UP and is kept."""
        shipment = printed()
        shipment.record_scan(scan(ScanKind.PICKUP, 10))
        assert shipment.status is ShipmentStatus.PICKED_UP
        assert shipment.scans == [scan(ScanKind.PICKUP, 10)]
        (event,) = shipment.pending_events
        assert isinstance(event, ShipmentPickedUp)
        assert (event.location, event.scanned_at, event.occurred_at) == (
            "Berlin depot",
            at(10),
            at(10),
        )

    def test_transit_scans_record_shipment_in_transit_each_time(self) -> None:
        """In transit may repeat: one event per hub."""
        shipment = picked_up()
        shipment.record_scan(scan(ScanKind.IN_TRANSIT, 20))
        shipment.record_scan(scan(ScanKind.IN_TRANSIT, 25))
        assert shipment.status is ShipmentStatus.IN_TRANSIT
        assert [type(e) for e in shipment.pending_events] == [ShipmentInTransit] * 2

    def test_exception_scan_records_a_scanned_exception(self) -> None:
        """An exception scan moves to EXCEPTION and counts as a scan."""
        shipment = picked_up()
        shipment.record_scan(scan(ScanKind.EXCEPTION, 20, note="box damaged"))
        assert shipment.status is ShipmentStatus.EXCEPTION
        (event,) = shipment.pending_events
        assert isinstance(event, ShipmentExceptionRecorded)
        assert (event.reason, event.scanned) == ("box damaged", True)

    def test_scan_by_another_carrier_is_refused(self) -> None:
        """Only the assigned carrier's scans count."""
        shipment = printed()
        with pytest.raises(InvalidStateError, match="carried by PARCEL-POST, not by ALPINE"):
            shipment.record_scan(scan(ScanKind.PICKUP, 10, carrier=ALPINE))
        assert shipment.scans == []

    def test_transit_before_pickup_is_refused(self) -> None:
        """The status table has no LABEL_PRINTED -> IN_TRANSIT move."""
        with pytest.raises(InvalidStateError, match="LABEL_PRINTED may only become"):
            printed().record_scan(scan(ScanKind.IN_TRANSIT, 10))

    def test_scan_before_printing_is_refused(self) -> None:
        """A booked shipment cannot be picked up."""
        with pytest.raises(InvalidStateError, match="in status BOOKED"):
            with_carrier().record_scan(scan(ScanKind.PICKUP, 10))


class TestRecordException:
    """Problems reported without a scan move the shipment to EXCEPTION."""

    def test_exception_without_scan_is_recorded_as_unscanned(self) -> None:
        """The event says scanned=False and no scan is added."""
        shipment = printed()
        shipment.record_exception("address unreadable", at=at(5))
        assert shipment.status is ShipmentStatus.EXCEPTION
        assert shipment.scans == []
        (event,) = shipment.pending_events
        assert isinstance(event, ShipmentExceptionRecorded)
        assert (event.reason, event.scanned) == ("address unreadable", False)

    def test_a_reason_is_required(self) -> None:
        """A blank reason is refused."""
        with pytest.raises(InvariantViolation, match="Exception reason must not be blank"):
            printed().record_exception("  ", at=at(5))

    def test_a_delivered_shipment_has_no_exception(self) -> None:
        """DELIVERED is final."""
        with pytest.raises(InvalidStateError, match="DELIVERED may only become nothing"):
            delivered().record_exception("lost", at=at(40))


class TestRecordMissedPickup:
    """A printed shipment not picked up by the end of its pickup window gets an exception."""

    def test_the_pickup_deadline_is_the_end_of_the_pickup_window(self) -> None:
        """The window of the factories ends six hours after the start time."""
        assert printed().pickup_deadline == at(360)

    def test_a_missed_pickup_is_an_unscanned_exception(self) -> None:
        """At the deadline, a printed shipment moves to EXCEPTION and says why."""
        shipment = printed()
        assert shipment.record_missed_pickup(at=at(360)) is True
        assert shipment.status is ShipmentStatus.EXCEPTION
        assert shipment.scans == []
        (event,) = shipment.pending_events
        assert isinstance(event, ShipmentExceptionRecorded)
        assert event.reason == (
            "no pickup scan by the end of the pickup window, 2026-07-06T14:00:00+00:00"
        )
        assert event.scanned is False

    def test_before_the_deadline_the_pickup_is_not_missed(self) -> None:
        """A deadline handled too early is refused; nothing changes."""
        shipment = printed()
        with pytest.raises(InvalidStateError, match="window is open until 2026-07-06T14:00"):
            shipment.record_missed_pickup(at=at(359))
        assert shipment.status is ShipmentStatus.LABEL_PRINTED
        assert shipment.pending_events == ()

    @pytest.mark.parametrize("state", [picked_up, in_transit, excepted, delivered])
    def test_a_shipment_that_waits_for_no_pickup_is_left_as_it_is(self, state: Build) -> None:
        """Picked up, or excepted already: a late or repeated deadline changes nothing."""
        shipment = state()
        status = shipment.status
        assert shipment.record_missed_pickup(at=at(400)) is False
        assert shipment.status is status
        assert shipment.pending_events == ()


class TestRecordDelivered:
    """Delivery ends the journey; it checks the current status first."""

    def test_delivery_records_shipment_delivered(self) -> None:
        """The recipient and time are kept and announced."""
        shipment = in_transit()
        shipment.record_delivered("M. Huber", at=at(30))
        assert shipment.status is ShipmentStatus.DELIVERED
        assert (shipment.delivered_at, shipment.received_by) == (at(30), "M. Huber")
        (event,) = shipment.pending_events
        assert isinstance(event, ShipmentDelivered)
        assert event.received_by == "M. Huber"

    @pytest.mark.parametrize(
        ("build", "status"),
        [
            (booked, "BOOKED"),
            (printed, "LABEL_PRINTED"),
            (delivered, "DELIVERED"),
            (cancelled, "CANCELLED"),
        ],
    )
    def test_delivery_from_a_status_that_cannot_become_delivered_is_refused(
        self, build: Build, status: str
    ) -> None:
        """Unlike the design sketch, a second delivery or one of a cancelled shipment fails."""
        shipment = build()
        with pytest.raises(InvalidStateError, match=rf"delivery of shipment .* in status {status}"):
            shipment.record_delivered("M. Huber", at=at(50))
        assert shipment.pending_events == ()

    def test_a_recipient_is_required(self) -> None:
        """A blank recipient name is refused."""
        with pytest.raises(InvariantViolation, match="Recipient name must not be blank"):
            in_transit().record_delivered("", at=at(30))


class TestCancel:
    """A booked shipment can be cancelled, once."""

    def test_cancelling_records_shipment_cancelled(self) -> None:
        """The reason and time are kept and announced."""
        shipment = with_carrier()
        shipment.cancel("customer changed their mind", at=at(2))
        assert shipment.status is ShipmentStatus.CANCELLED
        assert shipment.cancellation_reason == "customer changed their mind"
        (event,) = shipment.pending_events
        assert isinstance(event, ShipmentCancelled)
        assert event.reason == "customer changed their mind"

    def test_cancelling_twice_is_refused(self) -> None:
        """CANCELLED is final."""
        with pytest.raises(InvalidStateError, match=r"Cannot cancel shipment .* CANCELLED"):
            cancelled().cancel("again", at=at(2))

    def test_a_reason_is_required(self) -> None:
        """A blank reason is refused."""
        with pytest.raises(InvariantViolation, match="Cancellation reason must not be blank"):
            booked().cancel("", at=at(2))


class TestTime:
    """Times are timezone-aware and never run backwards within a shipment."""

    def test_a_naive_command_time_is_refused(self) -> None:
        """Commands refuse naive datetimes."""
        with pytest.raises(InvariantViolation, match="Printing the label must be timezone-aware"):
            with_carrier().print_label(at=datetime(2026, 7, 6, 9, 0))

    def test_a_command_before_the_last_activity_is_refused(self) -> None:
        """A scan dated before the label was printed is refused."""
        shipment = printed()
        with pytest.raises(InvariantViolation, match=r"PICKUP scan at .* precedes the last"):
            shipment.record_scan(scan(ScanKind.PICKUP, 1))

    def test_the_same_instant_is_accepted(self) -> None:
        """Time may stand still (two commands in one clock tick)."""
        shipment = printed()
        shipment.record_scan(scan(ScanKind.PICKUP, 2))
        assert shipment.status is ShipmentStatus.PICKED_UP


class TestTransitions:
    """The explicit status table."""

    def test_every_status_has_an_entry(self) -> None:
        """No status is missing from the table."""
        assert set(TRANSITIONS) == set(ShipmentStatus)

    def test_delivered_and_cancelled_are_final(self) -> None:
        """Only the two end states allow no move."""
        finals = {status for status, targets in TRANSITIONS.items() if not targets}
        assert finals == {ShipmentStatus.DELIVERED, ShipmentStatus.CANCELLED}

    def test_cancel_is_reachable_only_from_booked(self) -> None:
        """Invariant 4 agrees with the table."""
        sources = {s for s, targets in TRANSITIONS.items() if ShipmentStatus.CANCELLED in targets}
        assert sources == {ShipmentStatus.BOOKED}
