"""Engines and sides for the projection tests: the outbox tests' fixtures."""

from __future__ import annotations

from tests.outbox.conftest import (
    _postgres_engine,  # pyright: ignore[reportPrivateUsage]
    engine,
    postgres_engine,
    pytest_generate_tests,
    side,
    sqlite_engine,
)

__all__ = [
    "_postgres_engine",
    "engine",
    "postgres_engine",
    "pytest_generate_tests",
    "side",
    "sqlite_engine",
]
