"""The suite's PostgreSQL databases: one per pytest-xdist worker, created once, even in a race."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from uuid import uuid4

import pytest
from tests.postgres import (
    administration,
    base_url,
    created_database,
    database_exists,
    postgres_url,
    worker_url,
)

import sqlalchemy as sa

BASE = sa.make_url("postgresql+psycopg://postgres@127.0.0.1:5432/test")


class TestWorkerUrl:
    def test_outside_xdist_the_configured_database_is_used(self) -> None:
        """Without a worker id the URL is the configured one, unchanged."""
        assert worker_url(BASE, None) == BASE

    def test_each_worker_gets_a_database_named_after_it(self) -> None:
        """Worker gw3 uses <database>_gw3 on the same server, as the same user."""
        url = worker_url(BASE, "gw3")
        assert (url.database, url.host, url.port, url.username, url.drivername) == (
            "test_gw3",
            "127.0.0.1",
            5432,
            "postgres",
            "postgresql+psycopg",
        )


@pytest.mark.postgres
class TestWorkerDatabase:
    def test_this_process_database_answers(self) -> None:
        """postgres_url() names a database that exists (created if it was missing)."""
        engine = sa.create_engine(postgres_url(), poolclass=sa.NullPool)
        try:
            with engine.connect() as connection:
                name = connection.scalar(sa.text("SELECT current_database()"))
        finally:
            engine.dispose()
        assert name == postgres_url().database

    def test_concurrent_creators_of_one_database_all_succeed(self) -> None:
        """Four creators of one missing database at once (as two runs' workers gw0 would) all get it."""
        postgres_url()  # skips without a server
        base = base_url().render_as_string(hide_password=False)
        worker = f"probe{uuid4().hex[:8]}"
        expected = worker_url(base_url(), worker)
        together = threading.Barrier(4)

        def create(_: int) -> sa.URL:
            together.wait(30)
            return created_database(base, worker)

        try:
            with ThreadPoolExecutor(4) as pool:
                results = list(pool.map(create, range(4)))
        finally:
            with administration(base) as connection:
                exists = database_exists(connection, str(expected.database))
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{expected.database}"')
        assert results == [expected] * 4
        assert exists
