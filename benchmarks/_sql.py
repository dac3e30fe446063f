"""Databases for the SQL benchmarks, and the hand-written Core transaction they compare with."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from benchmarks._domain import Account, Deposited
from tactical import EventBus
from tactical._codec import JsonCodec
from tactical.sqlalchemy import (
    SqlAlchemyUnitOfWork,
    aggregates_table,
    configure_engine,
    create_schema,
    outbox_table,
)

# One transaction per variant per round. SQLite's WAL checkpoints (every ~1,000 pages written,
# milliseconds each) land in a few rounds only: the medians and quartiles leave them out.
ROUNDS = 40
SECONDS = 1.0

POSTGRES_URL = os.environ.get(
    "TACTICAL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# A schema of its own: the test suite empties tactical's tables in `public` at any time.
POSTGRES_SCHEMA = "tactical_bench"


def sqlite_engine(directory: Path, name: str = "bench.sqlite3") -> sa.Engine:
    """A SQLite file database (WAL, via configure_engine) with tactical's schema."""
    engine = configure_engine(sa.create_engine(f"sqlite:///{directory / name}"))
    create_schema(engine)
    return engine


def postgres_engine() -> sa.Engine | str:
    """The PostgreSQL database with tactical's schema in a private schema, or why not."""
    try:
        admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")
            connection.exec_driver_sql(f"CREATE SCHEMA {POSTGRES_SCHEMA}")
        admin.dispose()
    except Exception as error:  # any failure means: no PostgreSQL here
        return f"PostgreSQL at {POSTGRES_URL} unreachable ({type(error).__name__})"
    engine = sa.create_engine(
        POSTGRES_URL,
        connect_args={"connect_timeout": 3, "options": f"-csearch_path={POSTGRES_SCHEMA}"},
    )
    create_schema(engine)
    return engine


def drop_postgres_schema(engine: sa.Engine) -> None:
    engine.dispose()
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")
    admin.dispose()


def saved_account(engine: sa.Engine, codec: JsonCodec) -> UUID:
    """Store a new account through the unit of work; return its id."""
    account_id = uuid4()
    uow = SqlAlchemyUnitOfWork(engine, codec=codec)
    with uow:
        uow.repository(Account).add(Account(account_id, "ada"))
        uow.commit()
    return account_id


def tactical_deposit(
    engine: sa.Engine, codec: JsonCodec, bus: EventBus, account_id: UUID
) -> Callable[[], None]:
    """The candidate: load, command, commit through SqlAlchemyUnitOfWork."""
    uow = SqlAlchemyUnitOfWork(engine, bus, codec=codec)
    amount = Decimal("1.25")

    def call() -> None:
        with uow:
            uow.repository(Account).require(account_id).deposit(amount)
            uow.commit()

    return call


def core_deposit(
    engine: sa.Engine, codec: JsonCodec, account_id: UUID, *, prebuilt: bool = False
) -> Callable[[], None]:
    """The baseline: the same statements written by hand with SQLAlchemy Core.

    Select the document row, update it under a version check, insert the outbox row, commit;
    state and payload are built as plain dicts (what the codec would produce). With
    ``prebuilt`` the statements are built once with bound parameters (as tactical does),
    otherwise on every call, as most hand-written code does.
    """
    table, outbox = aggregates_table, outbox_table
    type_name = codec.type_name(Account)
    event_type = codec.type_name(Deposited)
    key = str(account_id)
    amount = Decimal("1.25")
    select_once, update_once = _document_statements(type_name, key)
    insert_once = outbox.insert()

    def call() -> None:
        with engine.connect() as connection:
            connection.begin()
            if prebuilt:
                row = connection.execute(select_once).one()
            else:
                row = connection.execute(
                    sa.select(table.c.version, table.c.state).where(
                        table.c.aggregate_type == type_name, table.c.aggregate_id == key
                    )
                ).one()
            state: dict[str, Any] = row.state
            balance = Decimal(state["balance"]) + amount
            now = datetime.now(UTC)
            new_state = {**state, "balance": str(balance)}
            if prebuilt:
                updated = connection.execute(
                    update_once,
                    {
                        "expected": row.version,
                        "new_version": row.version + 1,
                        "new_state": new_state,
                        "now": now,
                    },
                )
            else:
                updated = connection.execute(
                    table.update()
                    .where(
                        table.c.aggregate_type == type_name,
                        table.c.aggregate_id == key,
                        table.c.version == row.version,
                    )
                    .values(version=row.version + 1, state=new_state, updated_at=now)
                )
            if updated.rowcount != 1:
                raise RuntimeError(f"account {key} changed since it was read")
            connection.execute(
                insert_once if prebuilt else outbox.insert(),
                _outbox_row(event_type, type_name, key, row.version + 1, amount),
            )
            connection.commit()

    return call


