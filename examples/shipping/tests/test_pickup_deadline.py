"""The pickup deadline: a durable timer, scheduled with the printed label, moved clocks.

Each test runs on a SQLite file (timer worker, outbox, relay to the bus) and in memory
(the store's ``take_due``), with a :class:`~tactical.testing.MovableClock` that the test
moves instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

import sqlalchemy as sa
from examples.shipping.adapters import (
    ShippingApplication,
    SqlTimers,
    in_memory_application,
    sql_application,
)
from examples.shipping.domain import ScanKind, ShipmentStatus
from examples.shipping.events import (
    PickupDeadlinePassed,
    ShipmentExceptionRecorded,
    ShipmentPickedUp,
)
from examples.shipping.ids import ShipmentId
from examples.shipping.inventory import LabelStockId
from examples.shipping.services import pickup_deadline_key
from examples.shipping.tests.factories import CARRIERS, POST, T0, at, awbs, printable, scan
from tactical import DomainEvent, EventBus, InMemoryStore, InvalidStateError
from tactical.sqlalchemy import scheduled_table
from tactical.testing import MovableClock


@dataclass(frozen=True)
class Timed:
    """An application whose clock the test moves, and every event published on its bus."""

    app: ShippingApplication
    clock: MovableClock
    events: list[DomainEvent]
    engine: sa.Engine | None = None
    store: InMemoryStore | None = None

    def timer_keys(self) -> list[str]:
        """The keys of the timers stored and not fired."""
        if self.engine is not None:
            with self.engine.connect() as connection:
                return list(connection.scalars(sa.select(scheduled_table.c.key)))
        assert self.store is not None
        return [timer.key for timer in self.store.scheduled()]

    def status(self, shipment_id: ShipmentId) -> ShipmentStatus:
        """The shipment's committed status."""
        return self.app.shipping.shipment(shipment_id).status

    def exceptions(self) -> list[ShipmentExceptionRecorded]:
        """The shipment exceptions published so far."""
        return [e for e in self.events if isinstance(e, ShipmentExceptionRecorded)]


def started(kind: str, tmp_path: Path) -> Iterator[Timed]:
    """Both contexts with a stock of 100 labels, at the start time, on SQLite or in memory."""
    clock = MovableClock(T0)
    bus = EventBus()
    events: list[DomainEvent] = []
    bus.subscribe(DomainEvent, events.append)
    if kind == "memory":
        store = InMemoryStore()
        app = in_memory_application(
            CARRIERS, clock=clock, next_shipment_id=awbs(), store=store, bus=bus
        )
        app.inventory.open_stock(LabelStockId(POST), 100)
        yield Timed(app, clock, events, store=store)
        return
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'deadlines.sqlite3'}")
    app = sql_application(engine, CARRIERS, clock=clock, next_shipment_id=awbs(), bus=bus)
    app.inventory.open_stock(LabelStockId(POST), 100)
    yield Timed(app, clock, events, engine=engine)
    engine.dispose()


@pytest.fixture(params=["sql", "memory"])
def timed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Timed]:
    """The application on a SQLite file, then in memory."""
    yield from started(request.param, tmp_path)


@pytest.fixture
def sql_timed(tmp_path: Path) -> Iterator[Timed]:
    """The application on a SQLite file."""
    yield from started("sql", tmp_path)


