"""Fixtures for the shipping example's persistence and flow tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlalchemy as sa
from examples.shipping.adapters import (
    ShippingApplication,
    in_memory_application,
    sql_application,
)
from examples.shipping.tests.factories import CARRIERS, Build, awbs, clock
from tactical import EventBus
from tactical.sqlalchemy import create_schema


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A fresh SQLite database file with tactical's tables (and no table of the example)."""
    created = sa.create_engine(f"sqlite:///{tmp_path / 'shipping.sqlite3'}")
    create_schema(created)
    yield created
    created.dispose()


@pytest.fixture(params=["sql", "memory"])
def build(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Build]:
    """Wires both contexts around a given bus: on a SQLite file, then in memory."""
    if request.param == "memory":
        yield lambda bus: in_memory_application(
            CARRIERS, clock=clock(), next_shipment_id=awbs(), bus=bus
        )
        return
    created = sa.create_engine(f"sqlite:///{tmp_path / 'application.sqlite3'}")
    yield lambda bus: sql_application(
        created, CARRIERS, clock=clock(), next_shipment_id=awbs(), bus=bus
    )
    created.dispose()


@pytest.fixture
def application(build: Build) -> ShippingApplication:
    """Both contexts wired on a SQLite file, then in memory."""
    return build(EventBus())
