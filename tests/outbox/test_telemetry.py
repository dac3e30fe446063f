"""OpenTelemetry: spans from commit to consumer, one trace across processes, metrics, no-op."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from tests.outbox.brokers import Broker
from tests.outbox.helpers import (
    CounterMirrored,
    Flaky,
    RecordingPublisher,
    commit_ticks,
    make_consumer,
    relayed,
    side_consumer,
)
from tests.outbox.sides import Side
from tests.telemetry import Telemetry, otel

import sqlalchemy as sa
from tactical import Command, CommandBus, EventBus, JsonCodec
from tactical.outbox import OutboxMessage, OutboxRelay, Outcome, UndeliverableError
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table
from tactical.testing import Counter, CounterTicked, MovableClock

__all__ = ["otel"]

ROOT = Path(__file__).resolve().parents[2]
TICKED = JsonCodec().type_name(CounterTicked)


class OpenCounter(Command[UUID]):
    """Open a counter ticked once (the commit writes one outbox row)."""

    name: str


def open_counter(engine: sa.Engine, command: OpenCounter) -> UUID:
    """The command's handler: one unit of work, one commit."""
    with SqlAlchemyUnitOfWork(engine) as uow:
        counter = Counter(uuid4(), command.name)
        counter.tick()
        uow.repository(Counter).add(counter)
        uow.commit()
    return counter.id


def stored_contexts(engine: sa.Engine) -> list[str | None]:
    with engine.connect() as connection:
        return list(
            connection.scalars(
                sa.select(outbox_table.c.trace_context).order_by(outbox_table.c.position)
            )
        )


