"""Every benchmark group still runs and makes its rows: a smoke run, nothing timed is judged.

``TACTICAL_BENCH_SMOKE=1`` makes each comparison one round, so a group runs all its code in
seconds; the rows must have finite, positive times (or be skipped with the reason). The
PostgreSQL rows run on this suite's own database (the async group with up to 4
transactions in flight, not 32, to spare a shared server's connections). The process groups (``consumers``, and the
partitioned relay processes of ``relay``) have tiny runs of their own in
``test_processes.py``; here ``relay`` runs its one in-process relay only.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from benchmarks._harness import SMOKE_VARIABLE, Comparison, Report, Skipped
from tests.conftest import require_server
from tests.postgres import postgres_url
from tests.telemetry import reset_providers

from benchmarks import __main__ as bench_main
from benchmarks import _sql, bench_async, bench_eventsourcing, bench_relay
from tactical import JsonCodec


def _one_relay(report: Report) -> None:
    codec = JsonCodec()
    bench_relay._one_relay(report, codec, bench_relay._rows(codec))  # pyright: ignore[reportPrivateUsage]


def _group(name: str) -> Callable[[Report], None]:
    run: Callable[[Report], None] = importlib.import_module(bench_main.GROUPS[name]).run
    return run


# The groups run here -> the databases their rows are on ("" for rows without one).
DATABASES: dict[str, set[str]] = {
    "sql": {_sql.SQLITE, _sql.POSTGRES},
    "eventsourcing": {_sql.SQLITE, _sql.POSTGRES},
    "indexes": {_sql.SQLITE},
    "memory": {""},
    "large": {_sql.SQLITE, ""},
    "async": {_sql.POSTGRES},
    "model": {""},
    "scaling": {_sql.SQLITE},
    "relay": {_sql.SQLITE},
    "otel": {""},
}
# Groups run elsewhere, and why.
ELSEWHERE = {"consumers": "only OS processes: test_processes.py runs them"}
ESOURCING_MISSING = importlib.util.find_spec("eventsourcing") is None


@pytest.fixture
def smoke(monkeypatch: pytest.MonkeyPatch) -> None:
    """One round per comparison."""
    monkeypatch.setenv(SMOKE_VARIABLE, "1")


@pytest.fixture
def on_test_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks' PostgreSQL rows on this suite's database (skips without a server)."""
    monkeypatch.setattr(_sql, "POSTGRES_URL", postgres_url().render_as_string(hide_password=False))


def _check_rows(report: Report, group: str) -> None:
    assert report.rows, f"group {group} made no rows"
    assert {row.database for row in report.rows} == DATABASES[group]
    for row in report.rows:
        if isinstance(row, Skipped):
            continue
        times = (row.candidate_ns, row.baseline_ns, row.ratio, row.ratio_q1, row.ratio_q3)
        assert all(math.isfinite(t) and t > 0 for t in times), row
        assert row.rounds == 1, row
        assert row.calls_per_round >= 1, row


