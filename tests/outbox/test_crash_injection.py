"""Crashes injected at random points of the pipeline, then a restart: each event counts once.

The pipeline is writer commit -> relay publish -> relay mark -> consumer handle -> inbox
commit -> ack, over SQLite files for the writing and the consuming service and the real
RabbitMQ between them. Hypothesis draws a sequence of commands over a few counters
(committed or abandoned), relay batches and consumer runs, and the points where a component
dies (its process would; here a :class:`Crash` that nothing in tactical catches). The dead
component is restarted as a new process would be; at the end everything is drained.

The relay and the consumer are the sync :class:`OutboxRelay` and :class:`RabbitMQConsumer`
(pika) with :class:`InboxConsumer`, or the :class:`AsyncOutboxRelay` and
:class:`AsyncRabbitMQConsumer` (aio-pika) with :class:`AsyncInboxConsumer` (aiosqlite), in the
same pipeline: the writer is the sync unit of work either way, so the async relay reads what a
sync service wrote.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pika
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from tests.conftest import require_server
from tests.outbox.brokers import AMQP_URL
from tests.outbox.helpers import mirroring, mirrors, pending_count
from tests.outbox.sides import AsyncSide, Behaviour, DrivenConsumer, Relay, Side, SyncSide

import sqlalchemy as sa
from sqlalchemy import event
from tactical import JsonCodec
from tactical._flow import Flow
from tactical.outbox import (
    AsyncInboxConsumer,
    InboxConsumer,
    OutboxMessage,
    Outcome,
    dead_letters_table,
    inbox_table,
)
from tactical.outbox.rabbitmq import (
    AsyncRabbitMQConsumer,
    AsyncRabbitMQPublisher,
    RabbitMQConsumer,
    RabbitMQPublisher,
)
from tactical.sqlalchemy import (
    AsyncSqlAlchemyUnitOfWork,
    SqlAlchemyUnitOfWork,
    create_schema,
    outbox_table,
)
from tactical.testing import Counter, CounterTicked

TICKED = JsonCodec().type_name(CounterTicked)

WRITER_COMMIT = "writer commit"  # a statement of the writer's commit (nothing committed)
WRITER_RETURN = "writer return"  # after the commit, before the service returned
RELAY_PUBLISH = "relay publish"  # half the batch sent, the rest never
RELAY_MARK = "relay mark"  # the broker confirmed the batch; the mark is never written
CONSUMER_HANDLE = "consumer handle"  # inside the handler, before the consumer's commit
INBOX_COMMIT = "inbox commit"  # the commit of handler changes and inbox row is refused
ACK = "ack"  # committed, never acknowledged
POINTS = (
    WRITER_COMMIT,
    WRITER_RETURN,
    RELAY_PUBLISH,
    RELAY_MARK,
    CONSUMER_HANDLE,
    INBOX_COMMIT,
    ACK,
)


class Crash(BaseException):
    """The component's process dies here: not an Exception, so no retry loop catches it."""


class CrashPlan:
    """Counts how often each point is reached and says when the component must die there."""

    def __init__(self, crashes: dict[str, int]) -> None:
        self.crashes = dict(crashes)
        self.reached = dict.fromkeys(POINTS, 0)
        self.crashed: list[str] = []

    def due(self, point: str) -> bool:
        """Whether this arrival at ``point`` is the one that crashes."""
        arrival = self.reached[point]
        self.reached[point] = arrival + 1
        if self.crashes.get(point) == arrival:
            self.crashed.append(point)
            return True
        return False

    def reach(self, point: str) -> None:
        """Die here if this arrival at ``point`` is the one planned."""
        if self.due(point):
            raise Crash(point)