def traceparent(trace_id: int, span_id: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-01"


def ids(header: str | None) -> tuple[int, int]:
    """The trace id and span id a W3C traceparent names."""
    assert header is not None
    _, trace_id, span_id, _ = header.split("-")
    return int(trace_id, 16), int(span_id, 16)


class TestCommit:
    def test_commit_is_a_span_with_its_aggregate_and_events(
        self, otel: Telemetry, engine: sa.Engine
    ) -> None:
        """A commit's span names the aggregate written and the events recorded."""
        (counter_id,) = commit_ticks(engine, counters=1, ticks=2)
        (commit,) = otel.spans("commit")
        attributes = dict(commit.attributes or {})
        assert attributes["tactical.aggregate.type"] == "Counter"
        assert attributes["tactical.aggregate.id"] == str(counter_id)
        assert attributes["tactical.aggregate.count"] == 1
        assert attributes["tactical.event.count"] == 2
        assert attributes["tactical.event.types"] == ("CounterTicked", "CounterTicked")
        assert "tactical.correlation_id" not in attributes  # outside a handler: one per event

    def test_async_and_in_memory_commits_are_spans_too(
        self, otel: Telemetry, tmp_path: Path
    ) -> None:
        """The async SQL and the in-memory units of work share the commit and its span."""
        import asyncio

        from sqlalchemy.ext.asyncio import create_async_engine

        from tactical import InMemoryUnitOfWork
        from tactical.sqlalchemy import AsyncSqlAlchemyUnitOfWork, create_schema

        in_memory, in_sql = Counter(uuid4(), "m"), Counter(uuid4(), "s")
        with InMemoryUnitOfWork() as uow:
            uow.repository(Counter).add(in_memory)
            uow.commit()
        path = tmp_path / "async.sqlite3"
        schema_engine = sa.create_engine(f"sqlite:///{path}")
        create_schema(schema_engine)
        schema_engine.dispose()  # its pooled connection closed, not left to the collector

        async def commit_async() -> None:
            engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
            try:
                async with AsyncSqlAlchemyUnitOfWork(engine) as uow:
                    in_sql.tick()
                    uow.repository(Counter).add(in_sql)
                    await uow.commit()
            finally:
                await engine.dispose()

        asyncio.run(commit_async())
        commits = [dict(c.attributes or {}) for c in otel.spans("commit")]
        assert [c["tactical.aggregate.id"] for c in commits] == [str(in_memory.id), str(in_sql.id)]
        assert [c["tactical.event.count"] for c in commits] == [0, 1]

    def test_outbox_rows_store_the_commits_trace_context(
        self, otel: Telemetry, engine: sa.Engine
    ) -> None:
        """Each outbox row holds the W3C traceparent of the commit span that wrote it."""
        commit_ticks(engine, counters=2, ticks=1)
        commits = otel.spans("commit")
        expected = [(c.context.trace_id, c.context.span_id) for c in commits]  # pyright: ignore[reportOptionalMemberAccess]
        stored = [json.loads(c or "null") for c in stored_contexts(engine)]
        assert [ids(c["traceparent"]) for c in stored] == expected

    def test_commit_inside_a_request_span_is_its_child(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """The application's current span is the commit span's parent: one trace."""
        from opentelemetry import trace

        with trace.get_tracer("app").start_as_current_span("request") as request:
            commit_ticks(sqlite_engine, counters=1, ticks=1)
        (commit,) = otel.spans("commit")
        assert commit.parent is not None
        assert commit.parent.span_id == request.get_span_context().span_id
        assert commit.context.trace_id == request.get_span_context().trace_id  # pyright: ignore[reportOptionalMemberAccess]

    def test_failed_commit_span_records_the_error(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """A commit refused by a stale version ends its span with an error status."""
        (counter_id,) = commit_ticks(sqlite_engine, counters=1, ticks=1)
        stale = SqlAlchemyUnitOfWork(sqlite_engine)
        with stale:
            counter = stale.repository(Counter).require(counter_id)
            commit_ticks_same = SqlAlchemyUnitOfWork(sqlite_engine)
            with commit_ticks_same:
                commit_ticks_same.repository(Counter).require(counter_id).tick()
                commit_ticks_same.commit()
            counter.tick()
            with pytest.raises(Exception, match="version"):
                stale.commit()
        failed = otel.spans("commit")[-1]
        assert not failed.status.is_ok
        assert failed.events[0].name == "exception"


class TestHandlers:
    def test_each_bus_handler_run_is_a_span_in_the_dispatchers_trace(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """Every handler of a committed event runs in its own span, child of the request's."""
        from opentelemetry import trace

        bus = EventBus()
        seen: list[int] = []

        def first(event: CounterTicked) -> None:
            seen.append(event.count)

        def second(event: CounterTicked) -> None:
            raise ValueError(f"cannot take count {event.count}")

        bus.subscribe(CounterTicked, first)
        bus.subscribe(CounterTicked, second)

        def open_counter() -> None:
            with SqlAlchemyUnitOfWork(sqlite_engine, bus) as uow:
                counter = Counter(uuid4(), "c")
                counter.tick()
                uow.repository(Counter).add(counter)
                uow.commit()

        with (
            trace.get_tracer("app").start_as_current_span("request") as request,
            pytest.raises(Exception, match="event handler"),
        ):
            open_counter()
        handled = otel.spans("handle CounterTicked")
        assert [dict(s.attributes or {})["tactical.handler"] for s in handled] == [
            first.__qualname__,
            second.__qualname__,
        ]
        (commit,) = otel.spans("commit")
        assert {s.context.trace_id for s in handled} == {commit.context.trace_id}  # pyright: ignore[reportOptionalMemberAccess]
        assert {s.parent.span_id for s in handled if s.parent} == {
            request.get_span_context().span_id
        }
        assert [s.status.is_ok for s in handled] == [True, False]
        attributes = dict(handled[0].attributes or {})
        assert attributes["tactical.event.id"] == attributes["tactical.correlation_id"]

    def test_a_commands_handler_runs_in_a_span_the_commit_is_a_child_of(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """dispatch and dispatch_async: a handle <Command> span, parent of the handler's commit."""
        import asyncio

        bus = CommandBus()
        bus.register(OpenCounter, functools.partial(open_counter, sqlite_engine))
        first = bus.dispatch(OpenCounter("a"))
        second = asyncio.run(bus.dispatch_async(OpenCounter("b")))
        handled = otel.spans("handle OpenCounter")
        commits = otel.spans("commit")
        assert len(handled) == len(commits) == 2
        for span, commit in zip(handled, commits, strict=True):
            assert commit.parent is not None
            assert commit.parent.span_id == span.context.span_id  # pyright: ignore[reportOptionalMemberAccess]
            attributes = dict(span.attributes or {})
            assert attributes["tactical.command.type"] == "OpenCounter"
            assert attributes["tactical.command.id"] == attributes["tactical.correlation_id"]
            assert attributes["tactical.handler"] == "open_counter"
            committed = dict(commit.attributes or {})
            assert committed["tactical.correlation_id"] == attributes["tactical.command.id"]
            assert committed["tactical.causation_id"] == attributes["tactical.command.id"]
        assert {dict(c.attributes or {})["tactical.aggregate.id"] for c in commits} == {
            str(first),
            str(second),
        }

    def test_a_failing_command_handler_ends_its_span_with_the_error(self, otel: Telemetry) -> None:
        """The handler's exception propagates as it is, and its span says so."""
        bus = CommandBus()

        def refuse(command: OpenCounter) -> UUID:
            raise ValueError(f"no counter named {command.name!r}")

        bus.register(OpenCounter, refuse)
        with pytest.raises(ValueError, match="no counter named 'x'"):
            bus.dispatch(OpenCounter("x"))
        (span,) = otel.spans("handle OpenCounter")
        assert not span.status.is_ok
        assert span.events[0].name == "exception"


class TestRelayAndInbox:
    def test_relay_publish_span_continues_the_commit_and_links_it(
        self, otel: Telemetry, engine: sa.Engine, side: Side
    ) -> None:
        """Sync and async: one commit's batch is published in a producer child of the commit."""
        commit_ticks(engine, counters=1, ticks=2)
        publisher = RecordingPublisher()
        assert side.relay(engine, publisher).relay_once() == 2
        messages = publisher.published
        (commit,) = otel.spans("commit")
        (publish,) = otel.spans("publish")
        assert publish.kind.name == "PRODUCER"
        assert publish.parent is not None
        assert publish.parent.span_id == commit.context.span_id  # pyright: ignore[reportOptionalMemberAccess]
        assert [link.context.span_id for link in publish.links] == [commit.context.span_id]  # pyright: ignore[reportOptionalMemberAccess]
        attributes = dict(publish.attributes or {})
        assert attributes["messaging.operation.type"] == "send"
        assert attributes["messaging.batch.message_count"] == 2
        assert {ids(m.traceparent) for m in messages} == {
            (commit.context.trace_id, commit.context.span_id)  # pyright: ignore[reportOptionalMemberAccess]
        }

    def test_inbox_handling_continues_the_producers_trace(
        self, otel: Telemetry, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Sync and async: the consumer's span is the commit's child; its handler's commit, its own."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        (producer_commit,) = otel.spans("commit")
        assert side_consumer(side, consumer_engine).handle(message) is Outcome.HANDLED
        (process,) = otel.spans(f"process {TICKED}")
        assert process.kind.name == "CONSUMER"
        assert process.parent is not None
        assert process.parent.is_remote
        assert process.parent.span_id == producer_commit.context.span_id  # pyright: ignore[reportOptionalMemberAccess]
        attributes = dict(process.attributes or {})
        assert attributes["messaging.message.id"] == str(message.event_id)
        assert attributes["messaging.operation.type"] == "process"
        assert attributes["messaging.consumer.group.name"] == "mirror"
        assert attributes["tactical.outcome"] == "handled"
        assert attributes["tactical.correlation_id"] == str(message.correlation_id)
        (handler,) = otel.spans("handle CounterTicked")  # each handler's run, as on a bus
        assert handler.parent is not None
        assert handler.parent.span_id == process.context.span_id  # pyright: ignore[reportOptionalMemberAccess]
        handler_attributes = dict(handler.attributes or {})
        assert handler_attributes["tactical.event.id"] == str(message.event_id)
        assert handler_attributes["tactical.correlation_id"] == str(message.correlation_id)
        assert handler_attributes["tactical.handler"]
        consumer_commit = otel.spans("commit")[-1]
        assert consumer_commit.parent is not None
        assert consumer_commit.parent.span_id == process.context.span_id  # pyright: ignore[reportOptionalMemberAccess]
        (mirrored,) = relayed(consumer_engine)
        assert ids(mirrored.traceparent) == (
            process.context.trace_id,  # pyright: ignore[reportOptionalMemberAccess]
            consumer_commit.context.span_id,  # pyright: ignore[reportOptionalMemberAccess]
        )

    def test_duplicate_is_a_span_with_its_outcome(
        self, otel: Telemetry, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A message delivered twice: the second span says duplicate."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        consumer = make_consumer(consumer_engine)
        consumer.handle(message)
        consumer.handle(message)
        outcomes = [
            dict(s.attributes or {})["tactical.outcome"] for s in otel.spans(f"process {TICKED}")
        ]
        assert outcomes == ["handled", "duplicate"]


class _Counter:
    def __init__(self) -> None:
        self.added: list[int] = []

    def add(self, amount: int) -> None:
        self.added.append(amount)


class _Meter:
    """A meter's one method the relay's counters use; it keeps what it made, not the reverse."""

    def __init__(self) -> None:
        self.made: list[_Counter] = []

    def create_counter(self, name: str, *, unit: str, description: str) -> _Counter:
        self.made.append(_Counter())
        return self.made[-1]


class TestMetrics:
    def test_relay_records_backlog_lag_publish_duration_and_count(
        self, otel: Telemetry, engine: sa.Engine, side: Side
    ) -> None:
        """Sync and async: a batch's backlog and oldest row's age, then duration and count."""
        commit_ticks(engine, counters=3, ticks=1)
        relay = side.relay(engine, RecordingPublisher(), batch_size=2)
        assert relay.relay_once() == 2
        metrics = otel.metrics()
        assert [p.value for p in metrics["tactical.outbox.backlog"]] == [3]
        assert metrics["tactical.outbox.lag"][0].value >= 0
        assert [p.count for p in metrics["tactical.outbox.publish.duration"]] == [1]
        assert [p.value for p in metrics["tactical.outbox.published"]] == [2]
        assert relay.relay_once() == 1
        assert [p.value for p in otel.metrics()["tactical.outbox.backlog"]] == [1]

    def test_a_failed_publish_is_timed_with_its_error_type_and_retried(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """A relay's failed attempt is a duration point with error.type; the retry, without."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        relay = OutboxRelay(sqlite_engine, RecordingPublisher(failures=1))
        with pytest.raises(ConnectionError, match="injected"):
            relay.relay_once()
        assert relay.relay_once() == 1
        durations = {
            tuple(sorted(dict(p.attributes).items())): p.count
            for p in otel.metrics()["tactical.outbox.publish.duration"]
        }
        assert durations == {(("error.type", "ConnectionError"),): 1, (): 1}
        failed = otel.spans("publish")[0]
        assert not failed.status.is_ok

    def test_relay_counts_the_rows_it_parks(
        self, otel: Telemetry, sqlite_engine: sa.Engine
    ) -> None:
        """A row the publisher refuses for good is parked and counted; the other is published."""
        commit_ticks(sqlite_engine, counters=2, ticks=1)
        refused: list[int] = []

        class Refusing:
            def publish(self, messages: Sequence[OutboxMessage], /) -> None:
                if not refused:
                    refused.append(messages[0].position)
                if messages[0].position in refused:
                    raise UndeliverableError({messages[0].position: "refused for the test"})

        assert OutboxRelay(sqlite_engine, Refusing()).relay_once() == 1
        metrics = otel.metrics()
        assert [p.value for p in metrics["tactical.outbox.parked"]] == [1]
        assert [p.value for p in metrics["tactical.outbox.published"]] == [1]

    def test_a_meter_where_a_dead_one_was_gets_instruments_of_its_own(self) -> None:
        """A new meter's counts reach it, though it is allocated where a dead meter was.

        The instruments were cached by ``id(meter)``: a meter allocated where a freed one had
        been got the freed one's counter, and its counts were lost (a relay test once found
        no ``tactical.outbox.published`` at all: an earlier test's meter had counted it).
        CPython gives an object of a size the address of the last one of that size freed.
        """
        from tactical.outbox import _telemetry

        name = "tactical.outbox.published"
        first = _Meter()
        _telemetry._instrument(first, name).add(1)  # pyright: ignore[reportPrivateUsage]
        del first
        second = _Meter()
        _telemetry._instrument(second, name).add(2)  # pyright: ignore[reportPrivateUsage]
        assert [counter.added for counter in second.made] == [[2]]

    def test_inbox_records_duration_retries_and_parked(
        self, otel: Telemetry, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A handler failing every time: retries counted, the message parked, durations kept."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        consumer = make_consumer(consumer_engine, "failing", max_attempts=3, retry_delay=0)
        consumer.subscribe(CounterTicked, Flaky(failures=10))
        assert consumer.handle(message) is Outcome.PARKED
        metrics = otel.metrics()
        assert sum(p.value for p in metrics["tactical.inbox.retries"]) == 2
        assert [p.value for p in metrics["tactical.inbox.parked"]] == [1]
        (duration,) = metrics["tactical.inbox.handle.duration"]
        assert dict(duration.attributes) == {
            "tactical.consumer": "failing",
            "tactical.outcome": "parked",
        }


def consume_in_another_process(broker: Broker, database: Path, names: list[str]) -> Any:
    """Run :mod:`tests.outbox.otel_consumer` in a fresh interpreter; what it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.outbox.otel_consumer", broker.name, *names, str(database)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        # A fresh interpreter importing the SDK, SQLAlchemy and a broker client, under
        # coverage, on a loaded CI machine: seen beyond 60 s.
        timeout=240,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


class TestTimersAndPartitions:
    def test_timer_firing_is_a_span_that_its_messages_continue(
        self, otel: Telemetry, engine: sa.Engine, side: Side
    ) -> None:
        """Sync and async: a fired timer's batch is a span; its outbox row carries its trace."""
        clock = MovableClock()
        with SqlAlchemyUnitOfWork(engine) as uow:
            uow.schedule(CounterTicked(uuid4(), 1), at=clock.now() + timedelta(days=1), key="t-1")
            uow.commit()
        clock.advance(timedelta(days=2))
        assert side.timer_worker(engine, clock=clock).fire_due() == 1
        (fire,) = otel.spans("fire timers")
        attributes = dict(fire.attributes or {})
        assert attributes["tactical.timer.keys"] == ("t-1",)
        assert attributes["tactical.timer.count"] == 1
        (stored,) = stored_contexts(engine)
        assert stored is not None
        assert ids(json.loads(stored)["traceparent"]) == (
            fire.context.trace_id,  # pyright: ignore[reportOptionalMemberAccess]
            fire.context.span_id,  # pyright: ignore[reportOptionalMemberAccess]
        )
        assert [p.value for p in otel.metrics()["tactical.timer.fired"]] == [1]

    @pytest.mark.postgres
    def test_a_partitioned_relay_records_which_partitions_it_owns(
        self, otel: Telemetry, postgres_engine: sa.Engine, side: Side
    ) -> None:
        """Sync and async: one gauge point per partition, 1 where the relay owns it, else 0."""
        relay = side.relay(postgres_engine, RecordingPublisher(), partitions=4, name="relay-a")
        relay.relay_once()
        points = otel.metrics()["tactical.relay.partition.owned"]
        owned = {
            dict(p.attributes)["tactical.partition"]: p.value
            for p in points
            if dict(p.attributes)["tactical.relay.name"] == "relay-a"
        }
        assert set(owned) == {0, 1, 2, 3}
        assert {partition for partition, value in owned.items() if value == 1} == set(
            relay.owned_partitions
        )
        assert relay.owned_partitions


@pytest.mark.slow
class TestAcrossProcesses:
    def test_a_command_and_its_remote_handler_form_one_trace(
        self, otel: Telemetry, broker: Broker, request: pytest.FixtureRequest, tmp_path: Path
    ) -> None:
        """Request, command, commit, publish here; delivery, handling, commit in another process."""
        from opentelemetry import trace

        producer = sa.create_engine(f"sqlite:///{tmp_path / 'producer.sqlite3'}")
        from tactical.sqlalchemy import create_schema

        create_schema(producer)
        bus = CommandBus()
        bus.register(OpenCounter, functools.partial(open_counter, producer))
        with trace.get_tracer("app").start_as_current_span("request") as span:
            bus.dispatch(OpenCounter("c"))
        request_context = span.get_span_context()
        (command,) = otel.spans("handle OpenCounter")
        assert command.parent is not None
        assert command.parent.span_id == request_context.span_id
        publisher = broker.publisher(broker.port)
        assert OutboxRelay(producer, publisher).relay_once() == 1
        producer.dispose()
        if broker.name == "rabbitmq":
            rabbit = request.getfixturevalue("rabbit")
            names = [rabbit.exchange, rabbit.queue]
        else:
            names = [request.getfixturevalue("stream_name"), "-"]
        remote = consume_in_another_process(broker, tmp_path / "consumer.sqlite3", names)
        assert remote["handled"] == 1
        spans = {s["name"]: s for s in remote["spans"]}
        process, remote_commit = spans[f"process {TICKED}"], spans["commit"]
        (commit,) = otel.spans("commit")
        assert commit.parent is not None
        assert commit.parent.span_id == command.context.span_id  # pyright: ignore[reportOptionalMemberAccess]
        assert {process["trace_id"], remote_commit["trace_id"]} == {request_context.trace_id}
        assert (process["parent_id"], process["remote_parent"]) == (commit.context.span_id, True)  # pyright: ignore[reportOptionalMemberAccess]
        assert remote_commit["parent_id"] == process["span_id"]
        assert process["kind"] == "CONSUMER"
        assert process["attributes"]["messaging.system"] == broker.name
        assert process["attributes"]["messaging.destination.name"] == (
            f"{names[0]}:{TICKED}:{names[1]}" if broker.name == "rabbitmq" else names[0]
        )
        assert process["attributes"]["tactical.aggregate.type"] == JsonCodec().type_name(Counter)
        command_id = dict(command.attributes or {})["tactical.command.id"]
        assert process["attributes"]["tactical.causation_id"] == command_id
        assert process["attributes"]["tactical.correlation_id"] == command_id
        assert remote_commit["attributes"]["tactical.event.types"] == [CounterMirrored.__qualname__]


class TestWithoutSdk:
    def test_no_sdk_no_opentelemetry_import_and_no_trace_context(self, tmp_path: Path) -> None:
        """Without an SDK tactical never imports opentelemetry and the outbox column stays NULL."""
        script = f"""
import sys
from uuid import uuid4
import sqlalchemy as sa
from tactical import EventBus
from tactical.outbox import EventBusPublisher, OutboxRelay
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, create_schema
from tactical.testing import Counter
engine = sa.create_engine("sqlite:///{tmp_path / "db.sqlite3"}")
create_schema(engine)
def relayed():
    sent = []
    class Keep:
        def publish(self, messages):
            sent.extend(messages)
    OutboxRelay(engine, Keep()).relay_once()
    return sent
def tick():
    with SqlAlchemyUnitOfWork(engine) as uow:
        counter = Counter(uuid4(), "c")
        counter.tick()
        uow.repository(Counter).add(counter)
        uow.commit()
tick()
(message,) = relayed()
imported = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
import opentelemetry.trace  # the API alone, as redis 6+ imports it: still no SDK
tick()
(second,) = relayed()
print(imported, message.traceparent, second.traceparent, "traceparent" in second.headers)
"""
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["[]", "None", "None", "False"]

    def test_message_without_trace_context_has_no_trace_headers(self) -> None:
        """The wire form carries traceparent and tracestate only when the row had them."""
        plain = relayed_message()
        assert not {"traceparent", "tracestate"} & set(plain.headers)
        traced = relayed_message(traceparent=traceparent(1, 2), tracestate="k=v")
        assert (traced.headers["traceparent"], traced.headers["tracestate"]) == (
            traceparent(1, 2),
            "k=v",
        )
        back = OutboxMessage.from_wire(traced.body, traced.headers)
        assert (back.traceparent, back.tracestate) == (traceparent(1, 2), "k=v")


def relayed_message(**trace: Any) -> OutboxMessage:
    from datetime import UTC, datetime

    return OutboxMessage(
        position=1,
        event_id=uuid4(),
        event_type="Thing",
        event_version=1,
        aggregate_type="Agg",
        aggregate_id="1",
        aggregate_version=1,
        payload={},
        occurred_at=datetime.now(UTC),
        **trace,
    )
