"""A narrated run of the shipping and inventory contexts on a SQLite file.

Run it from the project root with ``python -m examples.shipping`` (with ``src`` on
``PYTHONPATH`` when tactical is not installed). It books a shipment, assigns a carrier,
prints the labels (a handler of ``LabelPrinted`` dispatches the command
``DecrementLabelStock``, and the carrier's label stock goes down in the inventory's own
transaction; the pickup deadline is scheduled with the label), records the carrier's scans
(the pickup cancels the deadline) and the delivery, and shows refused commands with their
messages, including what happens when the label stock runs out. Finally the clock moves
past a pickup window nobody came for: the timer worker fires the deadline, the outbox relay
brings it to the bus, and the shipment gets an exception. Exit status 0.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from examples.shipping.adapters import (
    AwbSequence,
    InMemoryCarrierDirectory,
    ShippingApplication,
    SteppingClock,
    sql_application,
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
    Weight,
)
from examples.shipping.ids import CarrierId, CustomerId, ParcelId, RateSnapshotId, ShipmentId
from examples.shipping.inventory import LabelStockId
from tactical import (
    Command,
    CommandBus,
    DomainError,
    DomainEvent,
    EventBus,
    EventHandlerError,
)
from tactical.sqlalchemy import aggregates_table, scheduled_table

PARCEL_POST = CarrierId("PARCEL-POST")
ALPINE_EXPRESS = CarrierId("ALPINE-EXPRESS")
BERLIN = Address("Friedrichstrasse 10", "Berlin", "10117", "DE")
VIENNA = Address("Ringstrasse 5", "Vienna", "1010", "AT")
START = datetime(2026, 7, 6, 8, 0, tzinfo=UTC)
R = TypeVar("R")


def say(text: str = "") -> None:
    """Print one line of the narration."""
    print(text)


class _OneLineLog(logging.Formatter):
    """Formats a log record as one narration line (the traceback is not the story).

    Event ids are left out: they are random, and the narration is the same on every run.
    """

    def format(self, record: logging.LogRecord) -> str:
        message = _EVENT_ID.sub("", record.getMessage())
        return f"      log    {record.name}: {message}"


_EVENT_ID = re.compile(r" event_id=[0-9a-f-]{36}")


def show_event(event: DomainEvent) -> None:
    """Print a published event: its type and fields, without the bookkeeping ones."""
    fields = {
        name: getattr(event, name)
        for name in event.__dataclass_fields__
        if name not in {"event_id", "occurred_at"}
    }
    details = ", ".join(f"{name}={value}" for name, value in fields.items())
    say(f"      event  {type(event).__name__}({details})")


class NarratedCommands(CommandBus):
    """A command bus that prints each command before its handler runs."""

    def dispatch(self, command: Command[R]) -> R:
        """Print ``command``, then dispatch it as any command bus does."""
        fields = {
            name: getattr(command, name)
            for name in command.__dataclass_fields__
            if name != "command_id"
        }
        details = ", ".join(f"{name}={value}" for name, value in fields.items())
        say(f"      command {type(command).__name__}({details})")
        return super().dispatch(command)


def refused(what: str, error: DomainError) -> None:
    """Print a command the model refused, with its error message."""
    say(f"    REFUSED {what}: {type(error).__name__}: {error}")


def parcel(number: int, kg: str, contents: str) -> Parcel:
    """A parcel of ``kg`` kilograms in a 40 x 30 x 20 cm box."""
    return Parcel(
        ParcelId(f"P{number}"),
        weight_of(kg),
        Dimensions(Decimal(40), Decimal(30), Decimal(20)),
        contents,
    )


def weight_of(kg: str) -> Weight:
    """A weight from a decimal string."""
    return Weight(Decimal(kg))


def book(app: ShippingApplication, clock: SteppingClock, *parcels: Parcel) -> ShipmentId:
    """Book a ground shipment from Berlin to Vienna."""
    now = clock.now()
    return app.shipping.book(
        customer_id=CustomerId("CUST-0042"),
        service_class=ServiceClass.GROUND,
        origin=BERLIN,
        destination=VIENNA,
        pickup_window=PickupWindow(now + timedelta(hours=2), now + timedelta(hours=6)),
        parcels=parcels,
        rate_snapshot_id=RateSnapshotId("RATE-2026-07-0099"),
        quoted_price=Money(2490, "EUR"),
    )


def show_timers(engine: sa.Engine) -> None:
    """Print the durable timers stored and not yet fired."""
    table = scheduled_table
    with engine.connect() as connection:
        timers = connection.execute(sa.select(table.c.key, table.c.due_at)).all()
    for timer in timers:
        say(f"      timer  {timer.key}, due {timer.due_at:%Y-%m-%d %H:%M} UTC")
    if not timers:
        say("      timer  none scheduled")


def run(database: Path) -> None:
    """Tell the whole story on a SQLite database at ``database``."""
    engine = sa.create_engine(f"sqlite:///{database}")
    clock = SteppingClock(START)
    carriers = InMemoryCarrierDirectory({PARCEL_POST: {"DE", "AT"}, ALPINE_EXPRESS: {"AT", "CH"}})
    bus = EventBus()
    bus.subscribe(DomainEvent, show_event)
    app = sql_application(
        engine,
        carriers,
        clock=clock,
        next_shipment_id=AwbSequence(176, 1234567),
        bus=bus,
        commands=NarratedCommands(),
    )
    stock_id = LabelStockId(PARCEL_POST)
    try:
        say(f"Shipping and inventory contexts on SQLite at {database}")
        say("Every aggregate is stored as a JSON document: this example has no mapping code.")
        say()
        say(f"1. The inventory opens a label stock of 3 labels for carrier {PARCEL_POST}.")
        app.inventory.open_stock(stock_id, 3)

        say()
        say("2. A customer books a ground shipment of two parcels, Berlin -> Vienna.")
        first = book(app, clock, parcel(1, "12.5", "books"), parcel(2, "4.25", "a lamp"))
        say(f"    shipment {first} is BOOKED")
        say("    An oversized same-day booking is refused (invariant 1):")
        try:
            app.shipping.book(
                customer_id=CustomerId("CUST-0042"),
                service_class=ServiceClass.SAMEDAY,
                origin=BERLIN,
                destination=VIENNA,
                pickup_window=PickupWindow(START, START + timedelta(days=1)),
                parcels=[parcel(3, "45", "an anvil")],
                rate_snapshot_id=RateSnapshotId("RATE-2026-07-0100"),
                quoted_price=Money(9900, "EUR"),
            )
        except DomainError as error:
            refused("book a 45 kg same-day shipment", error)

        say("    Upgrading it to EXPRESS after booking is refused (invariant 5):")
        shipment = app.shipping.shipment(first)
        try:
            shipment.service_class = ServiceClass.EXPRESS
        except DomainError as error:
            refused("change the service class", error)

        say()
        say("3. Assigning a carrier: it must serve the origin country (invariant 2).")
        try:
            app.shipping.assign_carrier(first, ALPINE_EXPRESS)
        except DomainError as error:
            refused(f"assign {ALPINE_EXPRESS}", error)
        app.shipping.assign_carrier(first, PARCEL_POST)

        say()
        say("4. The labels are printed, in one transaction for the shipment that also")
        say("   schedules its pickup deadline (a durable timer) for the end of the pickup")
        say("   window. Then a handler of LabelPrinted dispatches the command")
        say("   DecrementLabelStock on the command bus; its one handler, the inventory,")
        say("   takes 2 labels in its own transaction.")
        app.shipping.print_label(first)
        remaining = app.inventory.label_stock(stock_id).remaining
        say(f"    label stock of {PARCEL_POST}: 3 -> {remaining}")
        show_timers(engine)

        say()
        say("5. The customer changes their mind, too late (invariant 4):")
        try:
            app.shipping.cancel(first, "customer changed their mind")
        except DomainError as error:
            refused("cancel", error)

        say()
        say("6. Delivery follows the status table, and needs a carrier scan (invariant 3):")
        try:
            app.shipping.record_delivered(first, "M. Huber")
        except DomainError as error:
            refused("record the delivery", error)
        say("    Operations report a problem without any scan; EXCEPTION may become DELIVERED,")
        say("    but no carrier has scanned the parcels yet:")
        app.shipping.record_exception(first, "parcels not ready at the collection point")
        try:
            app.shipping.record_delivered(first, "M. Huber")
        except DomainError as error:
            refused("record the delivery", error)
        say("    The carrier picks up within the window (the pickup scan cancels the")
        say("    deadline in its transaction), scans at a hub, and delivers:")
        clock.advance(timedelta(hours=3))
        app.shipping.record_scan(
            first, CarrierScan(ScanKind.PICKUP, PARCEL_POST, "Berlin depot", clock.now())
        )
        show_timers(engine)
        clock.advance(timedelta(hours=9))
        app.shipping.record_scan(
            first, CarrierScan(ScanKind.IN_TRANSIT, PARCEL_POST, "Leipzig hub", clock.now())
        )
        clock.advance(timedelta(hours=14))
        app.shipping.record_delivered(first, "M. Huber")
        shipment = app.shipping.shipment(first)
        say(f"    shipment {first} is {shipment.status}, version {shipment.version}")

        say()
        say("7. The label stock runs out. A second shipment of two parcels is printed while")
        say(f"   only {remaining} label is counted in stock:")
        second = book(app, clock, parcel(1, "2", "shoes"), parcel(2, "3", "a kettle"))
        app.shipping.assign_carrier(second, PARCEL_POST)
        try:
            app.shipping.print_label(second)
        except EventHandlerError as failure:
            for cause in failure.exceptions:
                if isinstance(cause, DomainError):
                    refused("take 2 labels from the stock", cause)
        stock = app.inventory.label_stock(stock_id)
        status = app.shipping.shipment(second).status
        say(f"    The shipment's transaction had committed and stands: {second} is {status}.")
        say(
            f"    The stock never goes negative: {stock.remaining} left, "
            f"{stock.refused_labels} refused labels recorded for a stock count."
        )
        app.inventory.restock(stock_id, 500)
        say(f"    Restocked: {app.inventory.label_stock(stock_id).remaining} labels.")

        say()
        say(f"8. Nobody comes to pick up {second}. Its pickup deadline is stored:")
        show_timers(engine)
        clock.advance(timedelta(hours=7))
        say(f"   The clock moves 7 hours, to {clock.now():%Y-%m-%d %H:%M} UTC, past the end of")
        say("   the window. The timer worker fires the deadline into the outbox, the relay")
        say("   brings it to the bus, and a handler dispatches RecordMissedPickup:")
        fired = app.timers.deliver_due()
        status = app.shipping.shipment(second).status
        say(f"    {fired} timer fired: shipment {second} is {status}.")
        say(f"    A second round fires nothing: {app.timers.deliver_due()} timers.")

        say()
        table = aggregates_table
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.aggregate_type, table.c.aggregate_id, table.c.version)
            ).all()
            stock_state = connection.execute(
                sa.select(table.c.state).where(table.c.aggregate_id == stock_id)
            ).scalar_one()
        say("The database holds one JSON document per aggregate, and no mapping code:")
        for row in rows:
            say(f"    {row.aggregate_type} {row.aggregate_id} (version {row.version})")
        say(f"    the label stock's document: {json.dumps(stock_state)}")
    finally:
        engine.dispose()


def main() -> None:
    """Run the scenario in a temporary directory that is removed afterwards."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_OneLineLog())
    logging.getLogger("tactical").addHandler(handler)
    with tempfile.TemporaryDirectory(prefix="tactical-shipping-") as directory:
        run(Path(directory) / "shipping.sqlite3")


if __name__ == "__main__":
    main()
