"""Correlation and causation ids through the in-process bus and the in-memory unit of work."""

from __future__ import annotations

import asyncio
import dataclasses
from uuid import UUID, uuid4

import pytest

from tactical import EventBus, InMemoryStore, InMemoryUnitOfWork
from tactical._model import recorded_trace
from tactical._tracing import (
    Trace,
    correlation_of,
    current_trace,
    handling,
    recorded_traces,
    trace_of,
)
from tactical.testing import Counter, CounterTicked


def run_chain(length: int) -> list[tuple[CounterTicked, Trace | None]]:
    """Tick a counter once; a handler ticks it again, in its own unit of work, until ``length``."""
    store, bus = InMemoryStore(), EventBus()
    seen: list[tuple[CounterTicked, Trace | None]] = []

    def tick_again(event: CounterTicked) -> None:
        seen.append((event, current_trace()))
        if event.count < length:
            with InMemoryUnitOfWork(bus, store=store) as uow:
                uow.repository(Counter).require(event.counter_id).tick()
                uow.commit()

    bus.subscribe(CounterTicked, tick_again)
    counter = Counter(uuid4(), "chain")
    counter.tick()
    with InMemoryUnitOfWork(bus, store=store) as uow:
        uow.repository(Counter).add(counter)
        uow.commit()
    return seen


class TestTracingOnTheBus:
    def test_there_is_no_trace_outside_handlers(self) -> None:
        """Code that is not handling an event has no current trace."""
        assert current_trace() is None

    def test_handler_of_a_first_event_runs_in_its_flow(self) -> None:
        """The first event starts a flow: its handler's trace is (its id, its id)."""
        ((event, trace),) = run_chain(1)
        assert trace == Trace(event.event_id, event.event_id)
        assert current_trace() is None

    def test_events_caused_by_handlers_keep_the_correlation_and_name_their_cause(self) -> None:
        """Down a chain of handlers every event shares the first id; each names its cause."""
        chain = run_chain(4)
        events = [event for event, _ in chain]
        assert [e.count for e in events] == [1, 2, 3, 4]
        first = events[0].event_id
        assert [t for _, t in chain] == [Trace(first, e.event_id) for e in events]

    def test_events_published_directly_from_a_handler_join_its_flow(self) -> None:
        """An event published on the bus by a handler carries the handled event's correlation."""
        bus = EventBus()
        traces: dict[UUID, Trace | None] = {}
        counter_id = uuid4()

        def forward(event: CounterTicked) -> None:
            traces[event.event_id] = current_trace()
            if event.count == 1:
                bus.publish(CounterTicked(counter_id, 2))

        bus.subscribe(CounterTicked, forward)
        first = CounterTicked(counter_id, 1)
        bus.publish(first)
        (first_trace, second_trace) = traces.values()
        second_id = list(traces)[1]
        assert first_trace == Trace(first.event_id, first.event_id)
        assert second_trace == Trace(first.event_id, second_id)

    def test_events_recorded_outside_handlers_start_separate_flows(self) -> None:
        """Two commits outside any handler give two flows, each correlated to its own event."""
        assert run_chain(1)[0][1] != run_chain(1)[0][1]

    def test_cleared_events_forget_their_trace(self) -> None:
        """pull_events and clear_events drop the recorded traces with the events."""
        counter = Counter(uuid4(), "c")
        with handling(uuid4(), uuid4()):
            counter.tick()
        (event,) = counter.pending_events
        assert recorded_trace(counter, event) is not None
        counter.pull_events()
        assert recorded_trace(counter, event) is None


class TestTracingAcrossAwaits:
    async def test_interleaved_tasks_keep_their_own_flows(self) -> None:
        """Two tasks run handler chains that interleave at every await: no trace crosses over."""
        bus = EventBus()
        seen: dict[UUID, list[tuple[CounterTicked, Trace | None]]] = {}

        async def tick_again(event: CounterTicked) -> None:
            before = current_trace()
            for _ in range(3):
                await asyncio.sleep(0)  # the other task's handler runs here
            assert current_trace() == before
            seen.setdefault(event.counter_id, []).append((event, before))
            if event.count < 4:
                await bus.publish_async(CounterTicked(event.counter_id, event.count + 1))

        bus.subscribe(CounterTicked, tick_again)
        firsts = [CounterTicked(uuid4(), 1), CounterTicked(uuid4(), 1)]
        await asyncio.gather(*(bus.publish_async(first) for first in firsts))
        for first in firsts:
            chain = seen[first.counter_id]
            assert [event.count for event, _ in chain] == [1, 2, 3, 4]
            assert [trace for _, trace in chain] == [
                Trace(first.event_id, event.event_id) for event, _ in chain
            ]
        assert current_trace() is None


class TestTrace:
    def test_a_trace_is_a_frozen_value_made_by_position_or_keyword(self) -> None:
        """Its own __init__ sets both fields, defaults the cause, and leaves it immutable."""
        flow, cause = uuid4(), uuid4()
        trace = Trace(flow, cause)
        assert trace == Trace(correlation_id=flow, causation_id=cause)
        assert hash(trace) == hash(Trace(flow, cause))
        assert Trace(flow).causation_id is None
        with pytest.raises(dataclasses.FrozenInstanceError):
            trace.correlation_id = cause  # type: ignore[misc]

    def test_correlation_of_is_the_correlation_of_the_trace_of_an_event(self) -> None:
        """Outside handlers, inside one, and for a recorded trace, both give the same id."""
        event_id, flow = uuid4(), uuid4()
        assert correlation_of(event_id) == trace_of(event_id).correlation_id == event_id
        with handling(flow, uuid4()):
            assert correlation_of(event_id) == trace_of(event_id).correlation_id == flow
            known = Trace(uuid4(), uuid4())
            with recorded_traces({event_id: known}):
                assert correlation_of(event_id) == known.correlation_id
                assert trace_of(event_id) == known
