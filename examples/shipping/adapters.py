"""Adapters: the shipping and inventory contexts wired to storage, buses, a clock and timers.

Persistence uses :class:`~tactical.sqlalchemy.SqlAlchemyUnitOfWork` with its default
storage: each ``Shipment`` and ``LabelStock`` is one JSON document row, rebuilt from the
classes' type annotations. There is no mapping code in this example, none at all: no
table, no mapper, no codec registration.

Events cross from one context to the other on an :class:`~tactical.EventBus`, commands go
to their one handler on a :class:`~tactical.CommandBus`. The pickup deadline is a durable
timer: on SQL a :class:`~tactical.outbox.TimerWorker` moves it into the outbox when it is
due, and an :class:`~tactical.outbox.OutboxRelay` publishes the fired message on the bus
(:class:`SqlTimers`); in memory :meth:`~tactical.InMemoryStore.take_due` hands it over
(:class:`InMemoryTimers`). Either way the clock says when it is due: a
:class:`SteppingClock` in the narration, a :class:`~tactical.testing.MovableClock` in tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import sqlalchemy as sa
from examples.shipping.domain import awb, require_aware
from examples.shipping.handlers import LabelStockKeeper, PickupDeadlineWatcher
from examples.shipping.ids import CarrierId, ShipmentId
from examples.shipping.services import (
    InventoryService,
    ShippingService,
    UnitOfWorkFactory,
)
from tactical import Clock, CommandBus, EventBus, InMemoryStore, InMemoryUnitOfWork, JsonCodec
from tactical.outbox import (
    TIMER_AGGREGATE_TYPE,
    EventBusPublisher,
    OutboxMessage,
    OutboxRelay,
    TimerWorker,
)
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema

__all__ = [
    "AwbSequence",
    "DueTimers",
    "FiredTimersPublisher",
    "InMemoryCarrierDirectory",
    "InMemoryTimers",
    "ShippingApplication",
    "SqlTimers",
    "SteppingClock",
    "in_memory_application",
    "sql_application",
]


class InMemoryCarrierDirectory:
    """A :class:`~examples.shipping.ports.CarrierDirectory` from a fixed table.

    Args:
        coverage: Each carrier and the ISO 3166-1 alpha-2 countries it picks up in.
    """

    def __init__(self, coverage: Mapping[CarrierId, Iterable[str]]) -> None:
        self._coverage = {carrier: frozenset(countries) for carrier, countries in coverage.items()}

    def serves(self, carrier_id: CarrierId, iso_country: str) -> bool:
        """Whether ``carrier_id`` picks up in ``iso_country``; unknown carriers serve none."""
        return iso_country in self._coverage.get(carrier_id, frozenset())


class AwbSequence:
    """Hands out consecutive air waybill numbers under one carrier prefix.

    Args:
        prefix: The 3-digit prefix.
        first_serial: The 7-digit serial of the first number.
    """

    def __init__(self, prefix: int, first_serial: int) -> None:
        self._prefix = prefix
        self._serials: Iterator[int] = itertools.count(first_serial)

    def __call__(self) -> ShipmentId:
        """The next air waybill number."""
        return awb(self._prefix, next(self._serials))


class SteppingClock:
    """A deterministic :class:`~tactical.Clock`: each reading is ``step`` after the previous.

    Args:
        start: The first reading (timezone-aware).
        step: How far each reading moves the clock.

    Raises:
        InvariantViolation: ``start`` is naive.
    """

    def __init__(self, start: datetime, step: timedelta = timedelta(minutes=1)) -> None:
        require_aware(start, "Clock start")
        self._next = start
        self._step = step

    def now(self) -> datetime:
        """The current reading; the clock then moves on by ``step``."""
        now = self._next
        self._next += self._step
        return now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta`` (a day passes between scans, say)."""
        self._next += delta


class DueTimers(Protocol):
    """Fires the durable timers that are due and publishes their messages on the bus."""

    def deliver_due(self) -> int:
        """Deliver every timer due by the clock; return how many fired."""
        ...


class FiredTimersPublisher:
    """A relay's :class:`~tactical.outbox.Publisher` that publishes only fired timers.

    In this one-process application the units of work publish their events on the bus
    themselves, once committed; what only the outbox holds are the messages the
    :class:`~tactical.outbox.TimerWorker` fired (their rows name the aggregate
    :data:`~tactical.outbox.TIMER_AGGREGATE_TYPE`). So this publisher hands those to an
    :class:`~tactical.outbox.EventBusPublisher` and lets the relay mark the other rows
    without publishing them twice. A system with a broker would publish every row to it.

    What this gives up: the in-process handlers of an event run at most once. When they
    fail for a reason other than the model's refusal (the inventory's database was down,
    say) or never run (the process died right after the shipment's commit), the event is
    not delivered again: its outbox row is marked all the same, and the carrier's label
    stock keeps the labels of that shipment. Only the fired timers, which nothing else
    delivers, are published at least once (a failing handler makes the relay send them
    again).

    Args:
        bus: The application's bus.
        codec: The codec the outbox was written with.
    """

    def __init__(self, bus: EventBus, codec: JsonCodec) -> None:
        self._publisher = EventBusPublisher(bus, codec)

    def publish(self, messages: Sequence[OutboxMessage], /) -> None:
        """Publish the fired timers among ``messages`` on the bus, in order.

        Raises:
            EventHandlerError: A handler failed; the relay marks nothing and sends the batch
                again later (handlers tolerate the duplicate).
        """
        fired = [m for m in messages if m.aggregate_type == TIMER_AGGREGATE_TYPE]
        if fired:
            self._publisher.publish(fired)


