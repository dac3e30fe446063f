"""Engines for the SQL tests: a SQLite file per test, and the real PostgreSQL on loopback
(a database of its own for each pytest-xdist worker: see tests/postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.postgres import postgres_url
from tests.sqlalchemy.counter_mapping import mapped
from tests.sqlalchemy.counter_orm import orm_tables

import sqlalchemy as sa
from tactical.sqlalchemy import create_schema, metadata


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """A fresh SQLite database file with tactical's schema."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'tactical.sqlite3'}")
    create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _postgres_engine() -> Iterator[sa.Engine]:
    # This process's own database (one per xdist worker), created on first use.
    engine = sa.create_engine(postgres_url(), pool_size=10, max_overflow=10)
    _drop_outdated_tables(engine)
    create_schema(engine)
    yield engine
    engine.dispose()


def _drop_outdated_tables(engine: sa.Engine) -> None:
    # The test database outlives schema changes (a column or an index added to the outbox,
    # or an index removed, say): create_all skips existing tables, so drop those whose
    # columns or named indexes differ from the metadata's to recreate them.
    inspector = sa.inspect(engine)
    outdated = [
        table
        for table in metadata.sorted_tables
        if inspector.has_table(table.name)
        and (
            {c.name for c in table.columns} - {c["name"] for c in inspector.get_columns(table.name)}
            or {i.name for i in table.indexes} != _named_indexes(inspector, table.name)
        )
    ]
    if outdated:
        metadata.drop_all(engine, tables=outdated)


def _named_indexes(inspector: sa.Inspector, table: str) -> set[str | None]:
    """The table's indexes, without those a unique constraint brings (PostgreSQL lists them)."""
    return {
        index["name"]
        for index in inspector.get_indexes(table)
        if not index.get("duplicates_constraint")
    }


@pytest.fixture
def postgres_engine(_postgres_engine: sa.Engine) -> sa.Engine:
    """The PostgreSQL test database with tactical's tables emptied before the test."""
    names = ", ".join(table.name for table in metadata.sorted_tables)
    with _postgres_engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    return _postgres_engine


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    """Each SQL test that takes ``engine`` runs on SQLite (file) and on PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def mapped_engine(engine: sa.Engine) -> sa.Engine:
    """``engine`` with the tables of the sample CounterMapper, emptied."""
    mapped.create_all(engine)
    with engine.begin() as connection:
        for table in reversed(mapped.sorted_tables):
            connection.execute(table.delete())
    return engine


def emptied_orm_tables(engine: sa.Engine) -> sa.Engine:
    """``engine`` with the tables of the sample CounterOrmMapper, emptied."""
    orm_tables.create_all(engine)
    with engine.begin() as connection:
        for table in reversed(orm_tables.sorted_tables):
            connection.execute(table.delete())
    return engine


@pytest.fixture
def orm_engine(engine: sa.Engine) -> sa.Engine:
    """``engine`` with the tables of the sample CounterOrmMapper, emptied."""
    return emptied_orm_tables(engine)
