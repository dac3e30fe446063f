"""Shipments and label stocks in the SQL unit of work's default JSON document storage."""

from __future__ import annotations

import dataclasses

import pytest

import sqlalchemy as sa
from examples.shipping.domain import ScanKind, Shipment, ShipmentStatus
from examples.shipping.ids import InvoiceId
from examples.shipping.inventory import LabelStock, LabelStockId
from examples.shipping.tests.factories import (
    CARRIERS,
    POST,
    SHIPMENT_ID,
    T0,
    at,
    book,
    booked,
    parcel,
    scan,
)
from tactical import ConcurrencyError, InMemoryStore, InMemoryUnitOfWork, UnitOfWork
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, aggregates_table, metadata


def travelled() -> Shipment:
    """A shipment that used every field: parcels, carrier, invoice, scans, delivery."""
    shipment = book(parcel(1, "12.5"), parcel(2, "0.25"))
    shipment.assign_carrier(POST, CARRIERS, at=at(1))
    shipment.attach_invoice(InvoiceId("INV-2026-07-00412"), at=at(1))
    shipment.print_label(at=at(2))
    shipment.record_scan(scan(ScanKind.PICKUP, 10))
    shipment.record_scan(scan(ScanKind.EXCEPTION, 20, note="box damaged"))
    shipment.record_scan(scan(ScanKind.IN_TRANSIT, 30))
    shipment.record_delivered("M. Huber", at=at(40))
    return shipment


class TestDocumentStorage:
    """The default storage needs no mapping code for either context's aggregate."""

    def test_a_shipment_round_trips_field_for_field(self, engine: sa.Engine) -> None:
        """Every field, parcels and scans included, comes back equal, typed and aware."""
        original = travelled()
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Shipment).add(original)
            uow.commit()
        with SqlAlchemyUnitOfWork(engine) as uow:
            loaded = uow.repository(Shipment).require(SHIPMENT_ID)
        assert dataclasses.asdict(loaded) == dataclasses.asdict(original)
        assert loaded.version == 1
        assert loaded.status is ShipmentStatus.DELIVERED
        assert loaded.scans[1].kind is ScanKind.EXCEPTION
        assert loaded.delivered_at == at(40)
        assert loaded.delivered_at is not None
        assert loaded.delivered_at.utcoffset() is not None

    def test_the_rows_are_tacticals_documents_and_no_table_is_the_examples(
        self, engine: sa.Engine
    ) -> None:
        """The database holds only tactical's own tables; the state is a JSON document."""
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(Shipment).add(booked())
            uow.commit()
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.repository(LabelStock).add(LabelStock.open(LabelStockId(POST), 5, at=T0))
            uow.commit()
        assert set(sa.inspect(engine).get_table_names()) == set(metadata.tables)
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(aggregates_table.c.aggregate_type, aggregates_table.c.state)
            ).all()
        states = {row.aggregate_type: row.state for row in rows}
        assert set(states) == {
            "examples.shipping.domain.Shipment",
            "examples.shipping.inventory.LabelStock",
        }
        shipment = states["examples.shipping.domain.Shipment"]
        assert (shipment["service_class"], shipment["status"]) == ("GROUND", "BOOKED")
        assert shipment["quoted_price"] == {"amount_cents": 2490, "currency": "EUR"}
        assert states["examples.shipping.inventory.LabelStock"]["remaining"] == 5


def sql_pair(engine: sa.Engine) -> tuple[UnitOfWork, UnitOfWork]:
    """Two units of work over one engine: two connections to one database."""
    return SqlAlchemyUnitOfWork(engine), SqlAlchemyUnitOfWork(engine)


def memory_pair(store: InMemoryStore) -> tuple[UnitOfWork, UnitOfWork]:
    """Two units of work over one store."""
    return InMemoryUnitOfWork(store=store), InMemoryUnitOfWork(store=store)


class TestConcurrency:
    """Two transactions that change one shipment: the second to commit is refused."""

    @pytest.mark.parametrize("backend", ["sql", "memory"])
    def test_concurrent_modification_of_one_shipment_raises_concurrency_error(
        self, backend: str, engine: sa.Engine
    ) -> None:
        """Operations cancels while the carrier desk assigns a carrier: the cancel, based on
        a stale version, fails as a whole and the carrier assignment stands."""
        first, second = sql_pair(engine) if backend == "sql" else memory_pair(InMemoryStore())
        with first:
            first.repository(Shipment).add(booked())
            first.commit()
        with first:
            stale = first.repository(Shipment).require(SHIPMENT_ID)
            with second:
                fresh = second.repository(Shipment).require(SHIPMENT_ID)
                fresh.assign_carrier(POST, CARRIERS, at=at(1))
                second.commit()
            stale.cancel("customer changed their mind", at=at(2))
            with pytest.raises(ConcurrencyError, match=rf"Shipment {SHIPMENT_ID} was changed"):
                first.commit()
        with first:
            stored = first.repository(Shipment).require(SHIPMENT_ID)
        assert (stored.status, stored.carrier_id, stored.version) == (
            ShipmentStatus.BOOKED,
            POST,
            2,
        )
