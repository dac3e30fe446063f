"""Run every benchmark, print the table of ratios, write ``benchmarks/results/latest.json``."""

from __future__ import annotations

from pathlib import Path

from benchmarks import bench_model, bench_relay
from benchmarks._harness import Report


def main() -> None:
    report = Report()
    print(Report.header())
    bench_model.run(report)
    bench_relay.run(report)
    out = Path(__file__).parent / "results" / "latest.json"
    report.write_json(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