class TestDeadline:
    """No pickup scan by the end of the window: the shipment gets an exception."""

    def test_printing_a_label_schedules_its_deadline_for_the_end_of_the_window(
        self, timed: Timed
    ) -> None:
        """The timer is stored with the printed label, under the shipment's key."""
        shipment_id = printable(timed.app)
        assert timed.timer_keys() == []
        timed.app.shipping.print_label(shipment_id)
        assert timed.timer_keys() == [pickup_deadline_key(shipment_id)]

    def test_a_refused_print_schedules_nothing(self, timed: Timed) -> None:
        """The timer commits with the printed label or not at all."""
        shipment_id = printable(timed.app)
        timed.app.shipping.cancel(shipment_id, "customer changed their mind")
        with pytest.raises(InvalidStateError, match="in status CANCELLED"):
            timed.app.shipping.print_label(shipment_id)
        assert timed.timer_keys() == []

    def test_the_deadline_passing_without_a_pickup_records_an_exception(self, timed: Timed) -> None:
        """Not due a second early; at the end of the window, one unscanned exception."""
        shipment_id = printable(timed.app)
        timed.app.shipping.print_label(shipment_id)
        timed.clock.advance(at(360) - T0 - timedelta(seconds=1))
        assert timed.app.timers.deliver_due() == 0
        assert timed.status(shipment_id) is ShipmentStatus.LABEL_PRINTED
        timed.clock.advance(timedelta(seconds=1))
        assert timed.app.timers.deliver_due() == 1
        assert timed.status(shipment_id) is ShipmentStatus.EXCEPTION
        (passed,) = [e for e in timed.events if isinstance(e, PickupDeadlinePassed)]
        assert (passed.shipment_id, passed.deadline) == (shipment_id, at(360))
        (exception,) = timed.exceptions()
        assert exception.shipment_id == shipment_id
        assert exception.scanned is False
        assert exception.reason.startswith("no pickup scan by the end of the pickup window")
        assert timed.timer_keys() == []

    def test_a_pickup_in_time_cancels_the_deadline(self, timed: Timed) -> None:
        """The pickup scan cancels the timer in its transaction: nothing fires, ever."""
        shipment_id = printable(timed.app)
        timed.app.shipping.print_label(shipment_id)
        timed.clock.advance(timedelta(hours=3))
        timed.app.shipping.record_scan(shipment_id, scan(ScanKind.PICKUP, 180))
        assert timed.timer_keys() == []
        timed.clock.advance(timedelta(days=30))
        assert timed.app.timers.deliver_due() == 0
        assert timed.status(shipment_id) is ShipmentStatus.PICKED_UP
        assert timed.exceptions() == []

    def test_each_shipment_has_its_own_deadline(self, timed: Timed) -> None:
        """Of two printed shipments, only the one not picked up gets an exception."""
        collected = printable(timed.app)
        forgotten = printable(timed.app)
        timed.app.shipping.print_label(collected)
        timed.app.shipping.print_label(forgotten)
        timed.clock.advance(timedelta(hours=2))
        timed.app.shipping.record_scan(collected, scan(ScanKind.PICKUP, 120))
        timed.clock.advance(timedelta(days=1))
        assert timed.app.timers.deliver_due() == 1
        assert [e.shipment_id for e in timed.exceptions()] == [forgotten]
        assert timed.status(collected) is ShipmentStatus.PICKED_UP

    def test_a_pickup_after_the_exception_is_still_recorded(self, timed: Timed) -> None:
        """A late carrier: EXCEPTION may become PICKED_UP, as the status table says."""
        shipment_id = printable(timed.app)
        timed.app.shipping.print_label(shipment_id)
        timed.clock.advance(timedelta(hours=7))
        timed.app.timers.deliver_due()
        timed.app.shipping.record_scan(shipment_id, scan(ScanKind.PICKUP, 7 * 60))
        assert timed.status(shipment_id) is ShipmentStatus.PICKED_UP
        assert [type(e) for e in timed.events[-1:]] == [ShipmentPickedUp]


class TestIdempotentFiring:
    """A deadline delivered again, or after a pickup, records no second exception."""

    def test_a_redelivered_deadline_records_one_exception(self, timed: Timed) -> None:
        """The relay publishes at least once: the second delivery finds the exception."""
        shipment_id = printable(timed.app)
        timed.app.shipping.print_label(shipment_id)
        timed.clock.advance(timedelta(hours=7))
        assert timed.app.timers.deliver_due() == 1
        (passed,) = [e for e in timed.events if isinstance(e, PickupDeadlinePassed)]
        version = timed.app.shipping.shipment(shipment_id).version
        timed.app.bus.publish(passed)
        assert timed.app.shipping.shipment(shipment_id).version == version
        assert len(timed.exceptions()) == 1

    def test_a_fired_timer_fires_once(self, timed: Timed) -> None:
        """Delivering the due timers again, later, fires nothing more."""
        shipment_id = printable(timed.app)
        timed.app.shipping.print_label(shipment_id)
        timed.clock.advance(timedelta(hours=7))
        assert timed.app.timers.deliver_due() == 1
        timed.clock.advance(timedelta(days=1))
        assert timed.app.timers.deliver_due() == 0
        assert len(timed.exceptions()) == 1

    def test_a_pickup_between_firing_and_delivery_wins(self, sql_timed: Timed) -> None:
        """On SQL: the worker fired the timer into the outbox, then the pickup scan came
        (its cancel finds no timer); the relay's late delivery leaves the shipment picked up."""
        timed = sql_timed
        assert isinstance(timed.app.timers, SqlTimers)
        shipment_id = printable(timed.app)
        timed.app.shipping.print_label(shipment_id)
        timed.clock.advance(timedelta(hours=7))
        assert timed.app.timers.worker.fire_due() == 1
        timed.app.shipping.record_scan(shipment_id, scan(ScanKind.PICKUP, 7 * 60))
        assert timed.app.timers.relay.relay_once() > 0
        assert timed.status(shipment_id) is ShipmentStatus.PICKED_UP
        assert [e.shipment_id for e in timed.events if isinstance(e, PickupDeadlinePassed)] == [
            shipment_id
        ]
        assert timed.exceptions() == []