def crashing(plan: CrashPlan) -> Behaviour:
    """A publisher's behaviour whose process may die in the middle of sending a batch."""

    def publish(messages: Sequence[OutboxMessage]) -> Flow[Sequence[OutboxMessage], None]:
        if plan.due(RELAY_PUBLISH):
            yield messages[: len(messages) // 2]
            raise Crash(RELAY_PUBLISH)
        yield messages

    return publish


class CrashingInbox(InboxConsumer[SqlAlchemyUnitOfWork]):
    """An inbox consumer whose process may die after handling, before the broker heard of it."""

    plan: CrashPlan

    def handle(self, message: OutboxMessage) -> Outcome:
        outcome = super().handle(message)
        self.plan.reach(ACK)
        return outcome


class CrashingAsyncInbox(AsyncInboxConsumer[AsyncSqlAlchemyUnitOfWork]):
    """The async inbox consumer, whose process may die after handling, before the ack."""

    plan: CrashPlan

    async def handle(self, message: OutboxMessage) -> Outcome:
        outcome = await super().handle(message)
        self.plan.reach(ACK)
        return outcome


@dataclass
class Write:
    """A service call ticking one counter (creating it first if needed), maybe abandoned."""

    counter: int
    ticks: int
    abandoned: bool


@dataclass
class Model:
    """What the test knows was committed, and what was rolled back, by the writers."""

    ticks: dict[UUID, int] = field(default_factory=dict[UUID, int])
    committed: list[UUID] = field(default_factory=list[UUID])
    rolled_back: list[UUID] = field(default_factory=list[UUID])


class Pipeline:
    """The writing service, the relay and the consuming service, each restartable."""

    def __init__(
        self, directory: Path, exchange: str, counters: int, plan: CrashPlan, side: Side
    ) -> None:
        self.side = side
        self.plan = plan
        self.exchange = exchange
        self.ids = [uuid4() for _ in range(counters)]
        self.model = Model()
        self.producer = sa.create_engine(f"sqlite:///{directory / 'producer.sqlite3'}")
        self.consumer_db = sa.create_engine(f"sqlite:///{directory / 'consumer.sqlite3'}")
        create_schema(self.producer)
        create_schema(self.consumer_db)
        self.writing = False
        event.listen(self.producer, "before_cursor_execute", self._producer_statement)
        event.listen(self.consumer_db, "commit", self._consumer_commit)
        if isinstance(side, AsyncSide):  # the async relay's and inbox's own engines
            relay_engine = side.async_engine(self.producer).sync_engine
            event.listen(relay_engine, "before_cursor_execute", self._producer_statement)
            inbox_engine = side.async_engine(self.consumer_db).sync_engine
            event.listen(inbox_engine, "commit", self._consumer_commit)
        self.publisher = self._start_publisher()
        self.relay = self._start_relay()
        self.consumer = self._start_consumer()

    # -- crash points inside the database work -------------------------------------------

    def _producer_statement(self, *args: Any) -> None:
        statement = str(args[2]).lstrip().upper()
        if self.writing and statement.startswith(("INSERT", "UPDATE")):
            self.plan.reach(WRITER_COMMIT)
        elif statement.startswith("UPDATE TACTICAL_OUTBOX"):
            self.plan.reach(RELAY_MARK)

    def _consumer_commit(self, *args: Any) -> None:
        self.plan.reach(INBOX_COMMIT)

    # -- components ------------------------------------------------------------------------

    def _start_publisher(self) -> Any:
        if isinstance(self.side, AsyncSide):
            return AsyncRabbitMQPublisher(AMQP_URL, exchange=self.exchange, declare=False)
        return RabbitMQPublisher(AMQP_URL, exchange=self.exchange, declare=False)

    def _close_publisher(self) -> None:
        closed = self.publisher.close()
        if isinstance(self.side, AsyncSide):
            self.side.call(closed)

    def _start_relay(self) -> Relay:
        publisher = self.side.wrap(self.publisher, crashing(self.plan))
        return self.side.relay(self.producer, publisher, batch_size=4)

    def _start_consumer(self) -> Any:
        def handle(ticked: CounterTicked, uow: Any) -> Flow[Any, None]:
            self.plan.reach(CONSUMER_HANDLE)
            yield from mirroring(ticked, uow)

        options: dict[str, Any] = {"queue": self.exchange, "exchange": self.exchange}
        if isinstance(self.side, AsyncSide):
            database = self.side.async_engine(self.consumer_db)
            async_inbox = CrashingAsyncInbox(lambda: AsyncSqlAlchemyUnitOfWork(database), "mirror")
            async_inbox.plan = self.plan
            async_inbox.subscribe(CounterTicked, self.side.handler(handle))
            return DrivenConsumer(
                self.side, AsyncRabbitMQConsumer(async_inbox, AMQP_URL, **options)
            )
        inbox = CrashingInbox(lambda: SqlAlchemyUnitOfWork(self.consumer_db), "mirror")
        inbox.plan = self.plan
        inbox.subscribe(CounterTicked, self.side.handler(handle))
        return RabbitMQConsumer(inbox, AMQP_URL, **options)

    def write(self, command: Write) -> None:
        """Run one service call; a crash of the writer loses the call, nothing else."""
        counter_id = self.ids[command.counter]
        recorded: list[UUID] = []
        committed = False
        try:
            with SqlAlchemyUnitOfWork(self.producer) as uow:
                counters = uow.repository(Counter)
                counter = counters.get(counter_id)
                if counter is None:
                    counter = Counter(counter_id, "c")
                    counters.add(counter)
                for _ in range(command.ticks):
                    counter.tick()
                recorded = [e.event_id for e in counter.pending_events]
                if command.abandoned:
                    uow.rollback()  # the service gives up on the call
                    return
                self.writing = True
                try:
                    uow.commit()
                finally:
                    self.writing = False
                committed = True
                self.plan.reach(WRITER_RETURN)
        except Crash:
            pass
        finally:
            if committed:
                self.model.committed += recorded
                self.model.ticks[counter_id] = self.model.ticks.get(counter_id, 0) + command.ticks
            else:
                self.model.rolled_back += recorded

    def relay_batch(self) -> int:
        """Relay one batch; a dead relay is replaced by a new one with a new connection."""
        try:
            return self.relay.relay_once()
        except Crash:
            self._close_publisher()
            self.publisher = self._start_publisher()
            self.relay = self._start_relay()
            return 1

    def consume(self, idle_timeout: float = 0.02) -> int:
        """Handle what the queue holds; a dead consumer's unacknowledged messages go back."""
        try:
            return self.consumer.consume_available(idle_timeout=idle_timeout)
        except Crash:
            self.consumer.close()
            self.consumer = self._start_consumer()
            return 1

    def drain(self) -> None:
        """Relay every pending row and handle every queued message (crashing as planned)."""
        while self.relay_batch():
            pass
        while self.consume(idle_timeout=0.15):
            pass

    def close(self) -> None:
        self.consumer.close()
        self._close_publisher()
        self.side.close()
        self.producer.dispose()
        self.consumer_db.dispose()


def column(engine: sa.Engine, selected: sa.ColumnElement[Any], *where: Any) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(sa.select(selected).where(*where)).scalars())