def core_deposit_on_driver(
    engine: sa.Engine, codec: JsonCodec, account_id: UUID
) -> Callable[[], None]:
    """The same statements, compiled once by SQLAlchemy and run with ``exec_driver_sql``.

    SQLAlchemy's lowest public way to execute: no statement cache lookup and no result
    processing; each value goes through its column's own bind processor by hand, so the rows
    are stored exactly as Core stores them. A measure of what SQLAlchemy's execution path
    costs, not a way to write an application.
    """
    dialect = engine.dialect
    type_name = codec.type_name(Account)
    event_type = codec.type_name(Deposited)
    key = str(account_id)
    amount = Decimal("1.25")
    select_statement, update_statement = _document_statements(type_name, key)
    select = select_statement.compile(dialect=dialect)
    update = update_statement.compile(dialect=dialect)
    columns = [c.name for c in outbox_table.c if c.name != "position"]
    insert = outbox_table.insert().compile(dialect=dialect, column_keys=columns)

    def processors(compiled: sa.Compiled) -> list[Callable[[Any], Any]]:
        assert isinstance(compiled, sa.sql.compiler.SQLCompiler)
        assert compiled.positiontup is not None, "a positional paramstyle (SQLite) is needed"
        binds = compiled.binds
        kept: list[Callable[[Any], Any]] = []
        for name in compiled.positiontup:
            processor = binds[name].type.bind_processor(dialect)
            kept.append(processor if processor is not None else _same)
        return kept

    def bound(compiled: sa.Compiled, values: dict[str, Any]) -> tuple[Any, ...]:
        assert isinstance(compiled, sa.sql.compiler.SQLCompiler)
        names = compiled.positiontup or []
        given = {**constants_of[id(compiled)], **values}
        return tuple(p(given[n]) for p, n in zip(processors_of[id(compiled)], names, strict=True))

    processors_of = {id(c): processors(c) for c in (select, update, insert)}
    constants_of = {
        id(c): {name: b.value for name, b in c.binds.items()} for c in (select, update, insert)
    }
    select_sql, update_sql, insert_sql = str(select), str(update), str(insert)
    select_params = bound(select, {})

    def call() -> None:
        with engine.connect() as connection:
            connection.begin()
            version, text = connection.exec_driver_sql(select_sql, select_params).one()
            state: dict[str, Any] = json.loads(text)
            now = datetime.now(UTC)
            new_state = {**state, "balance": str(Decimal(state["balance"]) + amount)}
            updated = connection.exec_driver_sql(
                update_sql,
                bound(
                    update,
                    {
                        "expected": version,
                        "new_version": version + 1,
                        "new_state": new_state,
                        "now": now,
                    },
                ),
            )
            if updated.rowcount != 1:
                raise RuntimeError(f"account {key} changed since it was read")
            row = _outbox_row(event_type, type_name, key, version + 1, amount)
            connection.exec_driver_sql(insert_sql, bound(insert, row))
            connection.commit()

    return call


def _document_statements(type_name: str, key: str) -> tuple[sa.Select[Any], sa.Update]:
    """The baselines' select of one account's row, and its version-checked update."""
    table = aggregates_table
    is_row = (table.c.aggregate_type == type_name, table.c.aggregate_id == key)
    select = sa.select(table.c.version, table.c.state).where(*is_row)
    update = (
        table.update()
        .where(*is_row, table.c.version == sa.bindparam("expected", type_=sa.Integer()))
        .values(
            version=sa.bindparam("new_version", type_=sa.Integer()),
            state=sa.bindparam("new_state", type_=table.c.state.type),
            updated_at=sa.bindparam("now", type_=table.c.updated_at.type),
        )
    )
    return select, update


def _outbox_row(
    event_type: str, type_name: str, key: str, version: int, amount: Decimal
) -> dict[str, Any]:
    """The outbox row of one deposit, with the payload the codec would write."""
    now = datetime.now(UTC)
    event_id = uuid4()
    return {
        "event_id": event_id,
        "event_type": event_type,
        "event_version": 1,
        "aggregate_type": type_name,
        "aggregate_id": key,
        "aggregate_version": version,
        "payload": {
            "account_id": key,
            "amount": str(amount),
            "event_id": str(event_id),
            "occurred_at": now.isoformat(),
        },
        "occurred_at": now,
        "published_at": None,
        "correlation_id": event_id,
        "causation_id": None,
    }


def _same(value: Any) -> Any:
    return value
