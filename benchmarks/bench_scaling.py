"""How the SQL unit of work's cost grows with the rows stored (goal: flat, <= 1.10x).

On a SQLite file (WAL): the same load + command + commit against a table of 1,000 and of
100,000 account documents (every access is by primary key). Aggregate size is the ``large``
group's.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import sqlalchemy as sa
from benchmarks import _sql
from benchmarks._domain import Account
from benchmarks._harness import Goal, Report, compare
from tactical import EventBus, JsonCodec
from tactical.sqlalchemy import aggregates_table

TOUCHED = 100  # accounts each side rotates over, spread through the table


def _bulk_accounts(engine: sa.Engine, codec: JsonCodec, count: int) -> list[UUID]:
    """Insert ``count`` account documents with one Core executemany; return their ids."""
    type_name = codec.type_name(Account)
    now = datetime.now(UTC)
    ids = [uuid4() for _ in range(count)]
    batch = 10_000
    with engine.begin() as connection:
        for start in range(0, count, batch):
            connection.execute(
                aggregates_table.insert(),
                [
                    {
                        "aggregate_type": type_name,
                        "aggregate_id": str(account_id),
                        "version": 1,
                        "state": codec.aggregate_to_state(Account(account_id, f"owner {n}")),
                        "updated_at": now,
                    }
                    for n, account_id in enumerate(ids[start : start + batch], start)
                ],
            )
    # Copy the bulk load from the write-ahead log into the database file and empty the log,
    # as SQLite's checkpoints do in a database that has been running for a while: a log still
    # holding 100k fresh rows slows every page lookup (its index is searched first).
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return ids


def _rotating_deposit(engine: sa.Engine, codec: JsonCodec, ids: list[UUID]) -> Callable[[], None]:
    step = max(1, len(ids) // TOUCHED)
    calls = [_sql.tactical_deposit(engine, codec, EventBus(), i) for i in ids[::step][:TOUCHED]]
    turn = [0]

    def call() -> None:
        calls[turn[0] % len(calls)]()
        turn[0] += 1

    return call


def run(report: Report) -> None:
    """Run the scaling benchmarks into ``report``."""
    codec = JsonCodec()
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        engines: dict[int, sa.Engine] = {}
        calls: dict[int, Callable[[], None]] = {}
        for count in (1_000, 100_000):
            engine = _sql.sqlite_engine(Path(directory), f"rows-{count}.sqlite3")
            started = time.perf_counter()
            ids = _bulk_accounts(engine, codec, count)
            built = time.perf_counter() - started
            report.note(f"scaling: {count:,} account rows bulk-inserted in {built:.1f}s")
            engines[count], calls[count] = engine, _rotating_deposit(engine, codec, ids)
        report.add(
            compare(
                "scaling",
                "load + command + commit, 100k rows vs 1k",
                calls[100_000],
                calls[1_000],
                database=_sql.SQLITE,
                against="1k rows stored",
                goal=Goal(1.10),
                rounds=_sql.ROUNDS,
                seconds=_sql.SECONDS,
            )
        )
        for engine in engines.values():
            engine.dispose()
