"""Process managers on SQLite and PostgreSQL: stored with their timers, version-checked, retried."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from tests.process_model import (
    PICKUP_WINDOW,
    DecrementLabelStock,
    LabelPrinted,
    PickupDeadline,
    PickupDeadlinePassed,
    PickupScanned,
    RaiseShipmentException,
    deadline_key,
)

import sqlalchemy as sa
from tactical import Command, CommandBus, ConcurrencyError, ProcessManagerHandler
from tactical._tracking import Change
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, scheduled_table

PRINTED_AT = datetime(2030, 6, 1, 9, tzinfo=UTC)


def stored_timers(engine: sa.Engine) -> list[tuple[str, datetime]]:
    s = scheduled_table.c
    with engine.connect() as connection:
        rows = connection.execute(sa.select(s.key, s.due_at).order_by(s.key))
        return [(r.key, r.due_at.replace(tzinfo=UTC)) for r in rows]


def load(engine: sa.Engine, shipment_id: UUID) -> PickupDeadline | None:
    with SqlAlchemyUnitOfWork(engine) as uow:
        return uow.repository(PickupDeadline).get(shipment_id)


def command_bus(dispatched: list[Command[None]]) -> CommandBus:
    commands = CommandBus()
    commands.register(DecrementLabelStock, dispatched.append)
    commands.register(RaiseShipmentException, dispatched.append)
    return commands


class TestStored:
    def test_the_timer_it_requests_is_written_with_it_and_cancelled_with_it(
        self, engine: sa.Engine
    ) -> None:
        """The deadline row appears with the started manager and goes with its completion."""
        dispatched: list[Command[None]] = []
        handler = ProcessManagerHandler(
            PickupDeadline, SqlAlchemyUnitOfWork(engine), command_bus(dispatched)
        )
        shipment_id = uuid4()
        handler(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        manager = load(engine, shipment_id)
        assert manager is not None
        assert (manager.carrier, manager.version) == ("DHL", 1)
        assert stored_timers(engine) == [(deadline_key(shipment_id), PRINTED_AT + PICKUP_WINDOW)]
        handler(PickupScanned(shipment_id))
        manager = load(engine, shipment_id)
        assert manager is not None
        assert (manager.completed, manager.version) == (True, 2)
        assert stored_timers(engine) == []
        assert [type(c) for c in dispatched] == [DecrementLabelStock]

    def test_a_refused_commit_stores_neither_the_manager_nor_its_timer(
        self, engine: sa.Engine
    ) -> None:
        """A manager whose commit fails leaves no timer behind, and dispatches nothing."""
        shipment_id = uuid4()
        dispatched: list[Command[None]] = []
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(PickupDeadline).add(PickupDeadline(shipment_id, version=0))
            uow.commit()

        class Stale(SqlAlchemyUnitOfWork):
            """Loads the manager as if it were new: its insert then hits the stored row."""

            def _load(self, aggregate_type: type[object], aggregate_id: object) -> None:  # type: ignore[override]
                return None

        handler = ProcessManagerHandler(PickupDeadline, Stale(engine), command_bus(dispatched))
        with pytest.raises(ConcurrencyError):
            handler(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        assert stored_timers(engine) == []
        assert dispatched == []


@pytest.mark.postgres
class TestRacing:
    def test_concurrent_events_conflict_and_the_loser_is_retried(
        self, postgres_engine: sa.Engine
    ) -> None:
        """A pickup scan commits between the deadline's load and its write: the deadline retries."""
        engine = postgres_engine
        dispatched: list[Command[None]] = []
        commands = command_bus(dispatched)
        scans = ProcessManagerHandler(PickupDeadline, SqlAlchemyUnitOfWork(engine), commands)
        shipment_id = uuid4()
        scans(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        conflicts: list[ConcurrencyError] = []

        class Racing(SqlAlchemyUnitOfWork):
            raced = False

            def _store(self, changes: Sequence[Change]) -> None:
                if not Racing.raced:
                    Racing.raced = True
                    scans(PickupScanned(shipment_id))
                try:
                    super()._store(changes)
                except ConcurrencyError as conflict:
                    conflicts.append(conflict)
                    raise

        deadlines = ProcessManagerHandler(PickupDeadline, Racing(engine), commands)
        deadlines(PickupDeadlinePassed(shipment_id))
        assert len(conflicts) == 1
        manager = load(engine, shipment_id)
        assert manager is not None
        assert (manager.completed, manager.missed, manager.version) == (True, False, 2)
        assert [type(c) for c in dispatched] == [DecrementLabelStock]
        assert stored_timers(engine) == []
