"""AsyncEngines for the async SQL unit of work's tests: aiosqlite, psycopg async, asyncpg."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from tests.postgres import postgres_url

import sqlalchemy as sa

ASYNC_DRIVERS = [
    "aiosqlite",
    pytest.param("psycopg", marks=pytest.mark.postgres),
    pytest.param("asyncpg", marks=pytest.mark.postgres),
]


def async_url(request: pytest.FixtureRequest, driver: str, tmp_path: Path) -> sa.URL:
    """The URL of ``driver``'s database with tactical's tables (emptied on PostgreSQL).

    SQLite: a file under ``tmp_path`` that the sync ``sqlite_engine`` fixture created;
    PostgreSQL: the test database, the tables emptied by the ``postgres_engine`` fixture.
    """
    if driver == "aiosqlite":
        sync: sa.Engine = request.getfixturevalue("sqlite_engine")
        return sync.url.set(drivername="sqlite+aiosqlite")
    request.getfixturevalue("postgres_engine")
    return postgres_url().set(drivername=f"postgresql+{driver}")


def sync_url(driver: str, url: sa.URL) -> sa.URL:
    """The same database for the sync driver (a sync worker next to the async app)."""
    return url.set(drivername="sqlite" if driver == "aiosqlite" else "postgresql+psycopg")


def make_async_engine(driver: str, url: sa.URL, **kw: Any) -> AsyncEngine:
    """An AsyncEngine on ``url`` with a PostgreSQL application name, if given."""
    name = kw.pop("application_name", None)
    if name is not None and driver == "psycopg":
        kw["connect_args"] = {"application_name": name}
    elif name is not None and driver == "asyncpg":
        kw["connect_args"] = {"server_settings": {"application_name": name}}
    return create_async_engine(url, **kw)


async def async_engine_for(
    request: pytest.FixtureRequest, tmp_path: Path, **kw: Any
) -> tuple[str, AsyncEngine]:
    """The test's driver (its ``driver`` parameter) and an AsyncEngine on its database."""
    driver: str = request.param
    return driver, make_async_engine(driver, async_url(request, driver, tmp_path), **kw)
