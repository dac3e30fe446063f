"""A process manager's timer requests are written with it, or their loss is reported: never silent.

Every path that could drop a manager's ``schedule()``/``cancel()`` requests, on each unit of
work (sync and async, in memory and on a SQLite file): removed in the transaction, events
pulled before the commit, asked after the commit or after the block, a block without a
commit, and a handler fed a unit of work of one's own, whose repository cannot store them.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self
from uuid import UUID, uuid4

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from tests.process_model import (
    DecrementLabelStock,
    LabelPrinted,
    PickupDeadline,
    PickupDeadlinePassed,
    PickupMissed,
    PickupScanned,
    deadline_key,
)

import sqlalchemy as sa
from tactical import (
    AggregateRoot,
    AsyncInMemoryUnitOfWork,
    AsyncProcessManagerHandler,
    Command,
    CommandBus,
    InMemoryStore,
    InMemoryUnitOfWork,
    ProcessManager,
    ProcessManagerHandler,
    UncommittedChangesWarning,
)
from tactical._tracking import Change
from tactical.sqlalchemy import (
    AsyncSqlAlchemyUnitOfWork,
    SqlAlchemyUnitOfWork,
    create_schema,
    scheduled_table,
)

DUE = datetime(2030, 6, 2, 9, tzinfo=UTC)


@dataclass
class Storage:
    """One kind of unit of work (sync or async) on one storage (memory or a SQLite file)."""

    mode: str
    where: str
    path: Path

    def __post_init__(self) -> None:
        self.store = InMemoryStore()
        self.engine = sa.create_engine(f"sqlite:///{self.path / 'timers.sqlite3'}")
        create_schema(self.engine)
        self.async_engine = create_async_engine(
            f"sqlite+aiosqlite:///{self.path / 'timers.sqlite3'}"
        )

    @property
    def is_async(self) -> bool:
        return self.mode == "async"

    def uow(self) -> Any:
        if self.where == "memory":
            kind = AsyncInMemoryUnitOfWork if self.is_async else InMemoryUnitOfWork
            return kind(store=self.store)
        if self.is_async:
            return AsyncSqlAlchemyUnitOfWork(self.async_engine)
        return SqlAlchemyUnitOfWork(self.engine)

    @contextlib.asynccontextmanager
    async def block(self, uow: Any) -> AsyncGenerator[Any]:
        if self.is_async:
            async with uow:
                yield uow
        else:
            with uow:
                yield uow

    async def load(self, uow: Any, shipment_id: UUID) -> PickupDeadline:
        found = uow.repository(PickupDeadline).require(shipment_id)
        manager: PickupDeadline = await found if self.is_async else found
        return manager

    async def commit(self, uow: Any) -> None:
        done = uow.commit()
        if self.is_async:
            await done

    async def started(self, *, timer: str | None = None) -> UUID:
        """A stored manager (and the timer ``timer``, scheduled by its unit of work)."""
        shipment_id = uuid4()
        async with self.block(self.uow()) as uow:
            uow.repository(PickupDeadline).add(PickupDeadline(shipment_id, carrier="UPS"))
            if timer is not None:
                uow.schedule(PickupDeadlinePassed(shipment_id), at=DUE, key=timer)
            await self.commit(uow)
        return shipment_id

    def stored_timers(self) -> list[str]:
        if self.where == "memory":
            return [t.key for t in self.store.scheduled()]
        with self.engine.connect() as connection:
            keys = connection.scalars(sa.select(scheduled_table.c.key).order_by("key"))
            return list(keys)

    async def close(self) -> None:
        await self.async_engine.dispose()
        self.engine.dispose()


@pytest.fixture(
    params=[("sync", "memory"), ("async", "memory"), ("sync", "sqlite"), ("async", "sqlite")],
    ids=["sync-memory", "async-memory", "sync-sqlite", "async-sqlite"],
)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    mode, where = request.param
    made = Storage(mode, where, tmp_path)
    yield made
    await made.close()


class TestWrittenWithTheManager:
    async def test_a_removed_manager_s_requests_are_written(self, storage: Storage) -> None:
        """A stored manager that cancels and schedules, then is removed: both are written."""
        shipment_id = await storage.started(timer="old")
        async with storage.block(storage.uow()) as uow:
            manager = await storage.load(uow, shipment_id)
            manager.cancel("old")
            manager.schedule(PickupDeadlinePassed(shipment_id), at=DUE, key="new")
            uow.repository(PickupDeadline).remove(manager)
            await storage.commit(uow)
        assert storage.stored_timers() == ["new"]

    async def test_removing_a_manager_leaves_its_stored_timers(self, storage: Storage) -> None:
        """Removal deletes the manager only: a timer stored earlier stays until cancelled."""
        shipment_id = await storage.started(timer="old")
        async with storage.block(storage.uow()) as uow:
            uow.repository(PickupDeadline).remove(await storage.load(uow, shipment_id))
            await storage.commit(uow)
        assert storage.stored_timers() == ["old"]

    async def test_a_manager_removed_in_the_transaction_that_added_it_writes_none(
        self, storage: Storage
    ) -> None:
        """Never stored, its events not published: its requests are not written either.

        The unit of work's own are, and the manager's are forgotten, not written later.
        """
        await storage.started(timer="old")
        manager = PickupDeadline(uuid4(), carrier="DHL")
        manager.record(PickupMissed(manager.id, "DHL"))
        uow = storage.uow()
        async with storage.block(uow):
            manager.schedule(PickupDeadlinePassed(manager.id), at=DUE, key="new")
            manager.cancel("old")
            uow.repository(PickupDeadline).add(manager)
            uow.repository(PickupDeadline).remove(manager)
            uow.schedule(PickupDeadlinePassed(manager.id), at=DUE, key="own")
            await storage.commit(uow)
        assert storage.stored_timers() == ["old", "own"]
        assert manager.pending_events == ()
        async with storage.block(uow):
            uow.repository(PickupDeadline).add(manager)
            await storage.commit(uow)
        assert storage.stored_timers() == ["old", "own"]

    async def test_a_new_manager_removed_then_added_back_writes_its_requests(
        self, storage: Storage
    ) -> None:
        """remove() then add() in one transaction cancels the removal: the requests count."""
        manager = PickupDeadline(uuid4(), carrier="DHL")
        async with storage.block(storage.uow()) as uow:
            manager.schedule(PickupDeadlinePassed(manager.id), at=DUE, key="k")
            uow.repository(PickupDeadline).add(manager)
            uow.repository(PickupDeadline).remove(manager)
            uow.repository(PickupDeadline).add(manager)
            await storage.commit(uow)
        assert storage.stored_timers() == ["k"]

    async def test_pulling_the_events_before_the_commit_keeps_the_requests(
        self, storage: Storage
    ) -> None:
        """pull_events() (clear_events) forgets the events only: the timer is still written."""
        shipment_id = await storage.started()
        async with storage.block(storage.uow()) as uow:
            manager = await storage.load(uow, shipment_id)
            manager.record(PickupMissed(shipment_id, "UPS"))
            manager.schedule(PickupDeadlinePassed(shipment_id), at=DUE, key="k")
            assert manager.pull_events() != ()
            await storage.commit(uow)
        assert storage.stored_timers() == ["k"]

    async def test_requests_alone_are_written_and_then_forgotten(self, storage: Storage) -> None:
        """A manager whose only change is a timer request: written; the next commit has none."""
        shipment_id = await storage.started()
        uow = storage.uow()
        async with storage.block(uow):
            manager = await storage.load(uow, shipment_id)
            manager.schedule(PickupDeadlinePassed(shipment_id), at=DUE, key="k")
            await storage.commit(uow)
        async with storage.block(uow):
            uow.repository(PickupDeadline).add(manager)  # detached, added back: nothing held
            uow.schedule(PickupDeadlinePassed(shipment_id), at=DUE, key="other")
            await storage.commit(uow)
        async with storage.block(uow):
            uow.cancel("k")
            await storage.commit(uow)
        assert storage.stored_timers() == ["other"]


class TestLossesAreReported:
    async def test_a_request_after_the_commit_is_reported(self, storage: Storage) -> None:
        """Scheduled after commit() in the same block: a warning names the manager."""
        shipment_id = await storage.started()

        async def schedule_after_the_commit() -> None:
            async with storage.block(storage.uow()) as uow:
                manager = await storage.load(uow, shipment_id)
                await storage.commit(uow)
                manager.schedule(PickupDeadlinePassed(shipment_id), at=DUE, key="k")

        after_the_commit = r"changed after \w+\.commit\(\).* \(and the timer requests of keys 'k'\)"
        with pytest.warns(UncommittedChangesWarning, match=after_the_commit) as w:
            await schedule_after_the_commit()
        assert [
            r.message.aggregates for r in w.list if isinstance(r.message, UncommittedChangesWarning)
        ] == [((PickupDeadline, shipment_id),)]
        assert storage.stored_timers() == []

    async def test_a_request_after_the_block_is_reported_at_the_next(
        self, storage: Storage
    ) -> None:
        """Cancelled after the block ended: the unit of work's next block end says so."""
        shipment_id = await storage.started(timer="k")
        uow = storage.uow()
        async with storage.block(uow):
            manager = await storage.load(uow, shipment_id)
            await storage.commit(uow)
        manager.cancel("k")
        after_the_block = r"previous `with` block.* \(and the timer requests of keys 'k'\)"
        with pytest.warns(UncommittedChangesWarning, match=after_the_block):
            async with storage.block(uow):
                pass
        assert storage.stored_timers() == ["k"]

    async def test_a_block_without_a_commit_is_silent_on_a_manager_it_added_and_removed(
        self, storage: Storage
    ) -> None:
        """Its requests would not have been written by a commit either: nothing is lost."""
        manager = PickupDeadline(uuid4(), carrier="DHL")
        async with storage.block(storage.uow()) as uow:  # the suite makes a warning an error
            manager.schedule(PickupDeadlinePassed(manager.id), at=DUE, key="k")
            uow.repository(PickupDeadline).add(manager)
            uow.repository(PickupDeadline).remove(manager)
        assert storage.stored_timers() == []

    async def test_a_block_without_a_commit_names_the_requested_keys(
        self, storage: Storage
    ) -> None:
        """A block that ends without commit() warns, with the manager's timer keys."""
        shipment_id = await storage.started()

        async def schedule_without_a_commit() -> None:
            async with storage.block(storage.uow()) as uow:
                manager = await storage.load(uow, shipment_id)
                manager.schedule(PickupDeadlinePassed(shipment_id), at=DUE, key="k")

        with pytest.warns(UncommittedChangesWarning, match="timer requests of keys 'k'"):
            await schedule_without_a_commit()
        assert storage.stored_timers() == []


