"""AsyncProcessManagerHandler on aiosqlite, psycopg async and asyncpg.

The manager and its timers in one transaction, nothing of a refused commit, and (on
PostgreSQL, where two transactions really run at once) concurrent deliveries that load the
same version, conflict at the write and are retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
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
from tests.sqlalchemy.async_engines import ASYNC_DRIVERS, async_engine_for

import sqlalchemy as sa
from tactical import AsyncProcessManagerHandler, Command, CommandBus, ConcurrencyError
from tactical._tracking import Change
from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, scheduled_table

PRINTED_AT = datetime(2030, 6, 1, 9, tzinfo=UTC)
POSTGRES_DRIVERS = [d for d in ASYNC_DRIVERS if not isinstance(d, str)]


@pytest.fixture(params=ASYNC_DRIVERS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An AsyncEngine on each asyncio driver's database, tactical's tables empty."""
    _, engine = await async_engine_for(request, tmp_path)
    yield engine
    await engine.dispose()


@pytest.fixture(params=POSTGRES_DRIVERS)
async def postgres(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An AsyncEngine on PostgreSQL, through psycopg's async mode and asyncpg."""
    _, engine = await async_engine_for(request, tmp_path)
    yield engine
    await engine.dispose()


async def stored_timers(engine: AsyncEngine) -> list[tuple[str, datetime]]:
    s = scheduled_table.c
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(s.key, s.due_at).order_by(s.key))
        return [(r.key, r.due_at.replace(tzinfo=UTC)) for r in rows]


async def load(engine: AsyncEngine, shipment_id: UUID) -> PickupDeadline | None:
    async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
        return await uow.repository(PickupDeadline).get(shipment_id)


def command_bus(dispatched: list[Command[None]]) -> CommandBus:
    async def record(command: Command[None]) -> None:
        dispatched.append(command)

    commands = CommandBus()
    commands.register(DecrementLabelStock, record)
    commands.register(RaiseShipmentException, record)
    return commands


class Barrier:
    """Holds the first two stores until both arrived: both loaded the same version."""

    def __init__(self) -> None:
        self.arrived = 0
        self.both_here = asyncio.Event()
        self.conflicts: list[ConcurrencyError] = []

    def unit_of_work(self, engine: AsyncEngine) -> AsyncSqlAlchemyUnitOfWork:
        barrier = self

        class Racing(AsyncSqlAlchemyUnitOfWork):
            async def _store(self, changes: Sequence[Change]) -> None:
                if barrier.arrived < 2:
                    barrier.arrived += 1
                    if barrier.arrived == 2:
                        barrier.both_here.set()
                    async with asyncio.timeout(10):
                        await barrier.both_here.wait()
                try:
                    await super()._store(changes)
                except ConcurrencyError as conflict:
                    barrier.conflicts.append(conflict)
                    raise

        return Racing(engine)


