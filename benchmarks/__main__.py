"""Run the benchmarks, print the table of ratios, write ``benchmarks/results/latest.json``.

``python -m benchmarks`` runs every group; ``python -m benchmarks model sql`` runs only the
groups named. Each group is a module with ``run(report)``; add new ones to ``GROUPS``.
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

from benchmarks._harness import Report

# Group name -> module (in run order). A new benchmark module goes here, nowhere else.
GROUPS: dict[str, str] = {
    "model": "benchmarks.bench_model",
    "uow": "benchmarks.bench_uow",
    "sql": "benchmarks.bench_sql",
    "eventsourcing": "benchmarks.bench_eventsourcing",
    "scaling": "benchmarks.bench_scaling",
    "relay": "benchmarks.bench_relay",
}

RESULTS = Path(__file__).parent / "results" / "latest.json"


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
    print(Report.header())
    started = time.perf_counter()
    for group in selected:
        importlib.import_module(GROUPS[group]).run(report)
    report.write_json(RESULTS)
    print(f"\n{len(report.comparisons)} comparisons in {time.perf_counter() - started:.0f}s")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