class DictUnitOfWork:
    """A unit of work of one's own: aggregates in a dict, committed by copying them over."""

    def __init__(self) -> None:
        self.committed: dict[object, AggregateRoot[Any]] = {}
        self.commits = 0
        self._open: dict[object, AggregateRoot[Any]] = {}

    def __enter__(self) -> Self:
        self._open = dict(self.committed)
        return self

    def __exit__(self, *_: object) -> None:
        self._open = {}

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(self, *_: object) -> None:
        self.__exit__()

    def repository(self, aggregate_type: type[Any]) -> DictRepository:
        return DictRepository(self._open)

    def commit(self) -> None:
        self.commits += 1
        self.committed = dict(self._open)

    def rollback(self) -> None:
        self._open = dict(self.committed)


class AsyncDictUnitOfWork(DictUnitOfWork):
    """The same, awaited: its commit and its repository's reads are coroutines."""

    def repository(self, aggregate_type: type[Any]) -> DictRepository:
        return AsyncDictRepository(self._open)

    async def commit(self) -> None:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        super().commit()


@dataclass
class DictRepository:
    held: dict[object, AggregateRoot[Any]]

    def get(self, aggregate_id: object) -> AggregateRoot[Any] | None:
        return self.held.get(aggregate_id)

    def add(self, aggregate: AggregateRoot[Any]) -> None:
        self.held[aggregate.id] = aggregate


