"""An async commit awaits async handlers: order, nesting, traces across awaits, cancellation."""

from __future__ import annotations

import asyncio
import warnings
from uuid import UUID, uuid4

import pytest
from tests.test_uow_async import saved, stored

from tactical import (
    AsyncInMemoryUnitOfWork,
    DomainEvent,
    EventBus,
    EventHandlerError,
    InMemoryStore,
    Trace,
    current_trace,
)
from tactical.testing import Counter, CounterRenamed, CounterTicked


class TestAsyncHandlers:
    async def test_are_awaited_after_the_block_in_recorded_order(self) -> None:
        """Async and sync handlers run when the committed block ends, events in recorded order."""
        store = InMemoryStore()
        counter = saved(store, "source")
        bus, seen = EventBus(), list[tuple[str, int]]()

        async def read_back(event: DomainEvent) -> None:
            await asyncio.sleep(0)
            async with AsyncInMemoryUnitOfWork(store=store) as reader:
                found = await reader.repository(Counter).require(counter.id)
            seen.append((type(event).__name__, found.version))

        bus.subscribe(DomainEvent, read_back)
        async with AsyncInMemoryUnitOfWork(bus, store=store) as uow:
            loaded = await uow.repository(Counter).require(counter.id)
            loaded.tick()
            loaded.rename("renamed")
            await uow.commit()
            assert seen == []  # the block is still open
        assert seen == [("CounterTicked", 2), ("CounterRenamed", 2)]

    async def test_a_handler_committing_its_own_transaction_is_queued_fifo(self) -> None:
        """Events of a handler's own commit are delivered after those already queued."""
        store = InMemoryStore()
        source, target = saved(store, "source"), saved(store, "target")
        bus, seen = EventBus(), list[tuple[str, UUID]]()

        async def propagate(event: CounterTicked) -> None:
            if event.counter_id == source.id:
                async with AsyncInMemoryUnitOfWork(bus, store=store) as uow:
                    (await uow.repository(Counter).require(target.id)).tick()
                    await uow.commit()

        bus.subscribe(CounterTicked, propagate)
        bus.subscribe(CounterTicked, lambda e: seen.append((type(e).__name__, e.counter_id)))
        bus.subscribe(CounterRenamed, lambda e: seen.append((type(e).__name__, e.counter_id)))
        async with AsyncInMemoryUnitOfWork(bus, store=store) as uow:
            counter = await uow.repository(Counter).require(source.id)
            counter.tick()
            counter.rename("source2")
            await uow.commit()
        assert seen == [
            ("CounterTicked", source.id),
            ("CounterRenamed", source.id),
            ("CounterTicked", target.id),
        ]

    async def test_traces_follow_each_task_across_awaits(self) -> None:
        """Concurrent tasks interleaving in handlers keep their own correlation and causation."""
        store = InMemoryStore()
        sources = [saved(store, f"source {n}") for n in range(2)]
        followers = {s.id: saved(store, f"follower of {n}").id for n, s in enumerate(sources)}
        bus = EventBus()
        caused_by = dict[UUID, Trace | None]()
        renamed_in = dict[UUID, Trace | None]()
        both_handling = asyncio.Barrier(2)

        async def follow(event: CounterTicked) -> None:
            if event.counter_id not in followers:
                return
            await both_handling.wait()  # the two tasks' handlers interleave here
            caused_by[event.event_id] = current_trace()
            async with AsyncInMemoryUnitOfWork(bus, store=store) as uow:
                follower = await uow.repository(Counter).require(followers[event.counter_id])
                await asyncio.sleep(0)
                follower.rename(f"after {event.event_id}")
                await uow.commit()

        async def note(event: CounterRenamed) -> None:
            await asyncio.sleep(0)
            renamed_in[event.counter_id] = current_trace()

        bus.subscribe(CounterTicked, follow)
        bus.subscribe(CounterRenamed, note)
        ticked = dict[UUID, UUID]()

        async def tick(source: Counter) -> None:
            async with AsyncInMemoryUnitOfWork(bus, store=store) as uow:
                counter = await uow.repository(Counter).require(source.id)
                counter.tick()
                ticked[source.id] = counter.pending_events[0].event_id
                await uow.commit()

        await asyncio.gather(*(tick(s) for s in sources))
        for source in sources:
            event_id = ticked[source.id]
            assert caused_by[event_id] == Trace(event_id, event_id)
            trace = renamed_in[followers[source.id]]
            assert trace is not None
            assert trace.correlation_id == event_id
        assert current_trace() is None

    async def test_cancelling_in_a_handler_keeps_the_commit_and_the_unit_of_work(self) -> None:
        """The commit stands; the block ends cleanly; the next block works."""
        store = InMemoryStore()
        counter = saved(store, "visits")
        bus, reached, delivered = EventBus(), asyncio.Event(), list[str]()

        async def stall(event: CounterTicked) -> None:
            reached.set()
            await asyncio.Event().wait()

        bus.subscribe(CounterTicked, stall)
        bus.subscribe(CounterRenamed, lambda e: delivered.append(e.name))
        uow = AsyncInMemoryUnitOfWork(bus, store=store)

        async def command() -> None:
            async with uow:
                loaded = await uow.repository(Counter).require(counter.id)
                loaded.tick()
                loaded.rename("renamed")
                await uow.commit()

        task = asyncio.create_task(command())
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = stored(store, counter.id)
        assert after is not None
        assert (after.name, after.count, after.version) == ("renamed", 1, 2)
        assert delivered == []
        async with uow:
            (await uow.repository(Counter).require(counter.id)).rename("again")
            await uow.commit()
        assert delivered == ["again"]


class TestWarningsAsErrors:
    async def test_a_warning_turned_error_does_not_replace_a_handler_failure(self) -> None:
        """Under ``-W error`` the block raises EventHandlerError, the warning a note on it."""
        bus = EventBus()

        async def fails(event: CounterTicked) -> None:
            raise LookupError(f"no mirror for {event.counter_id}")

        bus.subscribe(CounterTicked, fails)
        uow = AsyncInMemoryUnitOfWork(bus)
        counter = Counter(uuid4(), "visits")

        async def commit_then_change() -> None:
            async with uow:
                uow.repository(Counter).add(counter)
                counter.tick()
                await uow.commit()
                counter.rename("lost")

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(EventHandlerError, match="committed") as raised:
                await commit_then_change()
        notes = getattr(raised.value, "__notes__", [])
        assert any(note.startswith("UncommittedChangesWarning") for note in notes), notes
        assert any("changed after" in note for note in notes), notes
