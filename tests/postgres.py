"""The PostgreSQL database of the tests: one per pytest-xdist worker, created on first use.

Every test, fixture and example test that talks to PostgreSQL takes its URL from
``postgres_url()``. Without xdist it is ``TACTICAL_TEST_POSTGRES_URL`` (default: the ``test``
database on 127.0.0.1) unchanged; in xdist worker ``gw1`` it names the database ``<db>_gw1``,
created through the base database on first use and reused by later runs, so that tests
running at the same moment never share tables, advisory locks or sessions. A process a test
starts with its environment (``PYTEST_XDIST_WORKER`` included) gets the same database from
``postgres_url()``; one that takes a URL argument is given ``postgres_url()``'s.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

from tests.conftest import require_server

import sqlalchemy as sa

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# psycopg's SQLSTATE for "database already exists", and for the race in which another
# CREATE DATABASE of the same name (from template1) is under way.
_DUPLICATE_DATABASE = "42P04"
_UNIQUE_VIOLATION = "23505"


def base_url() -> sa.URL:
    """``TACTICAL_TEST_POSTGRES_URL``, or the ``test`` database on loopback."""
    return sa.make_url(os.environ.get("TACTICAL_TEST_POSTGRES_URL") or DEFAULT_URL)


def worker_url(base: sa.URL, worker: str | None) -> sa.URL:
    """``base`` itself outside xdist; in worker ``gw<n>`` the database ``<base db>_gw<n>``."""
    if not worker:
        return base
    return base.set(database=f"{base.database}_{worker}")


def postgres_url() -> sa.URL:
    """This process's test database, created if missing; skips (fails under CI) without a server."""
    base = base_url()
    require_server("PostgreSQL", base.port or 5432, base.host or "127.0.0.1")
    return _created_once(
        base.render_as_string(hide_password=False), os.environ.get("PYTEST_XDIST_WORKER")
    )


@functools.cache
def _created_once(base: str, worker: str | None) -> sa.URL:
    return created_database(base, worker)


def created_database(base: str, worker: str | None) -> sa.URL:
    """``worker``'s database next to ``base``, created through ``base`` if it does not exist.

    Another process may be creating it at the same moment (a second run of the suite): the
    loser's CREATE DATABASE fails with a duplicate, and the database is there all the same.
    """
    url = worker_url(sa.make_url(base), worker)
    if url.database == sa.make_url(base).database:
        return url
    with administration(base) as connection:
        if not database_exists(connection, str(url.database)):
            _create_database(connection, str(url.database))
    return url


@contextlib.contextmanager
def administration(base: str) -> Iterator[sa.Connection]:
    """An autocommit connection to ``base`` (CREATE and DROP DATABASE refuse a transaction)."""
    engine = sa.create_engine(base, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def database_exists(connection: sa.Connection, name: str) -> bool:
    """Whether the server ``connection`` is on has a database called ``name``."""
    found = connection.execute(
        sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
    ).first()
    return found is not None


def _create_database(connection: sa.Connection, name: str) -> None:
    quoted = connection.dialect.identifier_preparer.quote(name)
    try:
        connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
    except sa.exc.DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) not in {_DUPLICATE_DATABASE, _UNIQUE_VIOLATION}:
            raise
