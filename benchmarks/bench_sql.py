"""The SQL unit of work against hand-written Core with prebuilt statements (issue 17's table).

Four workloads (``benchmarks._sql.WORKLOADS``), each on a SQLite file (WAL,
synchronous=NORMAL, as ``configure_engine`` sets it) and on PostgreSQL when it is reachable.
Both sides work on the same engine, tables and indexes; tactical's events go to one
subscriber after the commit, the baseline hands its payloads to one as well.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import sqlalchemy as sa
from benchmarks import _core, _sql
from benchmarks._harness import Goal, Report, compare
from tactical import JsonCodec

GROUP = "sql uow"
AGAINST = "hand-written Core"
GOAL = Goal(1.10)


def _compare(report: Report, database: str, engine: sa.Engine, seconds: float) -> None:
    codec = JsonCodec()
    seen = [0, 0]
    bus = _sql.counting_bus(seen)

    def handler(_: object) -> None:
        seen[1] += 1

    for workload, name in _sql.WORKLOADS.items():
        report.add(
            compare(
                GROUP,
                name,
                _sql.tactical_workload(workload, engine, codec, bus),
                _core.core_workload(workload, engine, codec, handler),
                database=database,
                against=AGAINST,
                goal=GOAL,
                rounds=_sql.ROUNDS,
                seconds=seconds,
            )
        )
    if seen[0] == 0 or seen[0] != seen[1]:
        raise RuntimeError(f"events published: tactical {seen[0]}, baseline {seen[1]}")


def run(report: Report) -> None:
    """Run the SQL unit of work benchmarks into ``report``."""
    with tempfile.TemporaryDirectory(prefix="tactical-bench-") as directory:
        engine = _sql.sqlite_engine(Path(directory))
        try:
            _compare(report, _sql.SQLITE, engine, _sql.SECONDS)
        finally:
            engine.dispose()
    unreachable = _sql.postgres_reachable()
    if unreachable is not None:
        names = list(_sql.WORKLOADS.values())
        report.skip(GROUP, names, _sql.POSTGRES, unreachable, against=AGAINST, goal=GOAL)
        return
    with _sql.postgres_engine() as engine:
        _compare(report, _sql.POSTGRES, engine, _sql.POSTGRES_SECONDS)