@dataclass(frozen=True, slots=True)
class SqlTimers:
    """Durable timers on SQL: a timer worker fires them into the outbox, a relay publishes.

    In production both run in loops of their own (``worker.run(stop)``,
    ``relay.run(stop)``); :meth:`deliver_due` runs one round of each, as the narration and
    the tests do after moving the clock.

    Attributes:
        worker: Moves due timers from ``tactical_scheduled`` into the outbox.
        relay: Publishes the fired timers on the application's bus.
    """

    worker: TimerWorker
    relay: OutboxRelay

    def deliver_due(self) -> int:
        """Fire every due timer, then relay until the outbox is empty; how many fired."""
        fired = 0
        while count := self.worker.fire_due():
            fired += count
        while self.relay.relay_once():
            pass
        return fired


@dataclass(frozen=True, slots=True)
class InMemoryTimers:
    """Durable timers in memory: the store keeps them, :meth:`deliver_due` publishes them."""

    store: InMemoryStore
    bus: EventBus
    clock: Clock

    def deliver_due(self) -> int:
        """Take the timers due by the clock from the store and publish their messages."""
        due = self.store.take_due(self.clock.now())
        for timer in due:
            self.bus.publish(timer.message)
        return len(due)


@dataclass(frozen=True, slots=True)
class ShippingApplication:
    """Both contexts, wired: their services share the buses and one store or database.

    Attributes:
        bus: The bus committed events are published on (subscribe to watch them).
        commands: The bus each context's handlers take their commands from.
        shipping: The shipping context's service.
        inventory: The inventory context's service.
        timers: Delivers the durable timers (the pickup deadlines) that are due.
    """

    bus: EventBus
    commands: CommandBus
    shipping: ShippingService
    inventory: InventoryService
    timers: DueTimers


def _wire(
    bus: EventBus,
    unit_of_work: UnitOfWorkFactory,
    carriers: InMemoryCarrierDirectory,
    clock: Clock,
    next_shipment_id: AwbSequence,
    timers: DueTimers,
    commands: CommandBus | None,
) -> ShippingApplication:
    shipping = ShippingService(
        unit_of_work, carriers, clock=clock, next_shipment_id=next_shipment_id
    )
    inventory = InventoryService(unit_of_work, clock=clock)
    commands = commands if commands is not None else CommandBus()
    shipping.register_handlers(commands)
    inventory.register_handlers(commands)
    LabelStockKeeper(commands).subscribe_to(bus)
    PickupDeadlineWatcher(commands).subscribe_to(bus)
    return ShippingApplication(bus, commands, shipping, inventory, timers)


def sql_application(
    engine: sa.Engine,
    carriers: InMemoryCarrierDirectory,
    *,
    clock: Clock,
    next_shipment_id: AwbSequence,
    bus: EventBus | None = None,
    commands: CommandBus | None = None,
) -> ShippingApplication:
    """Both contexts on a SQL database (its tables are created if missing).

    Every command gets a new :class:`~tactical.sqlalchemy.SqlAlchemyUnitOfWork` over
    ``engine`` with the default JSON document storage. Events are published on ``bus`` (a
    new one if omitted); its earlier subscribers see each event before the handlers of
    this module. The contexts register their command handlers on ``commands`` (a new
    bus if omitted). The timers are :class:`SqlTimers` over ``engine``, due by ``clock``.
    """
    create_schema(engine)
    bus = bus if bus is not None else EventBus()
    codec = JsonCodec()
    timers = SqlTimers(
        TimerWorker(engine, clock=clock, codec=codec),
        OutboxRelay(engine, FiredTimersPublisher(bus, codec)),
    )
    return _wire(
        bus,
        lambda: SqlAlchemyUnitOfWork(engine, bus, codec=codec),
        carriers,
        clock,
        next_shipment_id,
        timers,
        commands,
    )


def in_memory_application(
    carriers: InMemoryCarrierDirectory,
    *,
    clock: Clock,
    next_shipment_id: AwbSequence,
    store: InMemoryStore | None = None,
    bus: EventBus | None = None,
    commands: CommandBus | None = None,
) -> ShippingApplication:
    """Both contexts in memory, sharing ``store``, ``bus`` and ``commands`` (new ones if
    omitted).

    The timers are :class:`InMemoryTimers` of ``store``, due by ``clock``.
    """
    shared = store if store is not None else InMemoryStore()
    bus = bus if bus is not None else EventBus()
    return _wire(
        bus,
        lambda: InMemoryUnitOfWork(bus, store=shared),
        carriers,
        clock,
        next_shipment_id,
        InMemoryTimers(shared, bus, clock),
        commands,
    )
