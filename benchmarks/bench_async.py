"""The async unit of work against the sync one on threads (issue 18): not yet available.

The benchmark to add here, once ``AsyncSqlAlchemyUnitOfWork`` exists: load + command (1
event) + commit on PostgreSQL at each of ``CONCURRENCY`` commands in flight. The candidate
is the async unit of work on one event loop, ``n`` tasks each running commands back to back
(one row per driver: psycopg's async mode and asyncpg); the baseline is
``SqlAlchemyUnitOfWork`` on ``n`` threads doing the same, in the same run, each side on
accounts of its own. One call of a variant is a fixed number of commands per task, so the
ratio is one of throughputs (wall time for the same work). Goals: >= 1.0x the sync
throughput at 1 command in flight, >= 1.3x at 16 (``GOALS``, as ratios of the async side's
time to the sync side's: <= 1.0x and <= 1/1.3x).

Until then the group prints one line per row saying so; nothing is measured or invented.
"""

from __future__ import annotations

from benchmarks import _sql
from benchmarks._harness import Goal, Report

GROUP = "async uow"
CONCURRENCY = (1, 4, 16, 32)
DRIVERS = ("psycopg async", "asyncpg")
# Time of the async side as a multiple of the sync side's for the same commands.
GOALS: dict[int, Goal] = {1: Goal(1.0), 16: Goal(round(1 / 1.3, 2))}
REASON = "not yet available (no async unit of work yet)"


def available() -> bool:
    """Whether the async unit of work exists in the installed tactical."""
    import importlib

    module = importlib.import_module("tactical.sqlalchemy")
    return hasattr(module, "AsyncSqlAlchemyUnitOfWork")


def run(report: Report) -> None:
    """Say, for each row of the async benchmark, that it cannot run yet."""
    if available():
        report.note(
            f"{GROUP}: AsyncSqlAlchemyUnitOfWork exists now; benchmarks/bench_async.py "
            "still has to be written (see its docstring)"
        )
    for driver in DRIVERS:
        for concurrency in CONCURRENCY:
            report.skip(
                GROUP,
                [f"load + command + commit, {concurrency} at once, {driver}"],
                _sql.POSTGRES,
                REASON,
                against="sync uow on threads",
                goal=GOALS.get(concurrency),
            )
