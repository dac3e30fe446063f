"""What the outbox's secondary indexes cost a SQLite create (no goal: a report).

The hand-written Core create (a new account document and one outbox row, one transaction)
on an outbox table with all of tactical's secondary indexes, and with each one alone,
against the same table with none (its primary key only). Each side is a SQLite file of its
own (WAL, synchronous=NORMAL), both fresh for each row. The indexes are read from
``outbox_table`` (its unique columns count as one index each), so the rows follow the schema
as it changes.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from benchmarks import _core, _sql
from benchmarks._harness import Report, compare
from tactical import JsonCodec
from tactical.sqlalchemy import aggregates_table, configure_engine, outbox_table

GROUP = "outbox indexes"


def outbox_indexes(dialect: sa.Dialect) -> dict[str, str]:
    """Each secondary index of the outbox, by name, as the DDL that creates it."""
    found = {
        str(index.name): str(sa.schema.CreateIndex(index).compile(dialect=dialect))
        for index in outbox_table.indexes
    }
    for column in outbox_table.c:
        if column.unique:
            name = f"unique {column.name}"
            found[name] = (
                f"CREATE UNIQUE INDEX ux_{column.name} ON {outbox_table.name} ({column.name})"
            )
    return found


def _server_default(column: sa.Column[Any]) -> sa.DefaultClause | None:
    """A copy of ``column``'s server default (``transaction_order``'s), for a table of its own."""
    default = column.server_default
    return sa.DefaultClause(default.arg) if isinstance(default, sa.DefaultClause) else None


def variant_engine(directory: Path, name: str, ddl: list[str]) -> sa.Engine:
    """A SQLite file with tactical's tables, the outbox without secondary indexes but ``ddl``."""
    metadata = sa.MetaData()
    aggregates_table.to_metadata(metadata)
    sa.Table(
        outbox_table.name,
        metadata,
        *(
            sa.Column(
                c.name,
                c.type,
                primary_key=c.primary_key,
                nullable=c.nullable,
                autoincrement=c.autoincrement,
                server_default=_server_default(c),
            )
            for c in outbox_table.c
        ),
    )
    engine = configure_engine(sa.create_engine(f"sqlite:///{directory / name}"))
    metadata.create_all(engine)
    with engine.begin() as connection:
        for statement in ddl:
            connection.exec_driver_sql(statement)
    return engine


def run(report: Report) -> None:
    """Run the outbox index benchmarks into ``report``."""
    codec = JsonCodec()
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        base = Path(directory)
        engines = [variant_engine(base, "none.sqlite3", [])]
        indexes = outbox_indexes(engines[0].dialect)

        def create(engine: sa.Engine) -> Callable[[], None]:
            return _core.core_create(engine, codec, lambda _: None, events=1)

        variants = {f"all {len(indexes)} indexes": list(indexes.values())}
        variants |= {f"only {name}": [ddl] for name, ddl in indexes.items()}
        for number, (label, ddl) in enumerate(variants.items()):
            # A fresh table on each side, so both hold as many rows.
            engines.append(variant_engine(base, f"none-{number}.sqlite3", []))
            engines.append(variant_engine(base, f"variant-{number}.sqlite3", ddl))
            report.add(
                compare(
                    GROUP,
                    f"Core create, {label}",
                    create(engines[-1]),
                    create(engines[-2]),
                    database=_sql.SQLITE,
                    against="no secondary index",
                    rounds=_sql.ROUNDS,
                    seconds=_sql.SECONDS,
                )
            )
        for engine in engines:
            engine.dispose()
