"""The scaling benchmarks' worker processes: replies, CPU figures, and tiny runs that make rows.

Nothing here is timed: the tiny runs check that 1 and 2 relay and consumer processes
drain their events and that every row of the table is made (measured, or skipped with the
reason when a broker is missing), on this suite's own PostgreSQL database.
"""

from __future__ import annotations

import os
import sys
import time

import pika
import pytest
from benchmarks._harness import Comparison, Report, Skipped
from tests.conftest import require_server
from tests.postgres import postgres_url

import sqlalchemy as sa
from benchmarks import _processes, _sql, bench_consumers, bench_relay
from tactical import JsonCodec


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class TestWorkers:
    def test_a_reply_is_read_and_a_silent_worker_times_out(self) -> None:
        """reply() returns a worker's line, and raises instead of waiting for ever."""
        worker = _processes.spawn("tests.benchmarks._echo")
        try:
            _processes.send([worker], "hello")
            assert _processes.reply(worker, timeout=60) == "hello"
            with pytest.raises(TimeoutError, match="did not answer"):
                _processes.reply(worker, timeout=0.2)
        finally:
            _processes.stop([worker])
        assert worker.returncode == 0

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
    def test_cpu_seconds_count_a_process_s_work(self) -> None:
        """The CPU seconds read from /proc grow by what the process spent."""
        before = _processes.cpu_seconds([os.getpid()])
        _burn(0.3)
        assert _processes.cpu_seconds([os.getpid()]) - before >= 0.2
        assert _processes.cpu_seconds([2**22 + 1]) == 0  # a process that does not exist

    @pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
    def test_a_window_measures_its_processes_and_the_machine(self) -> None:
        """A Window gives the wall time, each group's CPU seconds and the machine's cores."""
        with _processes.Window({"this": [os.getpid()]}) as window:
            _burn(0.3)
        assert window.wall >= 0.3
        assert window.used["this"] >= 0.2
        assert 0 < window.machine_cores <= _processes.CORES + 0.01


