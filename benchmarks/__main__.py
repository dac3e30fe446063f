"""Run the benchmarks, print the table of ratios, write ``benchmarks/results/latest.json``.

``python -m benchmarks`` runs every group; ``python -m benchmarks sql eventsourcing`` runs
only the groups named. Each group is a module with ``run(report)``; add new ones to
``GROUPS``. PostgreSQL rows use ``TACTICAL_BENCH_POSTGRES_URL`` (default: the ``test``
database on 127.0.0.1) and are skipped, with the reason, when it does not answer.
``TACTICAL_BENCH_SMOKE=1`` makes it a smoke run: one round per comparison, figures that mean
nothing, and ``latest.json`` left alone.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from benchmarks._harness import METHOD, SMOKE_VARIABLE, Report, smoke

# Group name -> module (in run order). A new benchmark module goes here, nowhere else.
GROUPS: dict[str, str] = {
    "sql": "benchmarks.bench_sql",
    "eventsourcing": "benchmarks.bench_eventsourcing",
    "indexes": "benchmarks.bench_indexes",
    "memory": "benchmarks.bench_memory",
    "large": "benchmarks.bench_large",
    "async": "benchmarks.bench_async",
    "model": "benchmarks.bench_model",
    "scaling": "benchmarks.bench_scaling",
    "relay": "benchmarks.bench_relay",
    "consumers": "benchmarks.bench_consumers",
    "otel": "benchmarks.bench_otel",
}

RESULTS = Path(__file__).parent / "results" / "latest.json"


def _machine() -> str:
    import sqlite3

    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.platform()}; "
        f"{platform.processor() or platform.machine()}; Python {platform.python_version()}; "
        f"SQLAlchemy {sa.__version__}; SQLite {sqlite3.sqlite_version}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "groups",
        nargs="*",
        metavar="group",
        help=f"groups to run (default: all): {', '.join(GROUPS)}",
    )
    arguments = parser.parse_args(argv)
    unknown = [g for g in arguments.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group(s) {', '.join(unknown)}; groups are {', '.join(GROUPS)}")
    selected = arguments.groups or list(GROUPS)

    report = Report()
    print(f"machine: {_machine()}")
    print(f"method: {METHOD}\n")
    print(Report.header())
    started = time.perf_counter()
    for group in selected:
        importlib.import_module(GROUPS[group]).run(report)
    elapsed = time.perf_counter() - started
    print("\nThe table of docs/explanation/performance.md:\n")
    print(report.markdown())
    print("\nNotes printed by the same run:\n")
    print("\n".join(f"- {note}" for note in report.notes))
    if smoke():
        print(f"\nsmoke run ({SMOKE_VARIABLE} set): one round per comparison; {RESULTS} left alone")
        return
    report.write_json(RESULTS)
    print(f"\n{len(report.comparisons)} comparisons in {elapsed:.0f}s; wrote {RESULTS}")


if __name__ == "__main__":
    main()
