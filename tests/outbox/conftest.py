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
from tests.outbox.sides import Side, make_side
from tests.sqlalchemy.conftest import (
    _postgres_engine,  # pyright: ignore[reportPrivateUsage]
    engine,
    postgres_engine,
    sqlite_engine,
)

import sqlalchemy as sa
from tactical.sqlalchemy import create_schema


@pytest.fixture(params=["sync", "async"])
def side(request: pytest.FixtureRequest) -> Iterator[Side]:
    """The sync API, or the async one (aiosqlite, psycopg's async mode; asyncpg with ``engine``)."""
    made = make_side(request.param)
    yield made
    made.close()


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test taking ``engine`` and ``side`` runs on each database with each of its drivers.

    As a parametrize mark, which takes precedence over the two fixtures' own parameters.
    """
    if not {"engine", "side"} <= set(metafunc.fixturenames):
        return
    postgres = pytest.mark.postgres
    metafunc.definition.add_marker(
        pytest.mark.parametrize(
            ("engine", "side"),
            [
                pytest.param("sqlite", "sync", id="sqlite-sync"),
                pytest.param("sqlite", "async", id="sqlite-aiosqlite"),
                pytest.param("postgres", "sync", id="postgres-sync", marks=postgres),
                pytest.param("postgres", "async", id="postgres-psycopg-async", marks=postgres),
                pytest.param("postgres", "asyncpg", id="postgres-asyncpg", marks=postgres),
            ],
            indirect=True,
        )
    )


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
    "side",
    "silent_port",
    "sqlite_engine",
    "stream_name",
]
