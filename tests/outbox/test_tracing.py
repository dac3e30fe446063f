"""Correlation and causation ids through the SQL outbox, the inbox consumer and the brokers."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest
from tests.outbox.brokers import AMQP_URL, Rabbit
from tests.outbox.helpers import (
    CounterMirrored,
    commit_ticks,
    make_consumer,
    relayed,
    side_consumer,
)
from tests.outbox.sides import AsyncSide, Side

import sqlalchemy as sa
from tactical import Command, CommandBus, EventBus, JsonCodec
from tactical.outbox import (
    EventBusPublisher,
    OutboxMessage,
    OutboxRelay,
    Outcome,
    Trace,
    current_trace,
)
from tactical.outbox.rabbitmq import RabbitMQPublisher
from tactical.sqlalchemy import SqlAlchemyUnitOfWork, outbox_table
from tactical.testing import Counter, CounterTicked


class OpenCounter(Command):
    counter_id: UUID


def outbox_traces(engine: sa.Engine) -> list[tuple[UUID, UUID | None, UUID | None]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                outbox_table.c.event_id, outbox_table.c.correlation_id, outbox_table.c.causation_id
            ).order_by(outbox_table.c.position)
        ).all()
    return [(row.event_id, row.correlation_id, row.causation_id) for row in rows]


class TestOutboxColumns:
    def test_event_recorded_outside_handlers_correlates_to_itself(self, engine: sa.Engine) -> None:
        """A flow's first event has correlation_id = its own id and no causation_id."""
        commit_ticks(engine, counters=1, ticks=2)
        assert [(c, k) for _, c, k in outbox_traces(engine)] == [
            (e, None) for e, _, _ in outbox_traces(engine)
        ]

    def test_event_recorded_by_a_bus_handler_is_traced_in_the_outbox(
        self, engine: sa.Engine
    ) -> None:
        """A handler's own commit writes outbox rows with the handled event's flow and id."""
        bus = EventBus()

        def tick_again(event: CounterTicked) -> None:
            if event.count < 3:
                with SqlAlchemyUnitOfWork(engine, bus) as uow:
                    uow.repository(Counter).require(event.counter_id).tick()
                    uow.commit()

        bus.subscribe(CounterTicked, tick_again)
        with SqlAlchemyUnitOfWork(engine, bus) as uow:
            counter = Counter(uuid4(), "c")
            counter.tick()
            uow.repository(Counter).add(counter)
            uow.commit()
        (first, _, _), (second, c2, k2), (third, c3, k3) = outbox_traces(engine)
        assert (c2, k2) == (first, first)
        assert (c3, k3) == (first, second)
        assert third not in (first, second)

    def test_events_of_a_command_and_of_its_reactions_are_traced_to_it(
        self, engine: sa.Engine
    ) -> None:
        """A command's events have its id as causation and correlation; reactions follow."""
        bus, commands = EventBus(), CommandBus()
        uow = SqlAlchemyUnitOfWork(engine, bus)

        def open_counter(command: OpenCounter) -> None:
            with uow:
                counter = Counter(command.counter_id, "c")
                counter.tick()
                uow.repository(Counter).add(counter)
                uow.commit()

        def tick_again(event: CounterTicked) -> None:
            if event.count < 2:
                with uow:  # the unit of work whose block published the event
                    uow.repository(Counter).require(event.counter_id).tick()
                    uow.commit()

        commands.register(OpenCounter, open_counter)
        bus.subscribe(CounterTicked, tick_again)
        command = OpenCounter(uuid4())
        commands.dispatch(command)
        (first, c1, k1), (_, c2, k2) = outbox_traces(engine)
        assert (c1, k1) == (command.command_id, command.command_id)
        assert (c2, k2) == (command.command_id, first)

    def test_relayed_message_carries_the_trace(self, sqlite_engine: sa.Engine) -> None:
        """The relay reads correlation and causation ids into the message and its headers."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (message,) = relayed(sqlite_engine)
        assert message.correlation_id == message.event_id
        assert message.causation_id is None
        assert message.headers["correlation_id"] == str(message.event_id)
        assert "causation_id" not in message.headers


class TestAcrossProcesses:
    def test_consumer_handlers_record_events_in_the_messages_flow(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Events a consumer's handler records carry the message's correlation and its id as cause."""
        commit_ticks(sqlite_engine, counters=1, ticks=2)
        messages = relayed(sqlite_engine)
        consumer = side_consumer(side, consumer_engine)
        for message in messages:
            consumer.handle(message)
        mirrored = relayed(consumer_engine)
        assert {m.event_type for m in mirrored} == {JsonCodec().type_name(CounterMirrored)}
        assert [(m.correlation_id, m.causation_id) for m in mirrored] == [
            (m.correlation_id, m.event_id) for m in messages
        ]

    def test_second_hop_keeps_the_first_correlation(
        self, side: Side, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """A consumer of a consumer's events stays in the flow of the very first event."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (origin,) = relayed(sqlite_engine)
        side_consumer(side, consumer_engine).handle(origin)
        (mirrored,) = relayed(consumer_engine)
        bus = EventBus()
        seen: list[Trace | None] = []
        bus.subscribe(CounterMirrored, lambda e: seen.append(current_trace()))
        EventBusPublisher(bus, JsonCodec()).publish([mirrored])
        assert seen == [Trace(origin.event_id, mirrored.event_id)]

    def test_async_handlings_interleaving_on_one_loop_keep_their_own_trace(
        self, sqlite_engine: sa.Engine, consumer_engine: sa.Engine
    ) -> None:
        """Six messages handled at once by async handlers that await: each sees its own trace."""
        commit_ticks(sqlite_engine, counters=3, ticks=2)
        messages = relayed(sqlite_engine)
        side = AsyncSide()
        seen: dict[UUID, list[Trace | None]] = {}

        async def note_trace(event: CounterTicked, uow: object) -> None:
            traces = seen.setdefault(event.event_id, [current_trace()])
            await asyncio.sleep(0.01)  # the other handlings run meanwhile
            traces.append(current_trace())

        try:
            inbox = side.inbox(consumer_engine).inbox
            inbox.subscribe(CounterTicked, note_trace)

            async def handle_all() -> list[Outcome]:
                return await asyncio.gather(*(inbox.handle(m) for m in messages))

            assert side.call(handle_all()) == [Outcome.HANDLED] * 6
        finally:
            side.close()
        assert {m.event_id: set(seen[m.event_id]) for m in messages} == {
            m.event_id: {Trace(m.correlation_id or m.event_id, m.event_id)} for m in messages
        }

    @pytest.mark.rabbitmq
    def test_trace_travels_as_rabbitmq_headers(
        self, sqlite_engine: sa.Engine, consumer_engine: sa.Engine, rabbit: Rabbit
    ) -> None:
        """The broker message of a caused event has the flow's correlation id and its cause."""
        commit_ticks(sqlite_engine, counters=1, ticks=1)
        (origin,) = relayed(sqlite_engine)
        make_consumer(consumer_engine).handle(origin)
        with RabbitMQPublisher(AMQP_URL, exchange=rabbit.exchange) as publisher:
            OutboxRelay(consumer_engine, publisher).relay_once()
        ((_, properties, body),) = rabbit.drain()
        assert properties.correlation_id == str(origin.event_id)
        assert properties.headers["correlation_id"] == str(origin.event_id)
        assert properties.headers["causation_id"] == str(origin.event_id)
        received = OutboxMessage.from_wire(body, properties.headers)
        assert (received.correlation_id, received.causation_id) == (
            origin.event_id,
            origin.event_id,
        )