@pytest.fixture(scope="module")
def amqp_channel() -> Iterator[Any]:
    """A channel to the real RabbitMQ for declaring each example's exchange and queue."""
    require_server("RabbitMQ", 5672)
    connection = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    yield connection.channel()
    connection.close()


@contextmanager
def pipeline(channel: Any, crashes: dict[str, int], counters: int, api: str) -> Iterator[Pipeline]:
    """A fresh pipeline: two SQLite files and a bound exchange and queue, removed afterwards."""
    name = f"tactical-crash-{uuid4().hex[:12]}"
    channel.exchange_declare(exchange=name, exchange_type="topic", durable=True)
    channel.queue_declare(queue=name, durable=True)
    channel.queue_bind(queue=name, exchange=name, routing_key="#")
    directory = Path(tempfile.mkdtemp(prefix="tactical-crash-"))
    side: Side = SyncSide() if api == "sync" else AsyncSide()
    made = Pipeline(directory, name, counters, CrashPlan(crashes), side)
    try:
        yield made
    finally:
        made.close()
        channel.queue_delete(queue=name)
        channel.exchange_delete(exchange=name)
        shutil.rmtree(directory)


writes = st.builds(
    Write,
    counter=st.integers(0, 2),
    ticks=st.integers(1, 3),
    abandoned=st.sampled_from([False, False, False, True]),
)
steps = st.lists(st.one_of(writes, st.just("relay"), st.just("consume")), min_size=1, max_size=14)
RELAYED_TWICE: list[Write | str] = [
    Write(0, 2, abandoned=False),
    Write(1, 3, abandoned=False),
    "relay",
    "relay",
    "consume",
]
crash_plans = st.dictionaries(st.sampled_from(POINTS), st.integers(0, 3), min_size=1, max_size=3)


@pytest.mark.slow
@pytest.mark.rabbitmq
@pytest.mark.parametrize("api", ["sync", "async"])
class TestCrashAnywhere:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        # The explain phase reruns a failure a hundred times: minutes, for little more insight.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )
    @given(program=steps, crashes=crash_plans)
    # The relay's own crash points, whatever the random draws reach.
    @example(program=RELAYED_TWICE, crashes={RELAY_PUBLISH: 0})
    @example(program=RELAYED_TWICE, crashes={RELAY_MARK: 1})
    # The consumer's, whatever the draws reach (sync, and the async consumer and inbox).
    @example(program=RELAYED_TWICE, crashes={CONSUMER_HANDLE: 1, INBOX_COMMIT: 2})
    @example(program=RELAYED_TWICE, crashes={ACK: 0})
    def test_every_committed_event_is_handled_once_in_order(
        self, amqp_channel: Any, api: str, program: list[Write | str], crashes: dict[str, int]
    ) -> None:
        """Whatever dies where, each committed tick is mirrored once, in order, and no other."""
        with pipeline(amqp_channel, crashes, counters=3, api=api) as run:
            for step in program:
                if isinstance(step, Write):
                    run.write(step)
                elif step == "relay":
                    run.relay_batch()
                else:
                    run.consume()
            run.drain()
            for point in run.plan.crashed:
                note_event(f"crashed at {point}")
            model = run.model
            outbox = column(
                run.producer, outbox_table.c.event_id, outbox_table.c.event_type == TICKED
            )
            inbox = column(run.consumer_db, inbox_table.c.event_id)
            assert sorted(map(str, outbox)) == sorted(map(str, model.committed))
            assert sorted(map(str, inbox)) == sorted(map(str, model.committed))
            assert not set(model.rolled_back) & (set(outbox) | set(inbox))
            assert mirrors(run.consumer_db) == {
                counter_id: list(range(1, ticks + 1)) for counter_id, ticks in model.ticks.items()
            }
            assert pending_count(run.producer) == 0
            assert column(run.consumer_db, dead_letters_table.c.event_id) == []