class AsyncDictRepository(DictRepository):
    async def get(self, aggregate_id: object) -> AggregateRoot[Any] | None:  # type: ignore[override]  # pyright: ignore[reportIncompatibleMethodOverride]
        return self.held.get(aggregate_id)


class Counting(ProcessManager[UUID]):
    """Asks for a command when a label is printed, and for no timer."""

    @ProcessManager.starts(LabelPrinted, key=lambda e: e.shipment_id)
    def label_printed(self, event: LabelPrinted) -> None:
        self.dispatch(DecrementLabelStock(event.carrier))


@dataclass
class OwnUnitOfWork:
    """A handler of ``mode`` for one's own unit of work, and what it dispatched."""

    mode: str

    def __post_init__(self) -> None:
        self.uow: Any = DictUnitOfWork() if self.mode == "sync" else AsyncDictUnitOfWork()
        self.dispatched: list[Command[None]] = []
        self.commands = CommandBus()
        self.commands.register(DecrementLabelStock, self.dispatched.append)

    async def deliver(self, manager_type: type[ProcessManager[UUID]], event: LabelPrinted) -> None:
        """Feed ``event`` to ``manager_type`` through this mode's handler."""
        kind: Any = ProcessManagerHandler if self.mode == "sync" else AsyncProcessManagerHandler
        done = kind(manager_type, self.uow, self.commands)(event)
        if inspect.isawaitable(done):
            await done


