"""Properties of the Shipment aggregate under any sequence of commands (Hypothesis)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from examples.shipping.domain import (
    TRANSITIONS,
    CarrierScan,
    ScanKind,
    ServiceClass,
    Shipment,
    ShipmentStatus,
)
from examples.shipping.ids import CarrierId, InvoiceId
from examples.shipping.tests.factories import ALPINE, CARRIERS, POST, T0, book, parcel
from tactical import DomainError

Command = Callable[[Shipment, datetime], None]
"""A command given to a shipment at a time."""

carriers = st.sampled_from([POST, ALPINE])


def add_parcel(number: int, kg: Decimal) -> Command:
    """Add parcel ``P<number>`` weighing ``kg``."""
    return lambda s, at: s.add_parcel(parcel(number, str(kg)), at=at)


def assign(carrier: CarrierId) -> Command:
    """Assign ``carrier``."""
    return lambda s, at: s.assign_carrier(carrier, CARRIERS, at=at)


def scan(kind: ScanKind, carrier: CarrierId) -> Command:
    """Record a ``kind`` scan by ``carrier``."""
    return lambda s, at: s.record_scan(CarrierScan(kind, carrier, "hub", at, "note"))


def attach(number: int) -> Command:
    """Attach invoice ``INV-<number>``."""
    return lambda s, at: s.attach_invoice(InvoiceId(f"INV-{number}"), at=at)


def print_label(s: Shipment, at: datetime) -> None:
    """Print the label."""
    s.print_label(at=at)


def record_exception(s: Shipment, at: datetime) -> None:
    """Record an exception without a scan."""
    s.record_exception("held at the depot", at=at)


def record_delivered(s: Shipment, at: datetime) -> None:
    """Record the delivery."""
    s.record_delivered("M. Huber", at=at)


def cancel(s: Shipment, at: datetime) -> None:
    """Cancel."""
    s.cancel("changed their mind", at=at)


commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(add_parcel, st.integers(2, 6), st.decimals("0.5", "400", places=2)),
    st.builds(assign, carriers),
    st.builds(scan, st.sampled_from(list(ScanKind)), carriers),
    st.builds(attach, st.integers(1, 2)),
    st.sampled_from([print_label, record_exception, record_delivered, cancel]),
)

HAPPY_PATH: tuple[Command, ...] = (
    assign(POST),
    print_label,
    scan(ScanKind.PICKUP, POST),
    scan(ScanKind.IN_TRANSIT, POST),
    record_delivered,
)
"""The usual journey; a prefix of it brings the shipment into every status."""

# Mostly forwards in time, sometimes backwards (which must be refused).
steps = st.integers(min_value=-30, max_value=240).map(lambda m: timedelta(minutes=m))


def check_invariants(shipment: Shipment, service_class: ServiceClass) -> None:
    """The five invariants, read from the state."""
    assert shipment.total_weight <= shipment.service_class.max_total_weight.kg
    if shipment.carrier_id is not None:
        assert CARRIERS.serves(shipment.carrier_id, shipment.origin.iso_country)
    if shipment.status is ShipmentStatus.DELIVERED:
        assert shipment.scans
    if shipment.status is ShipmentStatus.CANCELLED:
        assert shipment.label_printed_at is None
    assert shipment.service_class is service_class


class TestAnyCommandSequence:
    """Whatever commands arrive, in whatever order, the root keeps its rules."""

    @settings(max_examples=200, deadline=None)
    @given(
        service_class=st.sampled_from(list(ServiceClass)),
        journey=st.integers(0, len(HAPPY_PATH)),
        sequence=st.lists(st.tuples(commands, steps), max_size=12),
    )
    def test_invariants_hold_and_refusals_change_nothing(
        self,
        service_class: ServiceClass,
        journey: int,
        sequence: list[tuple[Command, timedelta]],
    ) -> None:
        """After part of the usual journey, each accepted command follows the status table
        and records at most one event; each refused one leaves the state and the pending
        events exactly as they were."""
        shipment = book(parcel(1, "5"), service_class=service_class)
        now = T0
        for minute, command in enumerate(HAPPY_PATH[:journey], start=1):
            command(shipment, now + timedelta(minutes=minute))
        now += timedelta(minutes=journey)
        event(f"started {shipment.status}")
        for command, step in sequence:
            now += step
            before = dataclasses.asdict(shipment)
            events_before = shipment.pending_events
            try:
                command(shipment, now)
            except DomainError:
                assert dataclasses.asdict(shipment) == before
                assert shipment.pending_events == events_before
            else:
                previous = ShipmentStatus(before["status"])
                assert shipment.status is previous or shipment.status in TRANSITIONS[previous]
                assert len(shipment.pending_events) - len(events_before) in {0, 1}
            check_invariants(shipment, service_class)
        event(f"ended {shipment.status}")
