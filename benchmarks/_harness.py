"""A small harness: time a candidate and its baseline side by side, report the ratio.

Each round calls every variant once, in an order shuffled anew every round (a fixed order
biased comparisons by ~10%: whichever runs second pays for the first one's garbage and cache
misses). A variant's "call" is one call, except for calls shorter than a microsecond (value
objects), which the clock cannot time alone: those are timed as a calibrated batch of calls,
the same number for both variants. The garbage collector is paused while a round is timed
and runs between rounds, so each collection lands outside the measurements.

What is kept: the median per-call time of each variant, and the ratio as the median of the
per-round ratios with its quartiles (rounds are paired, so machine drift affects both
variants of a round alike and cancels out of that round's ratio).

Beside the wall-clock ratio, the same rounds give a CPU-time ratio (this process's CPU time,
all threads) for calls of 30 us or more: on a machine shared with other work, a call is
sometimes descheduled mid-way, and a long call more often than a short one, which inflates
wall-clock ratios; CPU time leaves those pauses out, but also leaves out what another
process (the PostgreSQL server) does for the call. The goals are judged on wall time.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Below this a single call is timed as a batch: perf_counter's overhead (tens of ns) would be
# a visible share of it.
_BATCH_BELOW_NS = 1_000
# A batch lasts at least this long, so the clock's overhead is under 1% of it.
_MIN_BATCH_NS = 20_000
# Reading the CPU clock is a system call (microseconds on some machines): its ratio is
# reported only for calls long enough that this, subtracted, leaves a steady figure.
_MIN_CPU_TIMED_NS = 30_000

# A smoke run (this variable set to anything but "" or "0"): every comparison runs one round
# and no added time, so each group runs all its code and makes all its rows in seconds, with
# figures that mean nothing. The test suite's smoke test sets it; `nox -s bench` does not.
SMOKE_VARIABLE = "TACTICAL_BENCH_SMOKE"

METHOD = (
    "paired rounds, one call per variant per round (a calibrated batch for sub-microsecond "
    "calls) in an order shuffled every round; medians of per-call times; ratio = median of "
    "the per-round ratios, with its quartiles; cpu = the same from this process's CPU time "
    "(calls of 30 us or more)"
)


@dataclass(frozen=True)
class Goal:
    """The largest acceptable ratio: ``ratio <= limit``, or ``ratio < limit`` if ``strict``."""

    limit: float
    strict: bool = False

    def met_by(self, ratio: float) -> bool:
        return ratio < self.limit if self.strict else ratio <= self.limit

    def __str__(self) -> str:
        return f"{'<' if self.strict else '<='} {self.limit:.2f}x"


@dataclass(frozen=True)
class Comparison:
    """One benchmark: a candidate measured against its baseline in paired, shuffled rounds.

    ``candidate_ns`` and ``baseline_ns`` are median per-call times; ``ratio`` is the median
    of the per-round ratios and ``ratio_q1``/``ratio_q3`` its quartiles. ``database`` is
    empty for benchmarks without one; ``against`` names the baseline.
    """

    group: str
    name: str
    database: str
    against: str
    candidate_ns: float
    baseline_ns: float
    ratio: float
    ratio_q1: float
    ratio_q3: float
    rounds: int
    calls_per_round: int
    goal: Goal | None = None
    cpu_ratio: float | None = None
    candidate_cpu_ns: float | None = None
    baseline_cpu_ns: float | None = None

    @property
    def verdict(self) -> str:
        """Met or MISSED by the median ratio, and "(unclear)" when the goal's limit lies
        between the quartiles (a quarter of the rounds or more on either side of it)."""
        if self.goal is None:
            return ""
        verdict = "met" if self.goal.met_by(self.ratio) else "MISSED"
        if self.ratio_q1 <= self.goal.limit <= self.ratio_q3:
            verdict += " (unclear)"
        return verdict


@dataclass(frozen=True)
class Skipped:
    """A row that could not be measured here (a server not reachable), with the reason."""

    group: str
    name: str
    database: str
    against: str
    reason: str
    goal: Goal | None = None


def smoke() -> bool:
    """True in a smoke run (``TACTICAL_BENCH_SMOKE`` set): one round per comparison."""
    return os.environ.get(SMOKE_VARIABLE, "") not in ("", "0")


def _batch_ns(function: Callable[[], object], number: int) -> int:
    started = time.perf_counter_ns()
    for _ in range(number):
        function()
    return time.perf_counter_ns() - started


def _batch_with_cpu_ns(function: Callable[[], object], number: int) -> tuple[int, int]:
    """Wall and CPU nanoseconds of ``number`` calls (the wall clock read inside the CPU one)."""
    cpu_started = time.process_time_ns()
    started = time.perf_counter_ns()
    for _ in range(number):
        function()
    wall = time.perf_counter_ns() - started
    return wall, time.process_time_ns() - cpu_started


_cpu_clock_ns: list[int] = []


def _cpu_clock_overhead_ns() -> int:
    """What reading the CPU clock twice adds to a CPU measurement (measured once)."""
    if not _cpu_clock_ns:
        _cpu_clock_ns.append(
            int(statistics.median(_batch_with_cpu_ns(int, 0)[1] for _ in range(201)))
        )
    return _cpu_clock_ns[0]


def calls_per_round(function: Callable[[], object]) -> int:
    """1 for a call that lasts a microsecond or more; else a batch of at least 20 us."""
    if min(_batch_ns(function, 1) for _ in range(5)) >= _BATCH_BELOW_NS:
        return 1
    number = 2
    while _batch_ns(function, number) < _MIN_BATCH_NS:
        number *= 2
    return number


def timed_rounds(
    variants: Sequence[Callable[[], object]],
    *,
    number: int,
    order: random.Random,
    rounds: int,
    seconds: float = 0.0,
    max_rounds: int | None = None,
    cpu: list[list[int]] | None = None,
) -> list[list[int]]:
    """Time ``number`` calls of each variant per round, in an order shuffled every round.

    Runs at least ``rounds`` rounds, then more until ``seconds`` have passed or
    ``max_rounds`` are done. Returns the wall-clock nanoseconds of each round, per variant
    (the lists are parallel: index ``r`` of each is round ``r``); with ``cpu``, fills that
    list with the CPU nanoseconds the same way (what it held is replaced).
    """
    limit = rounds if max_rounds is None else max(rounds, max_rounds)
    indexed = list(enumerate(variants))
    times: list[list[int]] = [[] for _ in variants]
    cpu_times: list[list[int]] = [] if cpu is None else cpu
    cpu_times[:] = [[] for _ in variants]
    deadline = time.perf_counter() + seconds
    enabled = gc.isenabled()
    try:
        done = 0
        while done < rounds or (done < limit and time.perf_counter() < deadline):
            order.shuffle(indexed)
            gc.disable()
            for index, function in indexed:
                wall, cpu_ns = _batch_with_cpu_ns(function, number)
                times[index].append(wall)
                cpu_times[index].append(cpu_ns)
            if enabled:
                gc.enable()
            done += 1
    finally:
        if enabled:
            gc.enable()
    return times


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def compare(
    group: str,
    name: str,
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    database: str = "",
    against: str = "",
    goal: Goal | None = None,
    rounds: int = 30,
    seconds: float = 0.5,
    max_rounds: int = 10_000,
) -> Comparison:
    """Measure ``candidate`` against ``baseline`` in shuffled, paired rounds.

    Args:
        group: The group the row belongs to.
        name: What is measured (the workload).
        candidate: The code under test, called with no arguments.
        baseline: What it is compared with.
        database: The database both run on, if any.
        against: What the baseline is, for the table.
        goal: The ratio to meet, if there is one.
        rounds: The fewest rounds to run, however long they take.
        seconds: Roughly how long to keep adding rounds (both variants together).
        max_rounds: The most rounds to run, however short they are.

    In a smoke run (see ``smoke()``), one round, whatever ``rounds``, ``seconds`` and
    ``max_rounds`` say.
    """
    if smoke():
        rounds, seconds, max_rounds = 1, 0.0, 1
    # Warm up both (caches, lazy compilation, connection pools), then size the batches on
    # the slower of the two so that both variants of a round run the same number of calls.
    candidate()
    baseline()
    number = max(calls_per_round(candidate), calls_per_round(baseline))
    cpu: list[list[int]] = []
    times = timed_rounds(
        [candidate, baseline],
        number=number,
        # Seeded per benchmark: a rerun replays the same orders.
        order=random.Random(f"{group}/{database}/{name}"),
        rounds=rounds,
        seconds=seconds,
        max_rounds=max_rounds,
        cpu=cpu,
    )
    ratios = [c / b for c, b in zip(*times, strict=True)]
    q1, median, q3 = _quartiles(ratios)
    cpu_ratio = cpu_medians = None
    if min(statistics.median(t) for t in times) >= _MIN_CPU_TIMED_NS * number:
        overhead = _cpu_clock_overhead_ns()
        net = [[max(t - overhead, 1) for t in side] for side in cpu]
        cpu_ratio = statistics.median(c / b for c, b in zip(*net, strict=True))
        cpu_medians = [statistics.median(side) / number for side in net]
    return Comparison(
        group,
        name,
        database,
        against,
        candidate_ns=statistics.median(times[0]) / number,
        baseline_ns=statistics.median(times[1]) / number,
        ratio=median,
        ratio_q1=q1,
        ratio_q3=q3,
        rounds=len(ratios),
        calls_per_round=number,
        goal=goal,
        cpu_ratio=cpu_ratio,
        candidate_cpu_ns=cpu_medians[0] if cpu_medians else None,
        baseline_cpu_ns=cpu_medians[1] if cpu_medians else None,
    )


def _us(ns: float) -> str:
    us = ns / 1000
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}" if us >= 1 else f"{us:.2f}"


def _cpu(c: Comparison) -> str:
    return "" if c.cpu_ratio is None else f"{c.cpu_ratio:.2f}x"


@dataclass
class Report:
    """Collected comparisons, printed as they come and as a Markdown table, written as JSON."""

    rows: list[Comparison | Skipped] = field(default_factory=list[Comparison | Skipped])
    notes: list[str] = field(default_factory=list[str])

    @property
    def comparisons(self) -> list[Comparison]:
        return [row for row in self.rows if isinstance(row, Comparison)]

    def add(self, comparison: Comparison) -> Comparison:
        self.rows.append(comparison)
        print(self._line(comparison), flush=True)
        return comparison

    def skip(
        self,
        group: str,
        names: Sequence[str],
        database: str,
        reason: str,
        *,
        against: str = "",
        goal: Goal | None = None,
    ) -> None:
        """Record rows that cannot be measured here, and say so."""
        for name in names:
            self.rows.append(Skipped(group, name, database, against, reason, goal))
            print(f"{group:<16} {database:<10} {name:<44} SKIPPED: {reason}", flush=True)

    def note(self, text: str) -> None:
        """Record a remark for the reader (a setting that matters, a share)."""
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    @staticmethod
    def header() -> str:
        return (
            f"{'group':<16} {'database':<10} {'workload':<44} {'candidate':>9} "
            f"{'baseline':>9} {'ratio':>6} {'(q1-q3)':>11} {'cpu':>6}  goal"
        )

    @staticmethod
    def _line(c: Comparison) -> str:
        spread = f"({c.ratio_q1:.2f}-{c.ratio_q3:.2f})"
        goal = f"{c.goal} {c.verdict}" if c.goal is not None else ""
        return (
            f"{c.group:<16} {c.database:<10} {c.name:<44} {_us(c.candidate_ns):>7}us "
            f"{_us(c.baseline_ns):>7}us {c.ratio:>5.2f}x {spread:>11} {_cpu(c):>6}  {goal}"
        )

    def markdown(self) -> str:
        """The table of every row, as the performance page shows it."""
        lines = [
            "| group | workload | database | against | candidate (µs) | baseline (µs) "
            "| ratio (q1-q3) | CPU ratio | goal | met |",
            "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for row in self.rows:
            goal = str(row.goal) if row.goal is not None else ""
            start = f"| {row.group} | {row.name} | {row.database} | {row.against} |"
            if isinstance(row, Skipped):
                lines.append(f"{start} | | skipped: {row.reason} | | {goal} | |")
                continue
            lines.append(
                f"{start} {_us(row.candidate_ns)} | {_us(row.baseline_ns)} "
                f"| {row.ratio:.2f}x ({row.ratio_q1:.2f}-{row.ratio_q3:.2f}) | {_cpu(row)} "
                f"| {goal} | {row.verdict} |"
            )
        return "\n".join(lines)

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "python": sys.version,
            "platform": platform.platform(),
            "method": METHOD,
            "rows": [
                {
                    **asdict(row),
                    "goal": str(row.goal) if row.goal is not None else None,
                    "verdict": row.verdict if isinstance(row, Comparison) else "skipped",
                }
                for row in self.rows
            ],
            "notes": self.notes,
        }
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
