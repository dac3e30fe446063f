"""Databases for the SQL benchmarks, and tactical's side of each SQL workload.

The workloads of issue 17's table, each one call = one transaction on one account:

- ``create``: a new account with ``events`` deposits recorded, added, committed;
- ``update``: load an account, deposit (one event), commit;
- ``load``: load an account, end the transaction (nothing to write).

``benchmarks._core`` holds the hand-written Core side of the same workloads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from uuid import UUID, uuid4

import sqlalchemy as sa
from benchmarks._domain import Account, Deposited
from tactical import EventBus, JsonCodec
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, configure_engine, create_schema

# One transaction per variant per round. SQLite's WAL checkpoints (every ~1,000 pages written,
# milliseconds each) land in a few rounds only: the medians and quartiles leave them out.
ROUNDS = 60
SECONDS = 1.5
# PostgreSQL's commits (an fsync each, on a shared machine) vary more from call to call: more
# rounds for the same precision of the median.
POSTGRES_SECONDS = 4.0

POSTGRES_URL_VARIABLE = "TACTICAL_BENCH_POSTGRES_URL"
POSTGRES_URL = os.environ.get(
    POSTGRES_URL_VARIABLE, "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Both sides of every PostgreSQL row commit with this setting (the benchmark's connections
# only; the server is left alone). "off" by default: the flush to disk at commit is the
# server's work, the same for both sides, and on a shared machine its wait varies by
# milliseconds from one commit to the next, drowning the difference under test. Like
# SQLite's WAL + synchronous=NORMAL, a crash may lose the last commits, never consistency.
# "on" measures with the durable default (and its noise).
POSTGRES_SYNCHRONOUS_COMMIT = os.environ.get("TACTICAL_BENCH_POSTGRES_SYNCHRONOUS_COMMIT", "off")
POSTGRES_OPTIONS = f"-csynchronous_commit={POSTGRES_SYNCHRONOUS_COMMIT}"
# A schema of this run's own: the test suite empties tactical's tables in `public` at any
# time, and two benchmark runs on one database must not drop each other's tables.
POSTGRES_SCHEMA = f"tactical_bench_{os.getpid()}"

SQLITE = "SQLite"
POSTGRES = "PostgreSQL"
AMOUNT = Decimal("1.25")

# workload key -> the name the table shows (issue 17's rows)
WORKLOADS: dict[str, str] = {
    "create": "new aggregate + 1 event, commit",
    "create10": "new aggregate + 10 events, commit",
    "update": "load + command (1 event) + commit",
    "load": "load only",
}


def sqlite_engine(directory: Path, name: str = "bench.sqlite3") -> sa.Engine:
    """A SQLite file database (WAL, synchronous=NORMAL via configure_engine), schema created."""
    engine = configure_engine(sa.create_engine(f"sqlite:///{directory / name}"))
    create_schema(engine)
    return engine


def postgres_reachable() -> str | None:
    """None if the benchmark's PostgreSQL answers, else why not (for the skip line)."""
    try:
        admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        finally:
            admin.dispose()
    except Exception as error:  # any failure means: no PostgreSQL here
        shown = sa.make_url(POSTGRES_URL).render_as_string(hide_password=True)
        problem = type(error).__name__
        return f"PostgreSQL at {shown} unreachable ({problem}); set {POSTGRES_URL_VARIABLE}"
    return None


@contextmanager
def postgres_schema(name: str = POSTGRES_SCHEMA) -> Generator[str, None, None]:
    """Create the schema ``name`` for the duration of the block; drop it afterwards."""
    admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
            connection.exec_driver_sql(f"CREATE SCHEMA {name}")
        yield name
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        admin.dispose()


@contextmanager
def postgres_engine(pool_size: int = 5) -> Generator[sa.Engine, None, None]:
    """tactical's schema in a private PostgreSQL schema, dropped at the end."""
    with postgres_schema() as schema:
        engine = sa.create_engine(
            POSTGRES_URL,
            pool_size=pool_size,
            connect_args={
                "connect_timeout": 3,
                "options": f"-csearch_path={schema} {POSTGRES_OPTIONS}",
            },
        )
        try:
            create_schema(engine)
            yield engine
        finally:
            engine.dispose()


def saved_account(engine: sa.Engine, codec: JsonCodec) -> UUID:
    """Store a new account through the unit of work; return its id."""
    account_id = uuid4()
    uow = SqlAlchemyUnitOfWork(engine, codec=codec)
    with uow:
        uow.repository(Account).add(Account(account_id, "ada"))
        uow.commit()
    return account_id


def rotating(calls: list[Callable[[], None]]) -> Callable[[], None]:
    """One call of each in turn: every row or account is touched as often as the others."""
    turn = [0]

    def call() -> None:
        calls[turn[0] % len(calls)]()
        turn[0] += 1

    return call


def tactical_create(
    engine: sa.Engine, codec: JsonCodec, bus: EventBus, *, events: int
) -> Callable[[], None]:
    """A new account with ``events`` deposits, added and committed."""
    uow = SqlAlchemyUnitOfWork(engine, bus, codec=codec)

    def call() -> None:
        with uow:
            account = Account(uuid4(), "ada")
            for _ in range(events):
                account.deposit(AMOUNT)
            uow.repository(Account).add(account)
            uow.commit()

    return call


def tactical_deposit(
    engine: sa.Engine, codec: JsonCodec, bus: EventBus, account_id: UUID
) -> Callable[[], None]:
    """Load, one command, commit."""
    uow = SqlAlchemyUnitOfWork(engine, bus, codec=codec)

    def call() -> None:
        with uow:
            uow.repository(Account).require(account_id).deposit(AMOUNT)
            uow.commit()

    return call


def tactical_load(engine: sa.Engine, codec: JsonCodec, account_id: UUID) -> Callable[[], None]:
    """Load one account; the block ends without writing."""
    uow = SqlAlchemyUnitOfWork(engine, codec=codec)

    def call() -> None:
        with uow:
            uow.repository(Account).require(account_id)

    return call


def tactical_workload(
    workload: str, engine: sa.Engine, codec: JsonCodec, bus: EventBus
) -> Callable[[], None]:
    """tactical's side of ``workload`` (a key of ``WORKLOADS``)."""
    if workload == "create":
        return tactical_create(engine, codec, bus, events=1)
    if workload == "create10":
        return tactical_create(engine, codec, bus, events=10)
    account_id = saved_account(engine, codec)
    if workload == "update":
        return tactical_deposit(engine, codec, bus, account_id)
    return tactical_load(engine, codec, account_id)


def counting_bus(seen: list[int]) -> EventBus:
    """A bus with one subscriber, which counts deposits (publication is part of the work)."""
    bus = EventBus()
    bus.subscribe(Deposited, lambda _: seen.__setitem__(0, seen[0] + 1))
    return bus
