"""The async in-memory unit of work: its specifics, sharing a store with sync code, cancellation.

The contract (the same tests as the sync units of work) runs in
tests/testing/test_async_contract.py.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from tactical import (
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    ConcurrencyError,
    DomainEvent,
    EventBus,
    InMemoryStore,
    InMemoryUnitOfWork,
    UncommittedChangesWarning,
)
from tactical._tracking import Change
from tactical.testing import Counter, CounterTicked

A = TypeVar("A", bound=AggregateRoot[Any])


def saved(store: InMemoryStore, name: str = "visits") -> Counter:
    """A counter committed to ``store`` by a sync unit of work."""
    counter = Counter(uuid4(), name)
    with InMemoryUnitOfWork(store=store) as uow:
        uow.repository(Counter).add(counter)
        uow.commit()
    return counter


def stored(store: InMemoryStore, counter_id: UUID) -> Counter | None:
    """What a sync unit of work reads from ``store``."""
    with InMemoryUnitOfWork(store=store) as uow:
        return uow.repository(Counter).get(counter_id)


class TestAsyncInMemoryUnitOfWork:
    async def test_sync_and_async_units_of_work_share_one_store(self) -> None:
        """Each sees the other's commits, and a stale write between them is a conflict."""
        store = InMemoryStore()
        counter = saved(store)
        async with AsyncInMemoryUnitOfWork(store=store) as uow:
            loaded = await uow.repository(Counter).require(counter.id)
            loaded.tick()
            await uow.commit()
        with InMemoryUnitOfWork(store=store) as sync_uow:
            stale = sync_uow.repository(Counter).require(counter.id)
            assert (stale.count, stale.version) == (1, 2)
            async with AsyncInMemoryUnitOfWork(store=store) as uow:
                (await uow.repository(Counter).require(counter.id)).rename("async wins")
                await uow.commit()
            stale.tick()
            with pytest.raises(ConcurrencyError, match=str(counter.id)):
                sync_uow.commit()
        after = stored(store, counter.id)
        assert after is not None
        assert (after.name, after.count, after.version) == ("async wins", 1, 3)

    async def test_the_store_and_the_default_bus_are_exposed(self) -> None:
        """store is the one given (or a new one); bus is a new EventBus when none is given."""
        store = InMemoryStore()
        uow = AsyncInMemoryUnitOfWork(store=store)
        assert uow.store is store
        assert isinstance(uow.bus, EventBus)
        assert isinstance(AsyncInMemoryUnitOfWork().store, InMemoryStore)

    def test_a_store_passed_as_the_bus_or_a_wrong_store_is_refused(self) -> None:
        """Wrong arguments fail at construction, naming the async class and the fix."""
        wrong: Any = InMemoryStore()
        with pytest.raises(TypeError, match=r"AsyncInMemoryUnitOfWork's bus .*store=\.\.\."):
            AsyncInMemoryUnitOfWork(wrong)
        with pytest.raises(TypeError, match=r"AsyncInMemoryUnitOfWork's store .* got dict"):
            AsyncInMemoryUnitOfWork(store=dict[str, str]())  # type: ignore[arg-type]

    async def test_a_sync_with_block_is_refused(self) -> None:
        """An async unit of work is not a sync context manager (nor the reverse)."""
        sync_cm: Any = AsyncInMemoryUnitOfWork()
        with pytest.raises(TypeError), sync_cm:
            pass
        async_cm: Any = InMemoryUnitOfWork()
        with pytest.raises(TypeError):
            async with async_cm:
                pass

    async def test_the_repository_names_its_type(self) -> None:
        """A repository's repr says which aggregate type it holds."""
        async with AsyncInMemoryUnitOfWork() as uow:
            assert repr(uow.repository(Counter)).startswith("<Repository[Counter] of ")

    async def test_uncommitted_changes_warn_at_the_async_with_line(self) -> None:
        """The warning points at the user's code, not at tactical's."""
        store = InMemoryStore()
        counter = saved(store)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with AsyncInMemoryUnitOfWork(store=store) as uow:
                (await uow.repository(Counter).require(counter.id)).tick()
        assert [w.category for w in caught] == [UncommittedChangesWarning]
        assert caught[0].filename == __file__

    async def test_concurrent_tasks_each_have_their_own_transaction(self) -> None:
        """Tasks interleaving at awaits keep their transactions apart; the later writer loses."""
        store = InMemoryStore()
        counter = saved(store)
        both_loaded = asyncio.Barrier(2)

        async def tick() -> None:
            async with AsyncInMemoryUnitOfWork(store=store) as uow:
                (await uow.repository(Counter).require(counter.id)).tick()
                await both_loaded.wait()
                await uow.commit()

        results = await asyncio.gather(tick(), tick(), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["ConcurrencyError", "NoneType"]
        after = stored(store, counter.id)
        assert after is not None
        assert (after.count, after.version) == (1, 2)


class TestSyncCommitWithAsyncHandlers:
    def test_is_refused_before_anything_is_stored(self) -> None:
        """A sync commit cannot await an async handler: it fails first, storing nothing."""
        store = InMemoryStore()
        counter = saved(store)
        bus, seen = EventBus(), list[DomainEvent]()

        async def notify(event: CounterTicked) -> None:
            seen.append(event)  # pragma: no cover  (never called: the commit is refused)

        bus.subscribe(CounterTicked, notify)
        with InMemoryUnitOfWork(bus, store=store) as uow:
            loaded = uow.repository(Counter).require(counter.id)
            loaded.tick()
            with pytest.raises(TypeError, match=r"notify") as refused:
                uow.commit()
            with pytest.raises(RuntimeError, match="already ended"):
                uow.commit()
        assert "async" in str(refused.value)
        after = stored(store, counter.id)
        assert after is not None
        assert (after.count, after.version) == (0, 1)
        assert loaded.version == 1
        assert seen == []

    def test_an_async_handler_subscribed_later_is_refused_too(self) -> None:
        """A unit of work that committed to sync handlers refuses once an async one joins."""
        store = InMemoryStore()
        counter = saved(store)
        bus, seen = EventBus(), list[DomainEvent]()
        bus.subscribe(CounterTicked, seen.append)
        uow = InMemoryUnitOfWork(bus, store=store)
        with uow:
            uow.repository(Counter).require(counter.id).tick()
            uow.commit()

        async def notify_later(event: CounterTicked) -> None:
            seen.append(event)  # pragma: no cover  (never called: the commit is refused)

        bus.subscribe(CounterTicked, notify_later)
        with uow:
            uow.repository(Counter).require(counter.id).tick()
            with pytest.raises(TypeError, match=r"notify_later"):
                uow.commit()
        after = stored(store, counter.id)
        assert after is not None
        assert (after.count, after.version) == (1, 2)
        assert len(seen) == 1


class Gated(AsyncInMemoryUnitOfWork):
    """Blocks for ever at the first call of one hook, so a test can cancel the task there."""

    def __init__(self, store: InMemoryStore, blocked_hook: str) -> None:
        super().__init__(store=store)
        self.blocked_hook = blocked_hook
        self.reached = asyncio.Event()
        self.calls: list[str] = []

    async def _gate(self, hook: str) -> None:
        self.calls.append(hook)
        if hook == self.blocked_hook and not self.reached.is_set():
            self.reached.set()
            await asyncio.Event().wait()

    async def _begin(self) -> None:
        await self._gate("_begin")
        await super()._begin()

    async def _load(self, aggregate_type: type[A], aggregate_id: object) -> A | None:
        await self._gate("_load")
        return await super()._load(aggregate_type, aggregate_id)

    async def _store(self, changes: Sequence[Change]) -> None:
        await self._gate("_store")
        await super()._store(changes)

    async def _rollback(self) -> None:
        await self._gate("_rollback")
        await super()._rollback()

    async def _end(self) -> None:
        await self._gate("_end")
        await super()._end()


async def committing(uow: Gated, counter_id: UUID, loaded: list[Counter]) -> None:
    """A block that loads, ticks and commits (hooks: begin, load, store, end)."""
    async with uow:
        counter = await uow.repository(Counter).require(counter_id)
        loaded.append(counter)
        counter.tick()
        await uow.commit()


async def rolling_back(uow: Gated, counter_id: UUID, loaded: list[Counter]) -> None:
    """A block that ticks, rolls back, ticks and leaves (begin, load, rollback, end, ...)."""
    async with uow:
        counter = await uow.repository(Counter).require(counter_id)
        loaded.append(counter)
        counter.tick()
        await uow.rollback()
        counter = await uow.repository(Counter).require(counter_id)
        counter.rename("never stored")
        raise LookupError("the command failed")


async def failing(uow: Gated, counter_id: UUID, loaded: list[Counter]) -> None:
    """A block that ticks and fails: leaving it rolls back (begin, load, rollback, end)."""
    async with uow:
        counter = await uow.repository(Counter).require(counter_id)
        loaded.append(counter)
        counter.tick()
        raise LookupError("the command failed")


Block = Callable[[Gated, UUID, list[Counter]], Awaitable[None]]

# (block, the hook it is cancelled in, whether its commit had been stored by then)
AWAIT_POINTS = [
    (committing, "_begin", False),
    (committing, "_load", False),
    (committing, "_store", False),
    (committing, "_end", True),
    (rolling_back, "_rollback", False),
    (rolling_back, "_end", False),
    (rolling_back, "_begin", False),
    (failing, "_rollback", False),
    (failing, "_end", False),
]


class TestCancellation:
    @pytest.mark.parametrize(("block", "hook", "committed"), AWAIT_POINTS)
    async def test_cancelling_at_any_await_leaves_no_partial_state(
        self, block: Block, hook: str, committed: bool
    ) -> None:
        """Cancelled at any hook, all or nothing is stored, versions agree, the uow is reusable."""
        store = InMemoryStore()
        counter = saved(store)
        uow, loaded = Gated(store, hook), list[Counter]()
        task = asyncio.create_task(block(uow, counter.id, loaded))
        await uow.reached.wait()
        task.cancel()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(asyncio.CancelledError):
                await task
        version = 2 if committed else 1
        after = stored(store, counter.id)
        assert after is not None
        assert (after.name, after.count, after.version) == ("visits", version - 1, version)
        assert all(c.version == version for c in loaded)
        assert uow.calls[-1] in ("_end", hook)
        async with uow:
            (await uow.repository(Counter).require(counter.id)).tick()
            await uow.commit()
        after = stored(store, counter.id)
        assert after is not None
        assert (after.count, after.version) == (version, version + 1)

    async def test_a_timeout_during_the_store_stores_nothing(self) -> None:
        """asyncio.timeout around a block whose store blocks: TimeoutError, nothing stored."""
        store = InMemoryStore()
        counter = saved(store)
        uow, loaded = Gated(store, "_store"), list[Counter]()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await committing(uow, counter.id, loaded)
        after = stored(store, counter.id)
        assert after is not None
        assert (after.count, after.version) == (0, 1)
        assert [c.version for c in loaded] == [1]
        assert uow.calls == ["_begin", "_load", "_store", "_end"]


class TestDispatchAtTheBlocksEnd:
    async def test_a_cancellation_after_the_commit_dispatches_nothing(self) -> None:
        """A task cancelled after its commit: the commit stands, no handler is awaited."""
        store, bus, seen = InMemoryStore(), EventBus(), list[CounterTicked]()

        async def note(event: CounterTicked) -> None:
            seen.append(event)

        bus.subscribe(CounterTicked, note)
        counter = Counter(uuid4(), "visits")
        committed = asyncio.Event()

        async def commit_then_wait() -> None:
            async with AsyncInMemoryUnitOfWork(bus, store=store) as uow:
                uow.repository(Counter).add(counter)
                counter.tick()
                await uow.commit()
                committed.set()
                await asyncio.Event().wait()  # cancelled here

        task = asyncio.create_task(commit_then_wait())
        await committed.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert seen == []
        found = stored(store, counter.id)
        assert found is not None
        assert found.count == 1

    async def test_a_handler_may_enter_the_async_unit_of_work_that_committed(self) -> None:
        """An async handler enters the same unit of work and commits another aggregate."""
        store = InMemoryStore()
        target = saved(store, "target")
        bus = EventBus()
        uow = AsyncInMemoryUnitOfWork(bus, store=store)
        seen: list[UUID] = []

        async def propagate(event: CounterTicked) -> None:
            seen.append(event.counter_id)
            if event.counter_id != target.id:
                async with uow:
                    (await uow.repository(Counter).require(target.id)).tick()
                    await uow.commit()

        bus.subscribe(CounterTicked, propagate)
        source = Counter(uuid4(), "source")
        async with uow:
            uow.repository(Counter).add(source)
            source.tick()
            await uow.commit()
        assert seen == [source.id, target.id]
        found = stored(store, target.id)
        assert found is not None
        assert found.count == 1