class TestNotes:
    def _drains(self, seconds: float, cpu: float, machine: float) -> list[_processes.Drain]:
        return [_processes.Drain(seconds, {"workers": cpu, "broker": 0.0}, machine)] * 3

    def test_the_limit_names_the_process_s_core_the_machine_or_waiting(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One busy process is bound by its core; more on a full machine by the machine."""
        monkeypatch.setattr(_processes, "CORES", 2)
        said = _processes.limit(
            "relays",
            {
                1: self._drains(1.0, 0.9, 1.0),
                2: self._drains(0.6, 0.6, 2.0),
                4: self._drains(1.0, 0.2, 0.4),
            },
        )
        assert said.startswith("relays, what held them back: 1: their own CPU (0.9 of the 1")
        assert "2: the machine's CPU (2.0 of 2 cores busy, 1.0 theirs)" in said
        assert "4: waiting (0.2 of 2 core(s) busy, the machine 0.4)" in said

    def test_a_description_gives_the_rate_and_the_cpu_per_event(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Events per second, CPU microseconds per event, and the rate idle cores allow."""
        monkeypatch.setattr(_processes, "CORES", 2)
        said = _processes.describe(2, "relays", self._drains(0.5, 0.2, 1.5), 1000)
        assert said.startswith("2 relays: 2,000 events/s (0.50s for 1,000)")
        assert "CPU us per event: workers 200, broker 0" in said
        assert "at most 10,000 events/s" in said


class TestSettled:
    def test_consumers_settle_on_a_fair_split_of_every_partition(self) -> None:
        """4/4 of 8 for two, 2 each for four, 3/3/2 for three, 8 for one."""
        halves = [frozenset({0, 2, 4, 6}), frozenset({1, 3, 5, 7})]
        assert bench_consumers.settled(halves, 8)
        assert bench_consumers.settled([frozenset(range(8))], 8)
        pairs = [frozenset({p, p + 4}) for p in range(4)]
        assert bench_consumers.settled(pairs, 8)
        assert bench_consumers.settled(
            [frozenset({0, 1, 2}), frozenset({3, 4, 5}), frozenset({6, 7})], 8
        )

    def test_one_consumer_with_all_a_missing_or_a_doubly_held_partition_is_not_settled(
        self,
    ) -> None:
        """More than a fair share, a partition nobody holds, or one held twice: not yet."""
        assert not bench_consumers.settled([frozenset(range(8)), frozenset()], 8)
        assert not bench_consumers.settled([frozenset({0, 1, 2, 3}), frozenset({4, 5, 6})], 8)
        assert not bench_consumers.settled([frozenset({0, 1, 2, 3}), frozenset({3, 4, 5, 6})], 8)
        assert not bench_consumers.settled([frozenset({0, 1}), frozenset({2, 3})] * 2, 8)


@pytest.mark.rabbitmq
@pytest.mark.slow  # two consumer processes
class TestSettlingOnRabbitMQ:
    def test_once_settled_every_partition_queue_is_bound_and_consumed_by_one_process(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After settle(), each of the 8 queues exists with one consumer: a publish is routed."""
        require_server("RabbitMQ", 5672)
        url = postgres_url().render_as_string(hide_password=False)
        monkeypatch.setattr(_sql, "POSTGRES_URL", url)
        engine = sa.create_engine(url)  # the workers connect only to handle a message
        consumers = bench_consumers._Consumers("rabbitmq", 2, engine)  # pyright: ignore[reportPrivateUsage]
        try:
            consumers.wait_ready()
            consumers.settle()
            connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
            channel = connection.channel()
            counts = [
                channel.queue_declare(f"{consumers.name}.{p}", passive=True).method.consumer_count
                for p in range(bench_consumers.PARTITIONS)
            ]
            connection.close()
        finally:
            consumers.stop()
            bench_consumers._cleanup("rabbitmq", [consumers.name], [consumers.publisher])  # pyright: ignore[reportPrivateUsage]
            engine.dispose()
        assert counts == [1] * 8
        assert sorted(len(held) for held in consumers.split) == [4, 4]


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks on the suite's database: a few events, one round, 1 and 2 processes."""
    url = postgres_url().render_as_string(hide_password=False)
    monkeypatch.setattr(_sql, "POSTGRES_URL", url)
    monkeypatch.setattr(bench_relay, "SCALING_EVENTS", 120)
    monkeypatch.setattr(bench_relay, "WARM_UP_EVENTS", 16)
    monkeypatch.setattr(bench_relay, "SCALING_ROUNDS", 1)
    monkeypatch.setattr(bench_relay, "COUNTS", (1, 2))
    monkeypatch.setattr(bench_consumers, "COUNTS", (1, 2))
    monkeypatch.setattr(bench_consumers, "MIN_EVENTS", 60)
    monkeypatch.setattr(bench_consumers, "MAX_EVENTS", 60)
    monkeypatch.setattr(bench_consumers, "WARM_UP_EVENTS", 8)
    monkeypatch.setattr(bench_consumers, "ROUNDS", 1)


def _rows(report: Report, text: str) -> list[Comparison | Skipped]:
    return [row for row in report.rows if text in row.name]


@pytest.mark.postgres
@pytest.mark.usefixtures("tiny")
class TestTinyRuns:
    def test_relay_processes_drain_the_outbox_and_make_every_row(self) -> None:
        """1 and 2 relay processes drain it to each destination; 2 make a row for each."""
        report = Report()
        codec = JsonCodec()
        bench_relay._partitioned(report, codec, bench_relay._rows(codec))  # pyright: ignore[reportPrivateUsage]
        for destination in ("nowhere", "Redis Streams", "RabbitMQ"):
            rows = _rows(report, f"relay processes, to {destination}")
            assert [row.name.split(", ")[2] for row in rows] == ["2 relay processes"]
            if destination == "nowhere":
                assert all(isinstance(row, Comparison) for row in rows)
        measured = [row for row in report.rows if isinstance(row, Comparison)]
        assert all(row.against == "1 relay process" and row.ratio > 0 for row in measured)
        assert any("1 relay process(es) to nowhere:" in note for note in report.notes)
        assert any("busiest relay's partitions held" in note for note in report.notes)

    @pytest.mark.slow  # OS processes on both brokers (about a minute)
    def test_consumer_processes_drain_the_streams_and_make_every_row(self) -> None:
        """1 and 2 consumer processes per broker: a row for 2 (or a skipped one) each."""
        report = Report()
        bench_consumers.run(report)
        for broker in ("redis", "rabbitmq"):
            rows = _rows(report, f", {broker}, ")
            assert [row.name.split(", ")[2] for row in rows] == ["2 consumer processes"]
        measured = [row for row in report.rows if isinstance(row, Comparison)]
        assert all(row.against == "1 consumer process" and row.ratio > 0 for row in measured)
        assert any("load average" in note for note in report.notes)
        for label in ("Redis Streams", "RabbitMQ"):
            held = f"consumer processes of {label}, partitions held: 1: 8 (seen settled "
            assert any(note.startswith(held) and "; 2: 4/4 (" in note for note in report.notes)
