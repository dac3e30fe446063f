"""A small harness: time a candidate and its baseline side by side, report the ratio.

Each round runs the two variants once each, in an order shuffled anew every round (a fixed
order biased comparisons by ~10%: whichever runs second pays for the first one's garbage
and cache misses). A variant's "call" is one call when it lasts long enough to time alone
(the SQL workloads), or a calibrated batch of calls when a single call is too short for the
clock (value objects). The garbage collector is paused while a round is timed and runs
between rounds, so each collection lands outside the measurements.

What is kept: the median per-call time of each variant, and the ratio as the median of the
per-round ratios with its quartiles (rounds are paired, so machine drift affects both
variants of a round alike and cancels out of that round's ratio).
"""

from __future__ import annotations

import gc
import json
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

# A batch is timed as one measurement: long enough that perf_counter's resolution and
# overhead (tens of ns) are below 1% of it.
_MIN_BATCH_NS = 20_000


@dataclass(frozen=True)
class Comparison:
    """One benchmark: a candidate measured against its baseline in paired, shuffled rounds.

    ``candidate_ns`` and ``baseline_ns`` are median per-call times; ``ratio`` is the median
    of the per-round ratios and ``ratio_q1``/``ratio_q3`` its quartiles.
    """

    group: str
    name: str
    candidate_ns: float
    baseline_ns: float
    ratio: float
    ratio_q1: float
    ratio_q3: float
    rounds: int
    calls_per_round: int
    goal: float | None = None

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "ok" if self.ratio <= self.goal else f"MISSES goal {self.goal:.2f}x"


def _batch_ns(function: Callable[[], object], number: int) -> int:
    started = time.perf_counter_ns()
    for _ in range(number):
        function()
    return time.perf_counter_ns() - started


def _calls_per_round(function: Callable[[], object]) -> int:
    number = 1
    while _batch_ns(function, number) < _MIN_BATCH_NS:
        number *= 2
    return number


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
    goal: float | None = None,
    rounds: int = 30,
    seconds: float = 0.5,
    max_rounds: int = 2_000,
) -> Comparison:
    """Measure ``candidate`` against ``baseline`` in shuffled, paired rounds.

    Args:
        group: The table's group column.
        name: What is measured.
        candidate: The code under test, called with no arguments.
        baseline: What it is compared with.
        goal: The largest acceptable ratio, if there is one.
        rounds: The fewest rounds to run, however long they take.
        seconds: Roughly how long to keep adding rounds (both variants together).
        max_rounds: The most rounds to run, however short they are.
    """
    # Warm up both (caches, lazy compilation, connection pools), then size the batches on
    # the slower of the two so that both variants of a round run the same number of calls.
    candidate()
    baseline()
    number = max(_calls_per_round(candidate), _calls_per_round(baseline))
    variants = [(0, candidate), (1, baseline)]
    times: tuple[list[int], list[int]] = ([], [])
    deadline = time.perf_counter() + seconds
    shuffle = random.Random(f"{group}/{name}").shuffle  # reproducible orders per benchmark
    enabled = gc.isenabled()
    try:
        while len(times[0]) < rounds or (
            len(times[0]) < max_rounds and time.perf_counter() < deadline
        ):
            shuffle(variants)
            gc.disable()
            for index, function in variants:
                times[index].append(_batch_ns(function, number))
            if enabled:
                gc.enable()
    finally:
        if enabled:
            gc.enable()
    ratios = [c / b for c, b in zip(*times, strict=True)]
    q1, median, q3 = _quartiles(ratios)
    return Comparison(
        group,
        name,
        candidate_ns=statistics.median(times[0]) / number,
        baseline_ns=statistics.median(times[1]) / number,
        ratio=median,
        ratio_q1=q1,
        ratio_q3=q3,
        rounds=len(ratios),
        calls_per_round=number,
        goal=goal,
    )


@dataclass
class Report:
    """Collected comparisons, printed as a table and written as JSON."""

    comparisons: list[Comparison] = field(default_factory=list[Comparison])
    notes: list[str] = field(default_factory=list[str])

    def add(self, comparison: Comparison) -> None:
        self.comparisons.append(comparison)
        print(self._row(comparison), flush=True)

    def note(self, text: str) -> None:
        """Record a remark for the reader (a skipped row, a setting that matters)."""
        self.notes.append(text)
        print(f"  note: {text}", flush=True)

    @staticmethod
    def header() -> str:
        return (
            f"{'group':<25} {'benchmark':<48} {'candidate':>12} {'baseline':>12} "
            f"{'ratio':>7} {'(q1-q3)':>13}  goal"
        )

    @staticmethod
    def _row(c: Comparison) -> str:
        spread = f"({c.ratio_q1:.2f}-{c.ratio_q3:.2f})"
        return (
            f"{c.group:<25} {c.name:<48} {c.candidate_ns:>10.0f}ns {c.baseline_ns:>10.0f}ns "
            f"{c.ratio:>6.2f}x {spread:>13}  {c.verdict}"
        )

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "python": sys.version,
            "platform": platform.platform(),
            "method": "paired rounds in shuffled order; medians; ratio = median per-round ratio",
            "comparisons": [asdict(c) for c in self.comparisons],
            "notes": self.notes,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
