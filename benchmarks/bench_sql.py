"""The SQL unit of work against a hand-written SQLAlchemy Core transaction.

Workload, one call: load one account (a JSON document row), deposit, commit with the
version-checked update and the outbox row; the baseline issues the same statements itself,
either building them on every call (the usual way to write Core) or once. Runs on a SQLite
file (WAL) and on PostgreSQL when it is reachable.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from benchmarks import _sql
from benchmarks._domain import Deposited
from benchmarks._harness import Report, compare
from tactical import EventBus
from tactical._codec import JsonCodec

GOAL = 1.3


def _compare(report: Report, database: str, engine: sa.Engine) -> None:
    codec = JsonCodec()
    bus = EventBus()
    published: list[Deposited] = []
    bus.subscribe(Deposited, published.append)
    candidate = _sql.tactical_deposit(engine, codec, bus, _sql.saved_account(engine, codec))
    for prebuilt in (False, True):
        baseline = _sql.core_deposit(
            engine, codec, _sql.saved_account(engine, codec), prebuilt=prebuilt
        )
        report.add(
            compare(
                "sql uow",
                f"{database}: vs Core built {'once' if prebuilt else 'per call'}",
                candidate,
                baseline,
                goal=GOAL,
                rounds=_sql.ROUNDS,
                seconds=_sql.SECONDS,
            )
        )
    if not published:
        raise RuntimeError("the SQL unit of work published no event")


def run(report: Report) -> None:
    """Run the SQL unit of work benchmarks into ``report``."""
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        engine = _sql.sqlite_engine(Path(directory))
        try:
            _compare(report, "SQLite WAL", engine)
        finally:
            engine.dispose()
    postgres = _sql.postgres_engine()
    if isinstance(postgres, str):
        report.note(f"sql uow: PostgreSQL row skipped: {postgres}")
        return
    try:
        _compare(report, "PostgreSQL", postgres)
    finally:
        _sql.drop_postgres_schema(postgres)