class TestStored:
    async def test_the_timer_it_requests_is_written_with_it_and_cancelled_with_it(
        self, engine: AsyncEngine
    ) -> None:
        """The deadline row appears with the started manager and goes with its completion."""
        dispatched: list[Command[None]] = []
        handler = AsyncProcessManagerHandler(
            PickupDeadline, AsyncSqlAlchemyUnitOfWork(engine), command_bus(dispatched)
        )
        shipment_id = uuid4()
        await handler(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        manager = await load(engine, shipment_id)
        assert manager is not None
        assert (manager.carrier, manager.version) == ("DHL", 1)
        assert await stored_timers(engine) == [
            (deadline_key(shipment_id), PRINTED_AT + PICKUP_WINDOW)
        ]
        await handler(PickupScanned(shipment_id))
        manager = await load(engine, shipment_id)
        assert manager is not None
        assert (manager.completed, manager.version) == (True, 2)
        assert await stored_timers(engine) == []
        assert [type(c) for c in dispatched] == [DecrementLabelStock]

    async def test_a_duplicate_delivery_is_applied_once(self, engine: AsyncEngine) -> None:
        """The same deadline twice in a row: one commit, one exception."""
        dispatched: list[Command[None]] = []
        handler = AsyncProcessManagerHandler(
            PickupDeadline, AsyncSqlAlchemyUnitOfWork(engine), command_bus(dispatched)
        )
        shipment_id = uuid4()
        await handler(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        deadline = PickupDeadlinePassed(shipment_id)
        await handler(deadline)
        await handler(deadline)
        manager = await load(engine, shipment_id)
        assert manager is not None
        assert (manager.missed, manager.version) == (True, 2)
        assert [type(c) for c in dispatched] == [DecrementLabelStock, RaiseShipmentException]

    async def test_a_refused_commit_stores_neither_the_manager_nor_its_timer(
        self, engine: AsyncEngine
    ) -> None:
        """A manager whose insert hits a stored row: nothing written, nothing dispatched."""
        shipment_id = uuid4()
        async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(PickupDeadline).add(PickupDeadline(shipment_id))
            await uow.commit()

        class Stale(AsyncSqlAlchemyUnitOfWork):
            """Loads the manager as if it were new: its insert then hits the stored row."""

            async def _load(self, aggregate_type: type[object], aggregate_id: object) -> None:  # type: ignore[override]
                return None

        dispatched: list[Command[None]] = []
        handler = AsyncProcessManagerHandler(PickupDeadline, Stale(engine), command_bus(dispatched))
        with pytest.raises(ConcurrencyError):
            await handler(LabelPrinted(shipment_id, "DHL", occurred_at=PRINTED_AT))
        assert await stored_timers(engine) == []
        assert dispatched == []


class Race:
    """A started process, and a handler whose first two stores wait for each other."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.dispatched: list[Command[None]] = []
        self.commands = command_bus(self.dispatched)
        self.shipment_id = uuid4()
        self.barrier = Barrier()
        self.handler = AsyncProcessManagerHandler(
            PickupDeadline, lambda: self.barrier.unit_of_work(engine), self.commands
        )

    @classmethod
    async def started(cls, engine: AsyncEngine) -> Race:
        race = cls(engine)
        await AsyncProcessManagerHandler(
            PickupDeadline, AsyncSqlAlchemyUnitOfWork(engine), race.commands
        )(LabelPrinted(race.shipment_id, "DHL", occurred_at=PRINTED_AT))
        return race


class TestRacing:
    async def test_concurrent_events_of_one_process_conflict_and_the_loser_retries(
        self, postgres: AsyncEngine
    ) -> None:
        """A scan and the deadline load version 1 together: one conflict, one winner."""
        engine = postgres
        race = await Race.started(engine)
        shipment_id, barrier, racing, dispatched = (
            race.shipment_id,
            race.barrier,
            race.handler,
            race.dispatched,
        )
        await asyncio.gather(
            racing(PickupScanned(shipment_id)), racing(PickupDeadlinePassed(shipment_id))
        )
        assert len(barrier.conflicts) == 1
        manager = await load(engine, shipment_id)
        assert manager is not None
        assert (manager.completed, manager.version) == (True, 2)
        exceptions = [c for c in dispatched if isinstance(c, RaiseShipmentException)]
        if manager.missed:  # the deadline won: its command; it leaves the timer as it is
            assert len(exceptions) == 1
            assert [k for k, _ in await stored_timers(engine)] == [deadline_key(shipment_id)]
        else:  # the scan won and cancelled the deadline; the retried deadline was ignored
            assert exceptions == []
            assert await stored_timers(engine) == []

    async def test_the_same_event_delivered_twice_at_once_is_applied_once(
        self, postgres: AsyncEngine
    ) -> None:
        """Two tasks deliver one deadline: the retried one reloads and finds it handled."""
        engine = postgres
        race = await Race.started(engine)
        shipment_id, barrier, racing, dispatched = (
            race.shipment_id,
            race.barrier,
            race.handler,
            race.dispatched,
        )
        deadline = PickupDeadlinePassed(shipment_id)
        await asyncio.gather(racing(deadline), racing(deadline))
        assert len(barrier.conflicts) == 1
        manager = await load(engine, shipment_id)
        assert manager is not None
        assert (manager.missed, manager.version) == (True, 2)
        assert [type(c) for c in dispatched] == [DecrementLabelStock, RaiseShipmentException]

    async def test_a_starting_event_delivered_twice_at_once_starts_one_process(
        self, postgres: AsyncEngine
    ) -> None:
        """Both insert the new manager: the second insert conflicts, its retry finds it handled."""
        engine = postgres
        dispatched: list[Command[None]] = []
        barrier = Barrier()
        racing = AsyncProcessManagerHandler(
            PickupDeadline, lambda: barrier.unit_of_work(engine), command_bus(dispatched)
        )
        printed = LabelPrinted(uuid4(), "DHL", occurred_at=PRINTED_AT)
        await asyncio.gather(racing(printed), racing(printed))
        assert len(barrier.conflicts) == 1
        manager = await load(engine, printed.shipment_id)
        assert manager is not None
        assert manager.version == 1
        assert [k for k, _ in await stored_timers(engine)] == [deadline_key(printed.shipment_id)]
        assert [type(c) for c in dispatched] == [DecrementLabelStock]
