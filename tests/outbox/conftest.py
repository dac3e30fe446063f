"""Engines for the outbox tests (the SQL tests' fixtures) and helpers to fill the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.outbox.brokers import (
    broker,
    broker_proxy,
    postgres_proxy,
    rabbit,
    rabbit_proxy,
    redis_client,
    redis_proxy,
    silent_port,
    stream_name,
)
from tests.sqlalchemy.conftest import (
    _postgres_engine,  # pyright: ignore[reportPrivateUsage]
    engine,
    postgres_engine,
    sqlite_engine,
)

import sqlalchemy as sa
from tactical.sqlalchemy import create_schema


@pytest.fixture
def consumer_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """The consuming service's own database: a second SQLite file with tactical's schema."""
    database = sa.create_engine(f"sqlite:///{tmp_path / 'consumer.sqlite3'}")
    create_schema(database)
    yield database
    database.dispose()


__all__ = [
    "_postgres_engine",
    "broker",
    "broker_proxy",
    "engine",
    "postgres_engine",
    "postgres_proxy",
    "rabbit",
    "rabbit_proxy",
    "redis_client",
    "redis_proxy",
    "silent_port",
    "sqlite_engine",
    "stream_name",
]