@pytest.mark.usefixtures("smoke")
class TestSmokeRuns:
    def test_every_group_is_run_here_or_by_the_process_tests(self) -> None:
        """A group added to GROUPS needs a line here (or in ELSEWHERE) to be checked."""
        assert set(DATABASES) | set(ELSEWHERE) == set(bench_main.GROUPS)
        assert not set(DATABASES) & set(ELSEWHERE)

    @pytest.mark.parametrize(
        "group",
        [
            "indexes",
            "memory",
            "large",
            "model",
            # 100,000 rows bulk-inserted first: 5 to 10 s.
            pytest.param("scaling", marks=pytest.mark.slow),
            "otel",
        ],
    )
    def test_a_group_without_servers_measures_every_row(self, group: str) -> None:
        """Every row is measured: finite, positive times from one round."""
        report = Report()
        try:
            _group(group)(report)
        finally:
            if group == "otel":
                # Its SDK rows set a global tracer provider: later tests' outbox rows would
                # carry a trace context.
                reset_providers()
        _check_rows(report, group)
        assert not [row for row in report.rows if isinstance(row, Skipped)]

    @pytest.mark.rabbitmq
    def test_the_in_process_relay_measures_its_rows(self) -> None:
        """The relay to the bus and to RabbitMQ, each against a relay to nowhere."""
        require_server("RabbitMQ", 5672)
        report = Report()
        _one_relay(report)
        _check_rows(report, "relay")
        assert [row.name for row in report.comparisons] == [
            "200 events to the in-process bus",
            "200 events to RabbitMQ (confirmed)",
        ]

    @pytest.mark.postgres
    @pytest.mark.usefixtures("on_test_postgres")
    @pytest.mark.parametrize(
        "group",
        [
            "sql",
            # 4 rows per driver, each a warm-up and calibration of up to 4 in flight: 10 s.
            pytest.param("async", marks=pytest.mark.slow),
        ],
    )
    def test_a_postgresql_group_measures_every_row(
        self, group: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """SQLite rows (if any) and PostgreSQL rows, all measured on the suite's database."""
        # Up to 4 in flight, not 32: 32 take 64 connections and more, which a PostgreSQL
        # server shared with other test runs may refuse ("too many clients").
        monkeypatch.setattr(bench_async, "CONCURRENCY", (1, 4))
        report = Report()
        _group(group)(report)
        _check_rows(report, group)
        skipped = [row for row in report.rows if isinstance(row, Skipped)]
        if group == "async" and importlib.util.find_spec("uvloop") is None:
            # uvloop is installed by the bench session only: its rows say so.
            assert skipped
            assert {row.reason for row in skipped} == {bench_async.UVLOOP_NOT_INSTALLED}
            assert all(row.name.endswith(" on uvloop") for row in skipped)
        else:
            assert not skipped
        assert any(row.database == _sql.POSTGRES for row in report.comparisons)

    @pytest.mark.skipif(not ESOURCING_MISSING, reason="eventsourcing is installed here")
    def test_without_eventsourcing_its_rows_are_skipped_with_the_reason(self) -> None:
        """Each workload on each database is a skipped row that says why, not an error."""
        report = Report()
        _group("eventsourcing")(report)
        _check_rows(report, "eventsourcing")
        assert all(isinstance(row, Skipped) for row in report.rows)
        assert len(report.rows) == 2 * len(bench_eventsourcing.WORKLOADS)
        assert {row.reason for row in report.rows if isinstance(row, Skipped)} == {
            "eventsourcing not installed (nox -s bench installs it)"
        }

    @pytest.mark.postgres
    @pytest.mark.skipif(ESOURCING_MISSING, reason="eventsourcing is not installed here")
    @pytest.mark.usefixtures("on_test_postgres")
    def test_with_eventsourcing_every_row_is_measured(self) -> None:
        """With the peer library installed, both databases' rows are measured."""
        report = Report()
        _group("eventsourcing")(report)
        _check_rows(report, "eventsourcing")
        assert not [row for row in report.rows if isinstance(row, Skipped)]

    def test_a_smoke_run_leaves_the_results_file_alone(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """``python -m benchmarks`` in a smoke run prints the table and writes no results."""
        results = tmp_path / "latest.json"
        monkeypatch.setattr(bench_main, "RESULTS", results)
        bench_main.main(["model"])
        printed = capsys.readouterr().out
        assert "| value object | construct (with validation) |" in printed
        assert f"smoke run ({SMOKE_VARIABLE} set)" in printed
        assert not results.exists()


def test_without_the_variable_a_comparison_runs_its_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a smoke run, ``compare`` keeps the rounds it is asked for."""
    from benchmarks._harness import compare

    monkeypatch.delenv(SMOKE_VARIABLE, raising=False)
    row: Comparison = compare("g", "n", int, int, rounds=5, seconds=0.0, max_rounds=5)
    assert row.rounds == 5
    monkeypatch.setenv(SMOKE_VARIABLE, "0")
    assert compare("g", "n", int, int, rounds=5, seconds=0.0, max_rounds=5).rounds == 5