@pytest.mark.parametrize("mode", ["sync", "async"])
class TestAUnitOfWorkOfOnesOwn:
    async def test_a_handler_refuses_to_commit_timers_it_cannot_store(self, mode: str) -> None:
        """The manager scheduled a timer its repository cannot store: refused before commit."""
        own = OwnUnitOfWork(mode)
        shipment_id = uuid4()
        with pytest.raises(TypeError) as refused:
            await own.deliver(PickupDeadline, LabelPrinted(shipment_id, "UPS"))
        message = str(refused.value)
        assert f"cannot commit PickupDeadline {shipment_id!r}" in message
        assert repr(deadline_key(shipment_id)) in message
        assert "DictRepository, is not a tactical unit of work's" in message
        assert "nothing was committed" in message
        assert (own.uow.commits, own.uow.committed, own.dispatched) == (0, {}, [])

    async def test_a_manager_without_timers_is_stored_by_it(self, mode: str) -> None:
        """Without timer requests, one's own unit of work stores the manager as before."""
        own = OwnUnitOfWork(mode)
        await own.deliver(Counting, LabelPrinted(uuid4(), "UPS"))
        assert own.uow.commits == 1
        assert [type(m) for m in own.uow.committed.values()] == [Counting]
        assert [type(c) for c in own.dispatched] == [DecrementLabelStock]


class RacingUnitOfWork(InMemoryUnitOfWork):
    """Its first commit loses a race: another unit of work completes the manager first."""

    raced = False

    def _store(self, changes: Sequence[Change]) -> None:
        if not RacingUnitOfWork.raced:
            RacingUnitOfWork.raced = True
            complete_elsewhere(self.store, changes)
        super()._store(changes)


class AsyncRacingUnitOfWork(AsyncInMemoryUnitOfWork):
    """:class:`RacingUnitOfWork`, awaited."""

    raced = False

    async def _store(self, changes: Sequence[Change]) -> None:
        if not AsyncRacingUnitOfWork.raced:
            AsyncRacingUnitOfWork.raced = True
            complete_elsewhere(self.store, changes)
        await super()._store(changes)


def complete_elsewhere(store: InMemoryStore, changes: Sequence[Change]) -> None:
    """Complete, through another unit of work on ``store``, the manager being committed."""
    with InMemoryUnitOfWork(store=store) as other:
        other.repository(PickupDeadline).require(changes[0].aggregate.id).complete()
        other.commit()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_retried_handler_writes_only_the_requests_of_its_last_attempt(mode: str) -> None:
    """The attempt that lost the race asked to cancel the timer; the retry, ignoring the event
    (the process was completed meanwhile), asks nothing: the timer stays."""
    store = InMemoryStore()
    commands = CommandBus()
    commands.register(DecrementLabelStock, lambda command: None)
    shipment_id = uuid4()
    racing: Any = RacingUnitOfWork if mode == "sync" else AsyncRacingUnitOfWork
    racing.raced = False
    plain: Any = InMemoryUnitOfWork if mode == "sync" else AsyncInMemoryUnitOfWork
    kind: Any = ProcessManagerHandler if mode == "sync" else AsyncProcessManagerHandler
    for event, uow in [
        (LabelPrinted(shipment_id, "UPS"), lambda: plain(store=store)),
        (PickupScanned(shipment_id), lambda: racing(store=store)),
    ]:
        done = kind(PickupDeadline, uow, commands)(event)
        if inspect.isawaitable(done):
            await done
    assert racing.raced
    assert [t.key for t in store.scheduled()] == [deadline_key(shipment_id)]
    with InMemoryUnitOfWork(store=store) as uow:
        assert uow.repository(PickupDeadline).require(shipment_id).completed
