"""Adapters: the shipping and inventory contexts wired to storage, a bus and a clock.

Persistence uses :class:`~tactical.sqlalchemy.SqlAlchemyUnitOfWork` with its default
storage: each ``Shipment`` and ``LabelStock`` is one JSON document row, rebuilt from the
classes' type annotations. There is no mapping code in this example, none at all: no
table, no mapper, no codec registration.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from examples.shipping.domain import awb, require_aware
from examples.shipping.handlers import LabelStockKeeper
from examples.shipping.ids import CarrierId, ShipmentId
from examples.shipping.services import (
    Clock,
    InventoryService,
    ShippingService,
    UnitOfWorkFactory,
)
from tactical import EventBus, InMemoryStore, InMemoryUnitOfWork
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema

__all__ = [
    "AwbSequence",
    "InMemoryCarrierDirectory",
    "ShippingApplication",
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
    """A deterministic clock: each reading is ``step`` after the previous one.

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

    def __call__(self) -> datetime:
        """The current reading; the clock then moves on by ``step``."""
        now = self._next
        self._next += self._step
        return now

    def advance(self, delta: timedelta) -> None:
        """Move the clock forward by ``delta`` (a day passes between scans, say)."""
        self._next += delta


@dataclass(frozen=True, slots=True)
class ShippingApplication:
    """Both contexts, wired: their services share one bus and one store or database.

    Attributes:
        bus: The bus committed events are published on (subscribe to watch them).
        shipping: The shipping context's service.
        inventory: The inventory context's service.
    """

    bus: EventBus
    shipping: ShippingService
    inventory: InventoryService


def _wire(
    bus: EventBus,
    unit_of_work: UnitOfWorkFactory,
    carriers: InMemoryCarrierDirectory,
    clock: Clock,
    next_shipment_id: AwbSequence,
) -> ShippingApplication:
    shipping = ShippingService(
        unit_of_work, carriers, clock=clock, next_shipment_id=next_shipment_id
    )
    inventory = InventoryService(unit_of_work, clock=clock)
    LabelStockKeeper(inventory).subscribe_to(bus)
    return ShippingApplication(bus, shipping, inventory)


def sql_application(
    engine: sa.Engine,
    carriers: InMemoryCarrierDirectory,
    *,
    clock: Clock,
    next_shipment_id: AwbSequence,
    bus: EventBus | None = None,
) -> ShippingApplication:
    """Both contexts on a SQL database (its tables are created if missing).

    Every command gets a new :class:`~tactical.sqlalchemy.SqlAlchemyUnitOfWork` over
    ``engine`` with the default JSON document storage. Events are published on ``bus`` (a
    new one if omitted); its earlier subscribers see each event before the label handler.
    """
    create_schema(engine)
    bus = bus if bus is not None else EventBus()
    return _wire(bus, lambda: SqlAlchemyUnitOfWork(engine, bus), carriers, clock, next_shipment_id)


def in_memory_application(
    carriers: InMemoryCarrierDirectory,
    *,
    clock: Clock,
    next_shipment_id: AwbSequence,
    store: InMemoryStore | None = None,
    bus: EventBus | None = None,
) -> ShippingApplication:
    """Both contexts in memory, sharing ``store`` and ``bus`` (new ones if omitted)."""
    shared = store if store is not None else InMemoryStore()
    bus = bus if bus is not None else EventBus()
    return _wire(
        bus, lambda: InMemoryUnitOfWork(bus, store=shared), carriers, clock, next_shipment_id
    )
