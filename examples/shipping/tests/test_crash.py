"""A process delivering the pickup deadlines is killed mid-way: the deadline fires once in effect.

The process runs the example's own wiring (:func:`~examples.shipping.adapters.sql_application`
and its :class:`~examples.shipping.adapters.SqlTimers`) on a SQLite file, and is killed
with SIGKILL at one of two points:

- **worker**: the timer worker has deleted the timer and written its outbox row (the script
  checks that it sent both statements), but not committed: the transaction is rolled back,
  the timer stays scheduled;
- **relay**: the relay has published the fired deadline and its handler has committed the
  shipment exception, but the relay has not marked the outbox row published: the next
  round publishes it again.

Either way, after a restarted round the shipment has exactly one exception.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest

import sqlalchemy as sa
from examples.shipping.adapters import sql_application
from examples.shipping.domain import ShipmentStatus
from examples.shipping.inventory import LabelStockId
from examples.shipping.services import pickup_deadline_key
from examples.shipping.tests.factories import CARRIERS, POST, T0, awbs, printable
from tactical.outbox import TIMER_AGGREGATE_TYPE
from tactical.sqlalchemy import outbox_table, scheduled_table
from tactical.testing import MovableClock

_EXCEPTION_TYPE = "examples.shipping.events.ShipmentExceptionRecorded"

_KILLED_DELIVERY = """
import sys, time
from datetime import datetime
import sqlalchemy as sa
from examples.shipping.adapters import sql_application
from examples.shipping.events import PickupDeadlinePassed
from examples.shipping.tests.factories import CARRIERS, awbs
from tactical import EventBus
from tactical.testing import MovableClock

database, kill_point, now = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
engine = sa.create_engine(f"sqlite:///{database}")
bus = EventBus()
app = sql_application(engine, CARRIERS, clock=MovableClock(now), next_shipment_id=awbs(), bus=bus)

statements = []

def stop(*_):
    print("stopped", flush=True)
    time.sleep(600)  # killed here

def stop_once_fired(connection):
    deleted = any(s.startswith("DELETE FROM tactical_scheduled") for s in statements)
    inserted = any(s.startswith("INSERT INTO tactical_outbox") for s in statements)
    if not (deleted and inserted):
        print(f"a commit before the timer was fired: {statements}", flush=True)
        sys.exit(1)
    stop()

if kill_point == "worker":
    sa.event.listen(
        engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *_: statements.append(statement.strip()),
    )
    sa.event.listen(engine, "commit", stop_once_fired)  # the timer worker's commit
else:
    bus.subscribe(PickupDeadlinePassed, stop)  # after the deadline's handler committed
app.timers.deliver_due()
print("not stopped", flush=True)
"""


class OutboxRow(NamedTuple):
    """An outbox row: its event type, its aggregate type and when it was published."""

    event_type: str
    aggregate_type: str
    published_at: datetime | None


def outbox(engine: sa.Engine) -> list[OutboxRow]:
    """The outbox rows, oldest first."""
    t = outbox_table.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(t.event_type, t.aggregate_type, t.published_at).order_by(t.position)
        )
        return [OutboxRow(*row) for row in rows]


def timer_keys(engine: sa.Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(sa.select(scheduled_table.c.key)))


@pytest.mark.slow
@pytest.mark.parametrize("kill_point", ["worker", "relay"])
def test_a_killed_delivery_fires_the_deadline_once_in_effect(
    tmp_path: Path, kill_point: str
) -> None:
    """SIGKILL mid-delivery, then a new round: one exception, no timer, nothing unpublished."""
    database = tmp_path / "shipping.sqlite3"
    engine = sa.create_engine(f"sqlite:///{database}")
    clock = MovableClock(T0)
    app = sql_application(engine, CARRIERS, clock=clock, next_shipment_id=awbs())
    app.inventory.open_stock(LabelStockId(POST), 100)
    shipment_id = printable(app)
    app.shipping.print_label(shipment_id)
    app.timers.deliver_due()  # relays what is there: only the deadline stays unpublished
    clock.advance(timedelta(hours=7))
    script = tmp_path / "killed_delivery.py"
    script.write_text(_KILLED_DELIVERY)
    with subprocess.Popen(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, str(script), str(database), kill_point, clock.now().isoformat()],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "stopped"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    if kill_point == "worker":  # rolled back: still scheduled, nothing fired
        assert timer_keys(engine) == [pickup_deadline_key(shipment_id)]
        assert all(row.aggregate_type != TIMER_AGGREGATE_TYPE for row in outbox(engine))
        assert app.shipping.shipment(shipment_id).status is ShipmentStatus.LABEL_PRINTED
    else:  # handled and committed, not marked: the fired deadline waits to be sent again
        assert timer_keys(engine) == []
        (fired,) = [row for row in outbox(engine) if row.aggregate_type == TIMER_AGGREGATE_TYPE]
        assert fired.published_at is None
        assert app.shipping.shipment(shipment_id).status is ShipmentStatus.EXCEPTION
    version = app.shipping.shipment(shipment_id).version

    app.timers.deliver_due()  # the restarted round

    shipment = app.shipping.shipment(shipment_id)
    assert shipment.status is ShipmentStatus.EXCEPTION
    assert shipment.version == (version + 1 if kill_point == "worker" else version)
    assert [row.event_type for row in outbox(engine)].count(_EXCEPTION_TYPE) == 1
    assert timer_keys(engine) == []
    assert [row for row in outbox(engine) if row.published_at is None] == []
    engine.dispose()
