"""A small harness: time a candidate and its baseline side by side, report the ratio.

Both callables run in alternating rounds (so drift in machine load affects both alike), each
round timed with ``timeit`` over enough iterations to last a few milliseconds; the figure kept
for each is the minimum per-call time over the rounds, the least noisy estimate of its cost.
"""

from __future__ import annotations

import json
import platform
import sys
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Comparison:
    """One benchmark: a candidate measured against its baseline."""

    group: str
    name: str
    candidate_ns: float
    baseline_ns: float
    goal: float | None = None

    @property
    def ratio(self) -> float:
        return self.candidate_ns / self.baseline_ns

    @property
    def verdict(self) -> str:
        if self.goal is None:
            return ""
        return "ok" if self.ratio <= self.goal else f"MISSES goal {self.goal:.2f}x"


def _per_call_ns(function: Callable[[], object], number: int) -> float:
    return timeit.timeit(function, number=number) / number * 1e9


def compare(
    group: str,
    name: str,
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    goal: float | None = None,
    rounds: int = 15,
    target_seconds: float = 0.02,
) -> Comparison:
    """Measure ``candidate`` and ``baseline`` in alternating rounds and return the comparison."""
    number = 1
    while _per_call_ns(baseline, number) * number < target_seconds * 1e9 / 4:
        number *= 2
    candidate_times: list[float] = []
    baseline_times: list[float] = []
    for _ in range(rounds):
        baseline_times.append(_per_call_ns(baseline, number))
        candidate_times.append(_per_call_ns(candidate, number))
    return Comparison(group, name, min(candidate_times), min(baseline_times), goal)


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
            f"{'group':<25} {'benchmark':<48} {'candidate':>12} {'baseline':>12} {'ratio':>7}  goal"
        )

    @staticmethod
    def _row(c: Comparison) -> str:
        return (
            f"{c.group:<25} {c.name:<48} {c.candidate_ns:>10.0f}ns {c.baseline_ns:>10.0f}ns "
            f"{c.ratio:>6.2f}x  {c.verdict}"
        )

    def write_json(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "python": sys.version,
            "platform": platform.platform(),
            "comparisons": [asdict(c) | {"ratio": c.ratio} for c in self.comparisons],
            "notes": self.notes,
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
