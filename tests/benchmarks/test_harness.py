"""The benchmark harness's method: shuffled, paired rounds (no timing is asserted)."""

from __future__ import annotations

import functools
import random
import time

from benchmarks._harness import Comparison, Goal, Report, calls_per_round, compare, timed_rounds


def _rounds(names: list[str], *, number: int, rounds: int, seed: int) -> list[list[str]]:
    """Run ``timed_rounds`` over variants that log their name; the log, cut into rounds."""
    log: list[str] = []
    times = timed_rounds(
        [functools.partial(log.append, name) for name in names],
        number=number,
        order=random.Random(seed),
        rounds=rounds,
    )
    assert [len(t) for t in times] == [rounds] * len(names)
    size = number * len(names)
    return [log[i : i + size] for i in range(0, len(log), size)]


class TestTimedRounds:
    def test_every_variant_runs_once_per_round(self) -> None:
        """Each round calls every variant exactly once (with one call per round)."""
        rounds = _rounds(["a", "b", "c"], number=1, rounds=40, seed=1)
        assert len(rounds) == 40
        assert all(sorted(r) == ["a", "b", "c"] for r in rounds)

    def test_the_order_is_shuffled_from_round_to_round(self) -> None:
        """The order changes between rounds and every variant sometimes runs first."""
        orders = [tuple(r) for r in _rounds(["cand", "base"], number=1, rounds=60, seed=7)]
        assert set(orders) == {("cand", "base"), ("base", "cand")}
        assert 10 < sum(o[0] == "cand" for o in orders) < 50

    def test_a_batch_runs_the_same_number_of_calls_of_each_variant(self) -> None:
        """With a batch of n calls, a round is n calls of one variant, then n of the other."""
        rounds = _rounds(["a", "b"], number=3, rounds=10, seed=3)
        assert all(r in (["a"] * 3 + ["b"] * 3, ["b"] * 3 + ["a"] * 3) for r in rounds)


class TestCallsPerRound:
    def test_a_call_of_a_millisecond_is_timed_alone(self) -> None:
        """A call that lasts longer than a microsecond is one call per round, not a batch."""
        assert calls_per_round(lambda: time.sleep(0.001)) == 1

    def test_a_trivial_call_is_batched(self) -> None:
        """A call shorter than the clock can time alone is repeated in a batch."""
        assert calls_per_round(lambda: None) > 1


class TestCompare:
    def test_the_ratio_is_reported_with_its_quartiles_and_goal(self) -> None:
        """compare() returns a ratio between its quartiles, with the goal's verdict."""
        work = list(range(200))
        comparison = compare(
            "g",
            "n",
            lambda: sorted(work),
            lambda: sorted(work),
            goal=Goal(1e9),
            rounds=5,
            seconds=0,
        )
        assert comparison.ratio_q1 <= comparison.ratio <= comparison.ratio_q3
        assert comparison.rounds == 5
        assert comparison.verdict == "met"

    def test_long_calls_get_a_cpu_ratio_and_short_ones_none(self) -> None:
        """The CPU-time ratio is reported for calls of 30 us or more only."""
        work = list(range(20_000))
        long = compare("g", "long", lambda: sum(work), lambda: sum(work), rounds=3, seconds=0)
        short = compare("g", "short", lambda: None, lambda: None, rounds=3, seconds=0)
        assert long.cpu_ratio is not None
        assert long.baseline_cpu_ns is not None
        assert short.cpu_ratio is None
        assert short.baseline_cpu_ns is None


class TestGoal:
    def test_a_strict_goal_is_not_met_at_its_limit(self) -> None:
        """'< 1.00x' refuses a ratio of exactly 1.0, '<= 1.00x' accepts it."""
        assert not Goal(1.0, strict=True).met_by(1.0)
        assert Goal(1.0).met_by(1.0)
        assert (str(Goal(1.0, strict=True)), str(Goal(1.1))) == ("< 1.00x", "<= 1.10x")

    def test_a_goal_between_the_quartiles_is_unclear(self) -> None:
        """A verdict whose goal lies between the ratio's quartiles says it is unclear."""
        row = Comparison("g", "n", "", "", 1.05, 1.0, 1.05, 0.9, 1.2, 9, 1, Goal(1.1))
        assert row.verdict == "met (unclear)"
        row = Comparison("g", "n", "", "", 1.3, 1.0, 1.3, 1.2, 1.4, 9, 1, Goal(1.1))
        assert row.verdict == "MISSED"


class TestReport:
    def test_skipped_rows_appear_in_the_table_with_their_reason(self) -> None:
        """A row that could not run is a table row saying why, not a missing row."""
        report = Report()
        report.skip("sql uow", ["load only"], "PostgreSQL", "unreachable", goal=Goal(1.1))
        report.add(Comparison("sql uow", "load only", "SQLite", "Core", 2, 1, 2, 1.5, 2.5, 9, 1))
        table = report.markdown().splitlines()
        assert "skipped: unreachable" in table[2]
        assert "2.00x (1.50-2.50)" in table[3]
