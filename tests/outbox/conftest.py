"""Engines for the outbox tests (the SQL tests' fixtures) and helpers to fill the outbox."""

from __future__ import annotations

from tests.outbox.brokers import rabbit, redis_client, stream_name
from tests.sqlalchemy.conftest import (
    _postgres_engine,  # pyright: ignore[reportPrivateUsage]
    engine,
    postgres_engine,
    sqlite_engine,
)

__all__ = [
    "_postgres_engine",
    "engine",
    "postgres_engine",
    "rabbit",
    "redis_client",
    "sqlite_engine",
    "stream_name",
]
